#pragma once
// Which instruction-set path the integer GEMMs (gemm_int8, gemm_int4) take. `Auto` picks the
// fastest supported one for the CPU and shape; the others force a path (tests compare
// every forced path with the scalar reference; benchmarks compare paths).
//
// The process-wide override starts from the environment variable CQ_GEMM_PATH
// (auto | vnni | avx2 | scalar | onednn), read once; set_gemm_path() replaces it.
#include <string_view>

#include "kernels/cpu_features.h"

namespace cq::kernels {

enum class GemmPath {
  Auto,        // best supported path for this CPU and shape
  Avx512Vnni,  // AVX-512 VNNI vpdpbusd kernels
  Avx2,        // AVX2 exact int16 vpmaddwd kernels
  Scalar,      // portable C++ loops (always available)
  OneDnn,      // oneDNN's dnnl_gemm_s8s8s32 (INT8 only; needs the row-major weight copy)
};

const char* to_string(GemmPath path);
// Throws cq::Error for an unknown name.
GemmPath parse_gemm_path(std::string_view name);

// Whether this CPU (and build) can run the path. Auto and Scalar are always supported.
bool gemm_path_supported(GemmPath path);

// Process-wide override; Auto restores automatic selection. Not meant to be changed while
// another thread is inside a GEMM.
void set_gemm_path(GemmPath path);
GemmPath gemm_path();

}  // namespace cq::kernels
