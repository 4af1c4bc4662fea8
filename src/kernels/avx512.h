#pragma once
// <immintrin.h> for the AVX-512 kernels (AVX-512 builds only). GCC 12's AVX-512 intrinsics
// start from _mm512_undefined_*() and trip -W(maybe-)uninitialized once inlined (GCC bug
// 105593); the warning is about the header, so it is silenced for the header alone. Include
// this before anything else that includes <immintrin.h>.
#ifdef __AVX512F__
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // a GCC-only warning group (clang builds the fuzz targets)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif
