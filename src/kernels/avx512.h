#pragma once
// <immintrin.h> and the markers that compile a region of a source file for AVX-512, whatever
// the build's -march: the portable build (CQ_NATIVE=OFF) runs that code only where
// kernels::avx512_kernels() says the CPU has it (docs/KERNELS.md).
//
//   CQ_AVX512_BEGIN
//   namespace avx512 { ...intrinsics, helpers, lambdas... }
//   CQ_AVX512_END
//
// Every function defined in between (helpers, templates and lambdas included) is compiled for
// AVX-512F/BW/VL/DQ + FMA. Implicitly defined members are not: give a struct holding __m512
// members an explicit constructor. Call the region's functions only from a dispatcher.
//
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and trip -W(maybe-)uninitialized
// once inlined (GCC bug 105593); the warning is about the header, so it is silenced for the
// header alone. Include this before anything else that includes <immintrin.h>.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // a GCC-only warning group (clang builds the fuzz targets)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop

// The instruction sets of the region; kernels::cpu_has_avx512() checks the same list.
#if defined(__clang__)
// (_Pragma takes one string literal: the line stays long.)
#define CQ_AVX512_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512bw,avx512vl,avx512dq,fma\"))), apply_to = function)")
#define CQ_AVX512_END _Pragma("clang attribute pop")
#else
#define CQ_AVX512_BEGIN \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512bw,avx512vl,avx512dq,fma\")")
#define CQ_AVX512_END _Pragma("GCC pop_options")
#endif
