#include "kernels/gemm_f32.h"

#include <oneapi/dnnl/dnnl.h>

#include "util/error.h"

namespace cq::kernels {

void gemm_f32(const float* a, int64_t lda, const float* b, int64_t ldb, const float* bias, float* c, int64_t ldc,
              int64_t m, int64_t n, int64_t k) {
  if (m < 0 || n < 0 || k < 0 || lda < k || ldb < k || ldc < n) {
    fail("gemm_f32: bad shape M={} N={} K={} lda={} ldb={} ldc={}", m, n, k, lda, ldb, ldc);
  }
  if (m == 0 || n == 0) return;
  // dnnl_sgemm is row-major; B (N×K) used transposed gives the K×N operand. oneDNN picks
  // its JIT kernel for the CPU (AVX-512 here) and threads with the shared OpenMP runtime.
  // bench_gemm measured it at ~90% of the FMA ceiling for M ≥ 512, which leaves no room for
  // an own FP32 kernel to pay for itself.
  const dnnl_status_t status = dnnl_sgemm('N', 'T', m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  if (status != dnnl_success) fail("gemm_f32: dnnl_sgemm failed (status {})", static_cast<int>(status));
  if (bias == nullptr) return;
#pragma omp parallel for schedule(static) if (m * n >= (1 << 16))
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) row[j] += bias[j];
  }
}

}  // namespace cq::kernels
