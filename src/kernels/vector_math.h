#pragma once
// Element-wise math the decoder runs on every attention score and MLP activation: exp,
// softmax, SiLU. AVX-512 where the CPU has it (a polynomial exp accurate to ~2 ulp, measured
// against std::exp in tests/unit/test_vector_math.cpp), std::exp otherwise; chosen at run
// time (kernels/kernel_dispatch.h).
#include <cstdint>

namespace cq::kernels {

// row[j] = exp(row[j] - max) / Σ_k exp(row[k] - max) for j < n, in place. n >= 1; the
// entries must be finite or -inf (a fully -inf row is not allowed).
void softmax_inplace(float* row, int64_t n);

// out[i] = silu(gate[i]) · up[i] = gate[i] / (1 + exp(-gate[i])) · up[i]  (LLaMA's SwiGLU).
// out may alias gate or up.
void silu_multiply(const float* gate, const float* up, float* out, int64_t n);

// out[i] = gelu_tanh(gate[i]) · up[i], gelu_tanh(x) = x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))
// (PyTorch's gelu(approximate="tanh"), Gemma's GeGLU). One portable loop: Gemma's MLP is
// not a hot path worth an AVX-512 version yet. out may alias gate or up.
void gelu_tanh_multiply(const float* gate, const float* up, float* out, int64_t n);

// Σ_j exp(x[j] - shift), accumulated in double (log-sum-exp over a vocabulary).
double sum_exp_shifted(const float* x, int64_t n, float shift);

namespace scalar {
void softmax_inplace(float* row, int64_t n);
void silu_multiply(const float* gate, const float* up, float* out, int64_t n);
double sum_exp_shifted(const float* x, int64_t n, float shift);
}  // namespace scalar

// Compiled for AVX-512 in every build: call only where cpu_has_avx512().
namespace avx512 {
void softmax_inplace(float* row, int64_t n);
void silu_multiply(const float* gate, const float* up, float* out, int64_t n);
double sum_exp_shifted(const float* x, int64_t n, float shift);
}  // namespace avx512

}  // namespace cq::kernels
