#pragma once
// The inner loops every quantizer is built from, one row (or row segment) at a time.
// Each exists as a scalar reference (always compiled, the definition) and, when the build
// targets AVX-512, a SIMD version that must agree with it bit for bit (tested in
// tests/unit/test_quant_kernels.cpp). The unqualified functions at the bottom dispatch.
//
// Arithmetic is fixed so that it equals the PyTorch reference in float32:
//   per-token / per-tensor / group:  q = round(x / Δ), fake = q · Δ
//   CrossQuant (eq. 5, appendix code): q = round(x / row_divisor / column_divisor_j),
//                                      fake = q · column_divisor_j · row_divisor
// with round = round-half-to-even of the true IEEE quotients. (The SIMD versions first try a
// product with reciprocals and divide exactly wherever that could round differently.)
// Codes are clamped to ±qmax; a clamp that changes a code counts as clipped.
//
// Reciprocals: 1/d is used only when d lies in [2^-60, 2^60] (see row_kernels.cpp), so
// callers pass column_reciprocals only when every column divisor does (reciprocals_for()).
#include <cstdint>
#include <vector>

namespace cq::quant_kernels {

struct RowScan {
  float absmax = 0.f;
  int64_t exact_zeros = 0;  // x_j == 0 (±0)
  bool finite = true;       // false when the row holds NaN or ±Inf
};

struct RowCounts {
  int64_t kernel = 0;   // codes equal to zero
  int64_t clipped = 0;  // codes clamped to ±qmax
  RowCounts& operator+=(const RowCounts& other) {
    kernel += other.kernel;
    clipped += other.clipped;
    return *this;
  }
};

// Signatures shared by both implementations. column_reciprocals (1 / column_divisors[j],
// or null) only lets the SIMD version skip most divisions; results never depend on it.
#define CQ_ROW_KERNEL_DECLARATIONS                                                                  \
  /* max_j |x_j| and the zero count; when column_absmax is non-null also                          \
     column_absmax[j] = max(column_absmax[j], |x_j|). */                                            \
  RowScan scan_row(const float* x, int64_t n, float* column_absmax);                                \
  RowCounts fake_quantize_row(float* x, int64_t n, float divisor, float qmax);                      \
  RowCounts quantize_row_codes(const float* x, int64_t n, float divisor, float qmax, int16_t* codes); \
  RowCounts fake_quantize_row_cross(float* x, int64_t n, float row_divisor, const float* column_divisors, \
                                    const float* column_reciprocals, float qmax);                   \
  RowCounts quantize_row_cross_codes(const float* x, int64_t n, float row_divisor,                  \
                                     const float* column_divisors, const float* column_reciprocals, \
                                     float qmax, int16_t* codes);                                   \
  /* Two rows at once, as two calls of the one-row kernel (each column's divisor and          \
     reciprocal are loaded once for both: CrossQuant's kernel streams three arrays). */        \
  RowCounts fake_quantize_row_pair_cross(float* x0, float* x1, int64_t n, float row_divisor0,       \
                                         float row_divisor1, const float* column_divisors,          \
                                         const float* column_reciprocals, float qmax);              \
  RowCounts quantize_row_pair_cross_codes(const float* x0, const float* x1, int64_t n,              \
                                          float row_divisor0, float row_divisor1,                   \
                                          const float* column_divisors, const float* column_reciprocals, \
                                          float qmax, int16_t* codes0, int16_t* codes1);

namespace scalar {
CQ_ROW_KERNEL_DECLARATIONS
}  // namespace scalar

#ifdef __AVX512F__
namespace avx512 {
CQ_ROW_KERNEL_DECLARATIONS
}  // namespace avx512
namespace simd = avx512;
inline constexpr bool kSimdCompiled = true;
#else
namespace simd = scalar;
inline constexpr bool kSimdCompiled = false;
#endif

#undef CQ_ROW_KERNEL_DECLARATIONS

// 1 / d_j for every divisor when all lie in the range where the SIMD fast path is exact
// (see row_kernels.cpp); empty otherwise (pass .data() of the empty vector: null).
std::vector<float> reciprocals_for(const std::vector<float>& divisors);

// What the quantizers call: the SIMD version where compiled, else the scalar one.
using simd::fake_quantize_row;
using simd::fake_quantize_row_cross;
using simd::fake_quantize_row_pair_cross;
using simd::quantize_row_pair_cross_codes;
using simd::quantize_row_codes;
using simd::quantize_row_cross_codes;
using simd::scan_row;

}  // namespace cq::quant_kernels
