#pragma once
// What this CPU can run: the one place that asks it (cached at first use). The GEMM paths
// (gemm_dispatch.h) and the row and vector kernels (kernel_dispatch.h) decide from these.
namespace cq::kernels {

// AVX-512 F, BW, VL and DQ plus FMA: what the CQ_AVX512_BEGIN regions (kernels/avx512.h) use.
bool cpu_has_avx512();
// AVX-512 F, BW, VL and VNNI: the integer GEMMs' vpdpbusd kernels.
bool cpu_has_avx512_vnni();
bool cpu_has_avx2_fma();

}  // namespace cq::kernels
