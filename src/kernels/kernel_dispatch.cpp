#include "kernels/kernel_dispatch.h"

#include <atomic>
#include <cstdlib>

#include "util/error.h"

namespace cq::kernels {
namespace {

void check_supported(KernelPath path, std::string_view source) {
  if (!kernel_path_supported(path))
    fail("{}: kernel path '{}' needs a CPU with AVX-512 (F, BW, VL, DQ) and FMA, which this one lacks", source,
         to_string(path));
}

KernelPath initial_path_from_environment() {
  const char* name = std::getenv("CQ_KERNEL_PATH");
  if (name == nullptr || *name == '\0') return KernelPath::Auto;
  const KernelPath path = parse_kernel_path(name);
  check_supported(path, "CQ_KERNEL_PATH");
  return path;
}

bool resolves_to_avx512(KernelPath path) {
  return path == KernelPath::Avx512 || (path == KernelPath::Auto && cpu_has_avx512());
}

struct Selection {
  std::atomic<KernelPath> path;
  std::atomic<bool> avx512;
  explicit Selection(KernelPath initial) : path(initial), avx512(resolves_to_avx512(initial)) {}
};

Selection& selection() {
  static Selection chosen{initial_path_from_environment()};
  return chosen;
}

}  // namespace

const char* to_string(KernelPath path) {
  switch (path) {
    case KernelPath::Auto: return "auto";
    case KernelPath::Avx512: return "avx512";
    case KernelPath::Scalar: return "scalar";
  }
  return "?";
}

KernelPath parse_kernel_path(std::string_view name) {
  for (KernelPath path : {KernelPath::Auto, KernelPath::Avx512, KernelPath::Scalar})
    if (name == to_string(path)) return path;
  fail("CQ_KERNEL_PATH: unknown kernel path '{}' (expected auto, avx512 or scalar)", name);
}

bool kernel_path_supported(KernelPath path) { return path != KernelPath::Avx512 || cpu_has_avx512(); }

void set_kernel_path(KernelPath path) {
  check_supported(path, "set_kernel_path");
  selection().path.store(path, std::memory_order_relaxed);
  selection().avx512.store(resolves_to_avx512(path), std::memory_order_relaxed);
}

KernelPath kernel_path() { return selection().path.load(std::memory_order_relaxed); }

bool avx512_kernels() { return selection().avx512.load(std::memory_order_relaxed); }

const char* active_kernel_isa() { return avx512_kernels() ? "avx512" : "scalar"; }

}  // namespace cq::kernels
