// `cq`: a thin command-line layer over the crossquant library.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>

#include "cli/commands.h"
#include "cli/parse_errors.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/parallel.h"

namespace {

// One error line; in a job of several ranks (docs/CLUSTER.md) it names the rank that failed.
void report_error(const char* message) {
  if (cq::parallel::world_size() > 1)
    std::fprintf(cq::parallel::diagnostics(), "cq: error (rank %d of %d): %s\n", cq::parallel::world_rank(),
                 cq::parallel::world_size(), message);
  else
    std::fprintf(cq::parallel::diagnostics(), "cq: error: %s\n", message);
}

int run(int argc, char** argv) {
  CLI::App app{"crossquant: post-training quantization of OPT and LLaMA models (CrossQuant, SmoothQuant, AWQ)"};
  cq::cli::configure_app(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cq::cli::report_parse_error(app, e, std::vector<std::string>(argv + 1, argv + argc));
  } catch (const cq::Error& e) {
    report_error(e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    report_error("out of memory");
    return 1;
  } catch (const std::exception& e) {
    report_error(e.what());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // libgomp reads OMP_WAIT_POLICY once, before main. Spinning idle threads make a run ~10x
  // slower as soon as anything else wants the cores (docs/PERFORMANCE.md), so unless the
  // user chose a policy, restart once with idle threads sleeping.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    ::execv("/proc/self/exe", argv);  // on failure, simply continue with the default policy
  }
  // SIGINT/SIGTERM/SIGHUP: remove the temporaries of outputs being written, say so, exit.
  cq::install_interrupt_handler();
  // Under mpirun/srun: join the job (a failing rank then ends every rank, parallel::finish).
  try {
    cq::parallel::start(&argc, &argv);
  } catch (const cq::Error& e) {
    report_error(e.what());
    return 1;
  }
  return cq::parallel::finish(run(argc, argv));
}
