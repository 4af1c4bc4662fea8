#pragma once
// One small interface for "quantize this matrix". Every method (per-tensor, per-token /
// per-channel, group-wise, CrossQuant, remove-kernel) is one file implementing it plus
// one row in the method table (method_table.h). Definitions: ../shared/docs/SPEC.md.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "quant/kernel_stats.h"

namespace cq {

// Row-major matrix view. Activations: rows = tokens, cols = input channels.
// Weights (HF layout O x I): rows = output channels, cols = input channels.
struct MatrixView {
  float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;  // elements between row starts (>= cols)
  float* row(int64_t i) const { return data + i * stride; }
};

// Integer codes plus what is needed to dequantize them:
//   x_ij ≈ (codes_ij − zero_ij) · row_scale_i · column_factor_j · group_scale_{i, j / group_size}
// Absent factors are empty vectors (meaning 1, or 0 for zero points).
struct QuantizedMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  int bits = 8;
  std::vector<int16_t> codes;          // rows * cols, row-major
  std::vector<float> row_scales;       // per row (per-token Δ_i, or CrossQuant t_i^α / qmax)
  std::vector<float> column_factors;   // per column (CrossQuant c_j^(1−α))
  int64_t group_size = 0;              // > 0 for group-wise
  std::vector<float> group_scales;     // rows * ceil(cols / group_size)
  std::vector<int16_t> group_zeros;    // asymmetric group-wise zero points
  float tensor_scale = 0.f;            // per-tensor Δ (0 when unused)
  float dequantize(int64_t i, int64_t j) const;
  // Every element, row-major: dequantize(i, j) for all (i, j), in one pass.
  std::vector<float> dequantized() const;

 private:
  float dequantize_unchecked(int64_t i, int64_t j, int64_t groups_per_row) const;
};

struct QuantizerSpec {
  std::string method = "per-token";  // per-tensor | per-token | per-channel | group | crossquant | remove-kernel
  int bits = 8;                      // 2..8
  double alpha = 0.15;               // CrossQuant α
  int64_t group_size = 128;          // group-wise
  bool asymmetric = false;           // group-wise with zero point (AWQ's setting)
  double kernel_target = -1.0;       // remove-kernel: share to zero (< 0: the per-token kernel)
  // Static CrossQuant: c_j from calibration, one per column (empty: dynamic, c_j from the
  // matrix given). See crossquant.h; any other method rejects a non-empty vector.
  std::vector<float> static_column_absmax;
};

class Quantizer {
 public:
  virtual ~Quantizer() = default;
  virtual const QuantizerSpec& spec() const = 0;
  // x <- Q(x)·Δ in place. Adds to *stats when non-null. Throws cq::Error on NaN/Inf input.
  virtual void fake_quantize(MatrixView x, KernelStats* stats) const = 0;
  // Integer codes and scales; x is not modified. Adds to *stats when non-null.
  virtual QuantizedMatrix quantize(MatrixView x, KernelStats* stats) const = 0;

  // Capabilities: what a caller may do for this quantizer, asked instead of its type.
  // Whether fake_quantize() needs the column maxima c_j = max_i |X_ij| of the matrix given
  // (dynamic CrossQuant): then the kernel that writes X can gather them on the way
  // (kernels/column_absmax.h) and pass them to fake_quantize_with_column_absmax(), which
  // saves the quantizer its own pass over X.
  virtual bool wants_column_absmax() const { return false; }
  // fake_quantize() with those maxima given (one per column, exactly max_i |X_ij| of x): the
  // same result and statistics bit for bit. Quantizers that use them detect maxima below a
  // column's own (cq::Error, x modified) and refuse them where they do not apply; the
  // default, for quantizers without the capability, ignores them.
  virtual void fake_quantize_with_column_absmax(MatrixView x, std::span<const float> column_absmax,
                                                KernelStats* stats) const {
    (void)column_absmax;
    fake_quantize(x, stats);
  }
};

// Creates the quantizer a spec names; throws cq::Error for unknown methods or bad values.
std::unique_ptr<Quantizer> make_quantizer(const QuantizerSpec& spec);

}  // namespace cq
