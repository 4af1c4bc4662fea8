#pragma once
// INT8 × INT8 GEMM with int32 accumulation and a fused dequantization epilogue, for linear
// layers with per-token (row) activation scales and per-output-channel (column) weight
// scales:
//
//   C_ij = fma( float(Σ_k A_ik · B_jk),  row_scale_i · col_scale_j,  bias_j )
//
// That is the exact order of floating-point operations every path uses (the int32 sum is
// exact; float(int32) rounds to nearest; s = row_scale_i * col_scale_j is one rounded
// product; one fused multiply-add; bias_j = 0 when bias is null), so every SIMD path equals
// the scalar reference bit for bit.
//
// A: M×K activation codes in [-127, 127], row-major. B: N×K weight codes in [-128, 127],
// stored HF-style (one row per output channel) and packed once with pack_int8_weights().
//
// VNNI sign trick: vpdpbusd multiplies *unsigned* 8-bit by signed 8-bit values. The kernel
// feeds A + 128 (in [1, 255], unsigned) and corrects with a per-weight-row constant:
//   Σ_k (A_ik + 128) · B_jk − 128 · Σ_k B_jk = Σ_k A_ik · B_jk        (exact in int32)
// pack_int8_weights() stores 128 · Σ_k B_jk per output channel for that. The AVX2 path
// widens both operands to int16 and uses vpmaddwd (no vpmaddubsw, whose int16 pair sums
// saturate), so it needs no correction.
//
// Limits: K ≤ 65536 keeps every int32 partial sum (≤ 255·128·K) from overflowing.
#include <cstdint>
#include <vector>

#include "kernels/aligned_buffer.h"
#include "kernels/gemm_dispatch.h"

namespace cq::kernels {

// Weights packed for the kernels. Layout: N is split into panels of 64 output channels
// (the last panel padded with zero rows); K is padded with zeros to a multiple of 4. A panel
// stores, for every group of 4 consecutive k ("k-quad"), 4 blocks of 16 channels × 4 bytes:
//   byte(panel p, quad q, channel c in 0..63, t in 0..3) = data[((p·Kq + q)·64 + c)·4 + t]
//                                                       = B[64p + c][4q + t]
// so one 64-byte load is the operand of one vpdpbusd for 16 channels and the whole panel
// is one sequential stream.
struct PackedInt8Weights {
  static constexpr int64_t kPanelWidth = 64;  // output channels per panel
  static constexpr int64_t kQuad = 4;         // k values per 32-bit lane

  int64_t n = 0;         // output channels (rows of B)
  int64_t k = 0;         // input channels
  int64_t k_padded = 0;  // k rounded up to a multiple of 4
  int64_t n_padded = 0;  // n rounded up to a multiple of 64
  AlignedBuffer<int8_t> data;                // n_padded · k_padded bytes, layout above
  AlignedBuffer<int32_t> compensation;       // n_padded values: 128 · Σ_k B_jk (0 for padding)
  std::vector<int8_t> row_major;             // N×K copy for GemmPath::OneDnn (empty unless kept)

  int64_t panels() const { return n_padded / kPanelWidth; }
  const int8_t* panel(int64_t p) const { return data.data() + p * kPanelWidth * k_padded; }
};

// Packs N×K weight codes (row stride ldb ≥ K). keep_row_major also keeps a plain copy so
// GemmPath::OneDnn can run (twice the memory; benchmarks and comparisons only).
// Throws cq::Error when K > 65536 or sizes are negative.
PackedInt8Weights pack_int8_weights(const int8_t* b, int64_t n, int64_t k, int64_t ldb, bool keep_row_major = false);

// The same in two steps, for callers that re-quantize weights often (dynamic CrossQuant) and
// pack panel by panel into storage they keep: allocate_int8_weights sizes w for N×K codes;
// pack_int8_panel writes output channels [64·panel, 64·panel + 64) from `b`, whose row 0 is
// channel 64·panel (rows past N are not read). Panels are independent (parallel callers).
PackedInt8Weights allocate_int8_weights(int64_t n, int64_t k);
void pack_int8_panel(const int8_t* b, int64_t ldb, int64_t panel, PackedInt8Weights& w);

// C (M×N, row stride ldc) = dequantized A·Bᵀ (+ bias). a: M×K codes in [-127, 127] with
// row stride lda; row_scales: M floats; col_scales: N floats; bias: N floats or nullptr.
// path: Auto uses gemm_path() (CQ_GEMM_PATH / set_gemm_path), and when that is Auto too,
// the fastest path for this CPU and shape. Throws cq::Error when the forced path is not
// supported here (or OneDnn without the row-major copy).
void gemm_int8(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const PackedInt8Weights& w,
               const float* col_scales, const float* bias, float* c, int64_t ldc, GemmPath path = GemmPath::Auto);

// The path gemm_int8 would take for an M-row product with these weights.
GemmPath resolve_int8_gemm_path(int64_t m, const PackedInt8Weights& w, GemmPath requested = GemmPath::Auto);

// Plain scalar reference on *unpacked* operands (b: N×K row-major, stride ldb), with the
// epilogue above. Tests compare every path against it.
void gemm_int8_reference(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const int8_t* b,
                         int64_t n, int64_t k, int64_t ldb, const float* col_scales, const float* bias, float* c,
                         int64_t ldc);

}  // namespace cq::kernels
