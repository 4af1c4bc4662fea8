#include "kernels/gemm_f32.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>

#include "kernels/kernel_dispatch.h"
#include "kernels/simd_horizontal.h"
#include "util/error.h"

namespace cq::kernels {

CQ_AVX512_BEGIN
namespace {

constexpr int64_t kGemvMaxRows = 4;
// Output channels per inner step: 8 concurrent streams of B reach ~42 GB/s at K = 4096 where
// 4 reach ~32 (two threads); 8 × Rows accumulators fit the 32 registers up to Rows = 2.
template <int Rows>
constexpr int64_t kGemvChannels = Rows <= 2 ? 8 : 4;
constexpr int64_t kGemvMaxChunk = 256;  // output channels per OpenMP task, at most

// C rows 0..Rows-1, channels [first, last): one pass over those rows of B, each loaded once
// for all Rows activation rows; 16-float lanes per (row, channel), masked K tail.
template <int Rows>
void gemv_block(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t first,
                int64_t last, int64_t k) {
  const int64_t full = k / 16 * 16;
  const auto tail = static_cast<__mmask16>((1u << (k - full)) - 1u);
  constexpr int64_t kChannels = kGemvChannels<Rows>;
  for (int64_t j = first; j < last; j += kChannels) {
    const int64_t channels = std::min(kChannels, last - j);
    __m512 acc[Rows][kChannels];
    for (int r = 0; r < Rows; ++r)
      for (int64_t t = 0; t < kChannels; ++t) acc[r][t] = _mm512_setzero_ps();
    const float* rows_of_b[kChannels];
    for (int64_t t = 0; t < kChannels; ++t) rows_of_b[t] = b + (j + std::min(t, channels - 1)) * ldb;
    for (int64_t kk = 0; kk < k; kk += 16) {
      const __mmask16 mask = kk < full ? static_cast<__mmask16>(0xFFFF) : tail;
      __m512 weights[kChannels];
      for (int64_t t = 0; t < kChannels; ++t) weights[t] = _mm512_maskz_loadu_ps(mask, rows_of_b[t] + kk);
      for (int r = 0; r < Rows; ++r) {
        const __m512 x = _mm512_maskz_loadu_ps(mask, a + r * lda + kk);
        for (int64_t t = 0; t < kChannels; ++t) acc[r][t] = _mm512_fmadd_ps(x, weights[t], acc[r][t]);
      }
    }
    for (int r = 0; r < Rows; ++r)
      for (int64_t t = 0; t < channels; ++t) c[r * ldc + j + t] = simd::horizontal_sum(acc[r][t]);
  }
}

// Decode-sized products (M <= 4) are bound by reading B once; oneDNN's sgemm reaches ~70 %
// of what a plain streaming pass does there (bench_engine's lm_head GEMV).
template <int Rows>
void gemv_rows(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t n, int64_t k) {
  // Enough chunks per thread that an uneven split costs little (768 channels: 16 of 48).
  const int64_t threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  constexpr int64_t kChannels = kGemvChannels<Rows>;
  const int64_t chunk_size =
      std::clamp<int64_t>((n / (8 * threads) + kChannels - 1) / kChannels * kChannels, kChannels, kGemvMaxChunk);
  const int64_t chunks = (n + chunk_size - 1) / chunk_size;
#pragma omp parallel for schedule(static) if (n * k >= (int64_t{1} << 18))
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    gemv_block<Rows>(a, lda, b, ldb, c, ldc, chunk * chunk_size, std::min(n, (chunk + 1) * chunk_size), k);
}

bool gemv(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m, int64_t n,
          int64_t k) {
  if (m > kGemvMaxRows || k == 0) return false;
  switch (m) {
    case 1: gemv_rows<1>(a, lda, b, ldb, c, ldc, n, k); break;
    case 2: gemv_rows<2>(a, lda, b, ldb, c, ldc, n, k); break;
    case 3: gemv_rows<3>(a, lda, b, ldb, c, ldc, n, k); break;
    default: gemv_rows<4>(a, lda, b, ldb, c, ldc, n, k); break;
  }
  return true;
}

}  // namespace
CQ_AVX512_END

void gemm_f32(const float* a, int64_t lda, const float* b, int64_t ldb, const float* bias, float* c, int64_t ldc,
              int64_t m, int64_t n, int64_t k) {
  if (m < 0 || n < 0 || k < 0 || lda < k || ldb < k || ldc < n) {
    fail("gemm_f32: bad shape M={} N={} K={} lda={} ldb={} ldc={}", m, n, k, lda, ldb, ldc);
  }
  if (m == 0 || n == 0) return;
  // dnnl_sgemm is row-major; B (N×K) used transposed gives the K×N operand. oneDNN picks
  // its JIT kernel for the CPU (AVX-512 here) and threads with the shared OpenMP runtime.
  // bench_gemm measured it at ~90% of the FMA ceiling for M ≥ 512, which leaves no room for
  // an own FP32 kernel to pay for itself there; decode-sized M is memory-bound (gemv above).
  if (!(avx512_kernels() && gemv(a, lda, b, ldb, c, ldc, m, n, k))) {
    const dnnl_status_t status = dnnl_sgemm('N', 'T', m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
    if (status != dnnl_success) fail("gemm_f32: dnnl_sgemm failed (status {})", static_cast<int>(status));
  }
  if (bias == nullptr) return;
#pragma omp parallel for schedule(static) if (m * n >= (1 << 16))
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) row[j] += bias[j];
  }
}

}  // namespace cq::kernels
