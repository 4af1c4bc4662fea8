// The Python module `crossquant` (docs/PYTHON.md): cq's quantizers, kernel statistics and
// model commands on NumPy arrays and model directories.
#include <pybind11/pybind11.h>

#include <omp.h>

#include "python/bindings.h"
#include "python/python_support.h"
#include "util/error.h"
#include "util/progress.h"

namespace {
constexpr int kMaxThreads = 1024;  // as cq --threads
}  // namespace

PYBIND11_MODULE(crossquant, m) {
  m.doc() = "crossquant: post-training quantization of LLMs (CrossQuant, per-token, group-wise, SmoothQuant, AWQ)";
  cq::python::register_errors_and_cancellation(m);
  m.def(
      "set_threads",
      [](int threads) {
        if (threads < 1 || threads > kMaxThreads) cq::fail("threads: a count in 1..{} (got {})", kMaxThreads, threads);
        omp_set_num_threads(threads);
      },
      pybind11::arg("threads"), "OpenMP and oneDNN threads, as cq --threads (default: all cores or OMP_NUM_THREADS)");
  m.def(
      "set_progress", [](bool show) { cq::ProgressBar::set_quiet(!show); }, pybind11::arg("show"),
      "progress bars on stderr, as cq shows them (on by default; False as cq --quiet)");
  cq::python::bind_quantizers(m);
  cq::python::bind_model(m);
}
