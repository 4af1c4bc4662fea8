#include "util/cancel.h"

#include <atomic>

namespace cq {

namespace {
std::atomic<void (*)()> cancel_check{nullptr};
}  // namespace

void set_cancel_check(void (*check)()) { cancel_check = check; }

void check_cancelled() {
  if (void (*check)() = cancel_check.load()) check();
}

}  // namespace cq
