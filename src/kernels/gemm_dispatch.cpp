#include "kernels/gemm_dispatch.h"

#include <atomic>
#include <cstdlib>

#include "kernels/cpu_features.h"
#include "util/error.h"

namespace cq::kernels {
namespace {

GemmPath initial_path_from_environment() {
  const char* name = std::getenv("CQ_GEMM_PATH");
  if (name == nullptr || *name == '\0') return GemmPath::Auto;
  return parse_gemm_path(name);
}

std::atomic<GemmPath>& forced_path() {
  static std::atomic<GemmPath> path{initial_path_from_environment()};
  return path;
}

}  // namespace

const char* to_string(GemmPath path) {
  switch (path) {
    case GemmPath::Auto: return "auto";
    case GemmPath::Avx512Vnni: return "vnni";
    case GemmPath::Avx2: return "avx2";
    case GemmPath::Scalar: return "scalar";
    case GemmPath::OneDnn: return "onednn";
  }
  return "?";
}

GemmPath parse_gemm_path(std::string_view name) {
  for (GemmPath path : {GemmPath::Auto, GemmPath::Avx512Vnni, GemmPath::Avx2, GemmPath::Scalar, GemmPath::OneDnn}) {
    if (name == to_string(path)) return path;
  }
  fail("CQ_GEMM_PATH: unknown GEMM path '{}' (expected auto, vnni, avx2, scalar or onednn)", name);
}

bool gemm_path_supported(GemmPath path) {
  switch (path) {
    case GemmPath::Avx512Vnni: return cpu_has_avx512_vnni();
    case GemmPath::Avx2: return cpu_has_avx2_fma();
    case GemmPath::Auto:
    case GemmPath::Scalar:
    case GemmPath::OneDnn: return true;
  }
  return false;
}

void set_gemm_path(GemmPath path) { forced_path().store(path, std::memory_order_relaxed); }
GemmPath gemm_path() { return forced_path().load(std::memory_order_relaxed); }

}  // namespace cq::kernels
