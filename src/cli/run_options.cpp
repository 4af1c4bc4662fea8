#include "cli/run_options.h"

#include <fmt/format.h>
#include <omp.h>

#include "cli/options.h"
#include "util/progress.h"

namespace cq::cli {

namespace {
bool quiet_given = false;
constexpr int kMaxThreads = 1024;
}  // namespace

void add_threads_option(CLI::App& command) {
  // oneDNN is built on the OpenMP runtime (DNNL_CPU_RUNTIME OMP): it takes omp_get_max_threads().
  command.add_option_function<int>(
             "--threads",
             [](const int& threads) {
               // More threads than any machine has cores only oversubscribes (and a typo such
               // as 10000 would spawn them all).
               if (threads > kMaxThreads) throw CLI::ValidationError("--threads", fmt::format("at most {} (got {})", kMaxThreads, threads));
               omp_set_num_threads(threads);
             },
             "threads for the matrix products and kernels (default: all cores, or OMP_NUM_THREADS)")
      ->check(positive_count());
}

void add_run_options(CLI::App& command) {
  add_threads_option(command);
  command.add_flag_callback(
      "--quiet",
      [] {
        quiet_given = true;
        ProgressBar::set_quiet(true);
      },
      "no progress output on stderr");
}

bool quiet() { return quiet_given; }

}  // namespace cq::cli
