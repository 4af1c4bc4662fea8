#pragma once
// INT8 activations × packed INT4 weights, per-channel or per-group (along K) scales, with or
// without zero points (AWQ-style asymmetric: w = (q − z) · s), int32 accumulation per group
// and a fused epilogue. Meant for decode (M = 1), where reading half the bytes of INT8
// weights is what matters; M > 1 works too.
//
// Every path computes, in this order (so each equals the scalar reference bit for bit):
//   isum_ijg = Σ_{k in group g} A_ik · (q_jk − z_jg)                  exact int32
//   f_ij     = 0;  for g = 0, 1, ...:  f_ij = fma(float(isum_ijg), s_jg, f_ij)
//   C_ij     = fma(f_ij, row_scale_i, bias_j)                          (bias_j = 0 if null)
//
// Kernel trick: the 4-bit codes are stored as unsigned nibbles u = q + 8 (symmetric, z = 8)
// or u = q (asymmetric), so vpdpbusd takes the *weights* as its unsigned operand and the
// signed activations as the signed one — no +128 offset is needed — and
//   Σ_k A_ik (u_jk − z_jg) = Σ_k A_ik u_jk − z_jg · Σ_{k in g} A_ik
// with the per-row group sums Σ A_ik computed once per call.
#include <cstdint>

#include "kernels/aligned_buffer.h"
#include "kernels/gemm_dispatch.h"

namespace cq::kernels {

// Layout: 64-channel panels (last one padded), K padded with zeros to a multiple of 8. Per
// panel and per 8 consecutive k ("k-octet" o), 256 bytes = 4 blocks × 16 channels × 4 bytes:
//   byte(panel p, octet o, channel c, t in 0..3): low nibble  = u[64p + c][8o + t]
//                                                 high nibble = u[64p + c][8o + 4 + t]
// so masking/shifting one 64-byte load gives the vpdpbusd operands of two k-quads.
// Scales and zero points are stored per panel and group, 64 channels contiguous.
struct PackedInt4Weights {
  static constexpr int64_t kPanelWidth = 64;
  static constexpr int64_t kOctet = 8;

  int64_t n = 0;
  int64_t k = 0;
  int64_t k_padded = 0;    // multiple of 8
  int64_t n_padded = 0;    // multiple of 64
  int64_t group_size = 0;  // k values per group (a multiple of 8; k_padded for per-channel)
  int64_t groups = 0;      // ceil(k / group_size)
  bool asymmetric = false; // zero points were given
  AlignedBuffer<uint8_t> data;         // n_padded · k_padded / 2 bytes
  AlignedBuffer<float> scales;         // [panel][group][64]
  AlignedBuffer<uint8_t> zero_points;  // [panel][group][64], in 0..15 (8 for symmetric)

  int64_t panels() const { return n_padded / kPanelWidth; }
  const uint8_t* panel(int64_t p) const { return data.data() + p * kPanelWidth * k_padded / 2; }
  // Bytes a GEMV reads (codes + scales + zero points), for bandwidth figures.
  int64_t bytes() const {
    return static_cast<int64_t>(data.size() + scales.size() * sizeof(float) + zero_points.size());
  }
};

// codes: N×K, row stride ldq. Symmetric (zero_points == nullptr): codes in [-8, 7], w = q·s.
// Asymmetric: codes in [0, 15], zero_points N×groups in [0, 15], w = (q − z)·s.
// scales: N×groups row-major. group_size: a positive multiple of 8, or 0 for per-channel
// (one group spanning K). Throws cq::Error on bad sizes, out-of-range codes or K > 65536.
PackedInt4Weights pack_int4_weights(const int8_t* codes, int64_t n, int64_t k, int64_t ldq, const float* scales,
                                    int64_t group_size, const int8_t* zero_points = nullptr);

// The same in two steps (as allocate_int8_weights / pack_int8_panel): allocate_int4_weights
// sizes w; pack_int4_panel checks and writes output channels [64·panel, 64·panel + 64) from
// the codes, scales and zero points of those rows (row 0 = channel 64·panel; stride ldq for
// codes, `groups` for scales and zero points). Panels are independent (parallel callers).
PackedInt4Weights allocate_int4_weights(int64_t n, int64_t k, int64_t group_size, bool asymmetric);
void pack_int4_panel(const int8_t* codes, int64_t ldq, const float* scales, const int8_t* zero_points, int64_t panel,
                     PackedInt4Weights& w);

// C (M×N, stride ldc) = dequantized A·Wᵀ (+ bias); a: M×K codes in [-127, 127] (stride lda),
// row_scales: M floats, bias: N floats or nullptr. Paths: Avx512Vnni, Avx2, Scalar (Auto as
// in gemm_int8); OneDnn is not available for INT4 and throws cq::Error.
void gemm_int4(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const PackedInt4Weights& w,
               const float* bias, float* c, int64_t ldc, GemmPath path = GemmPath::Auto);

GemmPath resolve_int4_gemm_path(int64_t m, const PackedInt4Weights& w, GemmPath requested = GemmPath::Auto);

// Scalar reference on unpacked operands with the same conventions as pack_int4_weights.
void gemm_int4_reference(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const int8_t* codes,
                         int64_t n, int64_t k, int64_t ldq, const float* scales, int64_t group_size,
                         const int8_t* zero_points, const float* bias, float* c, int64_t ldc);

}  // namespace cq::kernels
