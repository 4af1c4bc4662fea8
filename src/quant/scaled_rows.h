#pragma once
// Per-channel (eq. 2) codes of W·diag(f), one row at a time, for callers that re-quantize a
// weight with new column factors often (dynamic CrossQuant on the integer engine): the
// scaled row lives only in a small scratch buffer, so the weight is read once and every
// later step runs from L1. The codes and scale equal those of the per-channel quantizer's
// quantize() on the scaled matrix bit for bit (same product, same row kernels).
#include <cstdint>

namespace cq {

// weight_row, factors: n values; scratch: n floats; codes: n values. Writes Δ = max|w·f| / qmax
// (1 for a zero row) to *scale. Returns false, writing nothing meaningful, when the scaled
// row holds NaN or ±Inf: the caller then runs the quantizer itself, which reports it.
bool per_channel_codes_of_scaled_row(const float* weight_row, const float* factors, int64_t n, int bits,
                                     float* scratch, int8_t* codes, float* scale);

}  // namespace cq
