#pragma once
// FP32 GEMM for linear layers: C (M×N) = A (M×K) · Bᵀ + bias, with B stored HF-style as
// N×K row-major (one row per output channel). Runs on all OpenMP threads: oneDNN's sgemm,
// except M <= 4 on AVX-512 CPUs (kernels/kernel_dispatch.h), where an own streaming GEMV
// reads B once at memory speed.
#include <cstdint>

namespace cq::kernels {

// a: M×K, row stride lda (>= K). b: N×K, row stride ldb (>= K). c: M×N, row stride ldc (>= N).
// bias: N floats or nullptr. C is overwritten. Throws cq::Error on bad sizes or a oneDNN failure.
void gemm_f32(const float* a, int64_t lda, const float* b, int64_t ldb, const float* bias, float* c, int64_t ldc,
              int64_t m, int64_t n, int64_t k);

// Same, contiguous operands (lda = ldb = K, ldc = N).
inline void gemm_f32(const float* a, const float* b, const float* bias, float* c, int64_t m, int64_t n, int64_t k) {
  gemm_f32(a, k, b, k, bias, c, n, m, n, k);
}

}  // namespace cq::kernels
