#pragma once
// Cancelling a long call from a front end that cannot die of a signal the way `cq` does
// (util/interrupt.h): the Python module installs a check that runs Python's signal handlers
// and throws when Ctrl-C was pressed. Long loops call check_cancelled() once per step
// (ProgressBar::advance does, so every job with a progress bar is cancellable); the
// exception unwinds through the library like any error, outputs still pending are never
// renamed into place (atomic_file.h).
namespace cq {

// Installs `check` (nullptr: none, the default). It throws to cancel; it runs on the calling
// thread, outside OpenMP regions.
void set_cancel_check(void (*check)());
void check_cancelled();

}  // namespace cq
