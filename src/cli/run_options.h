#pragma once
// Options of every command that runs a model: --threads N (OpenMP and oneDNN threads) and
// --quiet (no progress output).
#include <CLI/CLI.hpp>

namespace cq::cli {

// --threads N: N >= 1; default all cores (OpenMP's default, or OMP_NUM_THREADS when set).
void add_threads_option(CLI::App& command);
// --threads and --quiet.
void add_run_options(CLI::App& command);
// Whether --quiet was given (commands' own progress lines, such as cq sweep's [i/N]).
bool quiet();

}  // namespace cq::cli
