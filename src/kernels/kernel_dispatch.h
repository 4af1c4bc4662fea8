#pragma once
// Which instruction set the row and vector kernels run on: the row quantization kernels
// (quant/row_kernels.h), the norms, the column maxima, exp/softmax/SiLU, the FP32 GEMV and
// CrossQuant's column powers. Each has a portable C++ version (the reference, always
// compiled) and an AVX-512 version compiled for AVX-512 whatever the build's -march
// (kernels/avx512.h); the integer GEMMs choose their own paths (gemm_dispatch.h).
// docs/KERNELS.md says how to add a kernel.
//
// `Auto` takes AVX-512 where cpu_has_avx512(); `Scalar` forces the portable versions
// (tests compare the two; a way to rule the SIMD code out when hunting a bug). The
// process-wide choice starts from the environment variable CQ_KERNEL_PATH
// (auto | avx512 | scalar), read once; set_kernel_path() replaces it.
#include <string_view>

#include "kernels/cpu_features.h"

namespace cq::kernels {

enum class KernelPath {
  Auto,    // AVX-512 where the CPU has it, else scalar
  Avx512,  // the AVX-512 versions (needs cpu_has_avx512())
  Scalar,  // the portable C++ versions (always available)
};

const char* to_string(KernelPath path);
// Throws cq::Error for an unknown name.
KernelPath parse_kernel_path(std::string_view name);
bool kernel_path_supported(KernelPath path);

// Throws cq::Error for a path this CPU cannot run. Not meant to be changed while another
// thread is inside a kernel.
void set_kernel_path(KernelPath path);
KernelPath kernel_path();

// What the dispatchers ask (once per row or group of rows, never per element): whether the
// AVX-512 versions run. Throws cq::Error when CQ_KERNEL_PATH is unknown or unsupported.
bool avx512_kernels();

// The resolved path as a word ("avx512" or "scalar"), for benchmarks and reports.
const char* active_kernel_isa();

}  // namespace cq::kernels
