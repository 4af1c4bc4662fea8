#pragma once
// CrossQuant (eq. 5): Δ̃_ij = t_i^α · c_j^(1−α) / qmax, CQ(X_ij) = round(X_ij / Δ̃_ij), with
// t_i = max_j |X_ij| (row / token) and c_j = max_i |X_ij| (column / channel).
//
// Dynamic (default): c_j is taken over the rows of the matrix given to each call, as the
// paper's code does per sequence; pass one sequence (evaluation window) per call.
//
// Static CrossQuant: c_j fixed from calibration, so that diag(c^(1−α)) can be folded into
// the weight and a real integer GEMM computes the layer:
//   Y_ik ≈ row_divisor(t_i) · Σ_j CQ(X)_ij · (column_divisors(c)_j · W_kj).
// Give the maxima either in QuantizerSpec::static_column_absmax (through make_quantizer) or
// with set_static_column_absmax() on a CrossQuantQuantizer; gather them over calibration
// batches with accumulate_column_absmax(). With static c a token may exceed c_j, so codes are
// clamped to ±qmax and counted in KernelStats::clipped (dynamic CrossQuant never clips).
//
// Arithmetic (to equal the PyTorch appendix code in float32): row_divisor = t^α / qmax,
// column_divisor = c^(1−α), q = round(x / row_divisor / column_divisor) (two divisions in
// that order), x̂ = q · column_divisor · row_divisor. A zero divisor (zero row or column,
// whose elements are all 0) is replaced by 1, so zeros quantize to zeros, never NaN.
// Powers are correctly rounded (computed in double, α given to float first as torch does;
// α = 0.5 uses sqrt as torch does); torch's own float pow may be one ulp off (docs/QUANTIZERS.md).
#include <span>
#include <vector>

#include "quant/quantizer.h"
#include "quant/row_kernels.h"

namespace cq {

class CrossQuantQuantizer final : public Quantizer {
 public:
  // spec.alpha in [0, 1], spec.bits in 2..8 (cq::Error otherwise); spec.method becomes "crossquant".
  explicit CrossQuantQuantizer(const QuantizerSpec& spec);

  const QuantizerSpec& spec() const override { return spec_; }
  void fake_quantize(MatrixView x, KernelStats* stats) const override;
  QuantizedMatrix quantize(MatrixView x, KernelStats* stats) const override;

  // Dynamic CrossQuant takes c_j from the matrix given: the model gathers them for it.
  bool wants_column_absmax() const override { return !is_static(); }
  // Dynamic CrossQuant in one pass, with c_j = max_i |X_ij| already gathered by the kernel
  // that wrote X (kernels::produce_rows): the same result and statistics as fake_quantize() /
  // quantize() bit for bit, without their first pass over X. column_absmax must be exactly
  // those maxima (one per column); a value below a column's maximum is detected (a code would
  // be clipped) and reported as a cq::Error after X was modified. Dynamic quantizers only.
  void fake_quantize_with_column_absmax(MatrixView x, std::span<const float> column_absmax,
                                        KernelStats* stats) const override;
  QuantizedMatrix quantize_with_column_absmax(MatrixView x, std::span<const float> column_absmax,
                                              KernelStats* stats) const;

  // Switches to static CrossQuant with these c_j (one per column, finite, >= 0); an empty
  // vector switches back to dynamic. Throws cq::Error for bad values; a later matrix whose
  // column count differs from the vector's size is an error too.
  void set_static_column_absmax(std::vector<float> column_absmax);
  bool is_static() const { return !spec_.static_column_absmax.empty(); }

  // The divisors the formula uses (zero guarded as above): t^α / qmax and c_j^(1−α).
  float row_divisor(float row_absmax) const;
  std::vector<float> column_divisors(std::span<const float> column_absmax) const;

  // Calibration: column_absmax[j] = max(column_absmax[j], max_i |X_ij|); resizes an empty
  // vector to X's column count. Throws cq::Error on NaN/Inf or a column count mismatch.
  static void accumulate_column_absmax(MatrixView x, std::vector<float>& column_absmax);

 private:
  // Rows [i, i + count), count 1 or kRowGroup = 2, with their maxima row_absmax[0..count):
  // two rows go through the pair kernels, which load each column's divisor and reciprocal once.
  static constexpr int64_t kRowGroup = 2;
  quant_kernels::RowCounts fake_quantize_row_group(MatrixView x, int64_t i, int64_t count, const float* row_absmax,
                                                   const std::vector<float>& divisors,
                                                   const std::vector<float>& reciprocals) const;
  quant_kernels::RowCounts quantize_row_group(MatrixView x, int64_t i, int64_t count, const float* row_absmax,
                                              const std::vector<float>& divisors, const std::vector<float>& reciprocals,
                                              QuantizedMatrix& quantized) const;
  // c known (static, or gathered by the producer): each row pair is quantized right after its
  // scan, in one pass like per-token. Returns the counts (clipped ones included).
  quant_kernels::RowCounts fake_quantize_known_columns(MatrixView x, std::span<const float> column_absmax,
                                                       const std::vector<float>& divisors,
                                                       const std::vector<float>& reciprocals, KernelStats* stats) const;
  quant_kernels::RowCounts quantize_known_columns(MatrixView x, std::span<const float> column_absmax,
                                                  const std::vector<float>& divisors,
                                                  const std::vector<float>& reciprocals, QuantizedMatrix& quantized,
                                                  KernelStats* stats) const;
  void check_given_column_absmax(const MatrixView& x, std::span<const float> column_absmax) const;

  QuantizerSpec spec_;
  float qmax_;
  float alpha_;                                // α as float, as torch's pow receives it
  float one_minus_alpha_;                      // (1 − α) computed in double, then float
  std::vector<float> static_column_divisors_;     // c_j^(1−α) for static CrossQuant
  std::vector<float> static_column_reciprocals_;  // their reciprocals (SIMD fast path)
};

}  // namespace cq
