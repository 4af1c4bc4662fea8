#pragma once
// Horizontal reductions of one AVX-512 register by halving shuffles, shared by the SIMD
// kernels (GCC 12's _mm512_reduce_* trip -Wmaybe-uninitialized). Compiled for AVX-512
// (kernels/avx512.h): call them only from AVX-512 regions.
#include "kernels/avx512.h"

CQ_AVX512_BEGIN
namespace cq::kernels::simd {

template <typename Combine>
inline float horizontal(__m512 v, Combine combine) {
  v = combine(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  v = combine(v, _mm512_shuffle_f32x4(v, v, 0xB1));
  v = combine(v, _mm512_permute_ps(v, 0x4E));
  v = combine(v, _mm512_permute_ps(v, 0xB1));
  return _mm512_cvtss_f32(v);
}
// Function objects, not lambdas: a captureless lambda's implicit conversion to a function
// pointer would be compiled outside the AVX-512 region (-Wpsabi in portable builds).
struct MaxOf {
  __m512 operator()(__m512 a, __m512 b) const { return _mm512_max_ps(a, b); }
};
struct SumOf {
  __m512 operator()(__m512 a, __m512 b) const { return _mm512_add_ps(a, b); }
};
inline float horizontal_max(__m512 v) { return horizontal(v, MaxOf{}); }
inline float horizontal_sum(__m512 v) { return horizontal(v, SumOf{}); }

inline double horizontal_sum(__m512d v) {
  v = _mm512_add_pd(v, _mm512_shuffle_f64x2(v, v, 0x4E));
  v = _mm512_add_pd(v, _mm512_shuffle_f64x2(v, v, 0xB1));
  v = _mm512_add_pd(v, _mm512_permute_pd(v, 0x55));
  return _mm512_cvtsd_f64(v);
}

}  // namespace cq::kernels::simd
CQ_AVX512_END
