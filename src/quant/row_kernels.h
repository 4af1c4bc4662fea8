#pragma once
// The inner loops every quantizer is built from, one row (or row segment) at a time.
// Each exists as a scalar reference (always compiled, the definition) and an AVX-512 version
// (compiled for AVX-512 in every build, run only where the CPU has it) that must agree with
// it bit for bit (tested in tests/unit/test_quant_kernels.cpp). The unqualified functions at
// the bottom dispatch at run time (kernels/kernel_dispatch.h).
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

#include "kernels/kernel_dispatch.h"

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

// Compiled for AVX-512 in every build (kernels/avx512.h): call only where
// kernels::cpu_has_avx512().
namespace avx512 {
CQ_ROW_KERNEL_DECLARATIONS
}  // namespace avx512

#undef CQ_ROW_KERNEL_DECLARATIONS

// 1 / d_j for every divisor when all lie in the range where the SIMD fast path is exact
// (see row_kernels.cpp); empty otherwise (pass .data() of the empty vector: null).
std::vector<float> reciprocals_for(const std::vector<float>& divisors);

// What the quantizers call: the AVX-512 version where kernels::avx512_kernels(), else the
// scalar one (one check per row or row pair).
inline RowScan scan_row(const float* x, int64_t n, float* column_absmax) {
  return kernels::avx512_kernels() ? avx512::scan_row(x, n, column_absmax) : scalar::scan_row(x, n, column_absmax);
}
inline RowCounts fake_quantize_row(float* x, int64_t n, float divisor, float qmax) {
  return kernels::avx512_kernels() ? avx512::fake_quantize_row(x, n, divisor, qmax)
                                   : scalar::fake_quantize_row(x, n, divisor, qmax);
}
inline RowCounts quantize_row_codes(const float* x, int64_t n, float divisor, float qmax, int16_t* codes) {
  return kernels::avx512_kernels() ? avx512::quantize_row_codes(x, n, divisor, qmax, codes)
                                   : scalar::quantize_row_codes(x, n, divisor, qmax, codes);
}
inline RowCounts fake_quantize_row_cross(float* x, int64_t n, float row_divisor, const float* column_divisors,
                                         const float* column_reciprocals, float qmax) {
  return kernels::avx512_kernels()
             ? avx512::fake_quantize_row_cross(x, n, row_divisor, column_divisors, column_reciprocals, qmax)
             : scalar::fake_quantize_row_cross(x, n, row_divisor, column_divisors, column_reciprocals, qmax);
}
inline RowCounts quantize_row_cross_codes(const float* x, int64_t n, float row_divisor, const float* column_divisors,
                                          const float* column_reciprocals, float qmax, int16_t* codes) {
  return kernels::avx512_kernels()
             ? avx512::quantize_row_cross_codes(x, n, row_divisor, column_divisors, column_reciprocals, qmax, codes)
             : scalar::quantize_row_cross_codes(x, n, row_divisor, column_divisors, column_reciprocals, qmax, codes);
}
inline RowCounts fake_quantize_row_pair_cross(float* x0, float* x1, int64_t n, float row_divisor0, float row_divisor1,
                                              const float* column_divisors, const float* column_reciprocals,
                                              float qmax) {
  return kernels::avx512_kernels()
             ? avx512::fake_quantize_row_pair_cross(x0, x1, n, row_divisor0, row_divisor1, column_divisors,
                                                    column_reciprocals, qmax)
             : scalar::fake_quantize_row_pair_cross(x0, x1, n, row_divisor0, row_divisor1, column_divisors,
                                                    column_reciprocals, qmax);
}
inline RowCounts quantize_row_pair_cross_codes(const float* x0, const float* x1, int64_t n, float row_divisor0,
                                               float row_divisor1, const float* column_divisors,
                                               const float* column_reciprocals, float qmax, int16_t* codes0,
                                               int16_t* codes1) {
  return kernels::avx512_kernels()
             ? avx512::quantize_row_pair_cross_codes(x0, x1, n, row_divisor0, row_divisor1, column_divisors,
                                                     column_reciprocals, qmax, codes0, codes1)
             : scalar::quantize_row_pair_cross_codes(x0, x1, n, row_divisor0, row_divisor1, column_divisors,
                                                     column_reciprocals, qmax, codes0, codes1);
}

}  // namespace cq::quant_kernels
