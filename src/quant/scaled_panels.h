#pragma once
// Per-channel (eq. 2) codes of W·diag(f), written straight into the INT8 GEMM's packed layout,
// for dynamic CrossQuant on the integer engine (it re-quantizes its weights for every window).
//
// The FP32 weight is kept in the order the GEMM packs its codes (kernels/gemm_int8.h): panels
// of 64 output channels, inside a panel k-quads of 4 inputs, inside a quad 64 channels × 4
// inputs. A 16-float vector then holds 4 channels × 4 consecutive inputs: scaling, the
// channel maxima and the codes run on whole vectors, and the codes of 16 values are 16
// consecutive bytes of the packed panel (no separate pack). The codes and scales equal those
// of the per-channel quantizer's quantize() on the scaled matrix bit for bit (same product,
// Δ = nonzero_divisor(max|w·f| / qmax), code = round-half-even(w·f / Δ) clamped to ±qmax).
#include <cstdint>
#include <vector>

namespace cq {

// The order above: n_padded · k_padded floats (64-channel panels, k rounded up to 4; padding 0).
std::vector<float> order_as_int8_panels(const float* weight, int64_t out, int64_t in);
// Row r (0..63) of panel `panel` of such an ordering back in plain order (in values).
void row_of_int8_panel(const float* ordered, int64_t in, int64_t panel, int64_t r, float* row);

struct ScaledPanel {
  const float* weight = nullptr;   // one panel of order_as_int8_panels: 64 · k_padded floats
  const float* factors = nullptr;  // k_padded values (0 past k)
  int64_t k_padded = 0;
  int bits = 8;                    // 5..8
};

// Codes of the panel into `packed` (64 · k_padded bytes, the panel of PackedInt8Weights::data),
// 128 · Σ codes per channel into compensation[64], Δ into scales[64] and max|w·f| into
// absmax[64]. Returns false (outputs unspecified) when a scaled value is NaN or ±Inf: the caller
// then runs the quantizer, which reports it. Dispatched: AVX-512 where the CPU has it.
bool per_channel_codes_of_scaled_panel(const ScaledPanel& panel, int8_t* packed, int32_t* compensation, float* scales,
                                       float* absmax);

namespace scaled_panels_detail {  // the two versions, for the forced-path tests
bool scalar_codes(const ScaledPanel& panel, int8_t* packed, int32_t* compensation, float* scales, float* absmax);
bool avx512_codes(const ScaledPanel& panel, int8_t* packed, int32_t* compensation, float* scales, float* absmax);
}  // namespace scaled_panels_detail

}  // namespace cq
