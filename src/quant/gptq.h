#pragma once
// GPTQ (Frantar et al. 2022, arXiv 2210.17323) on one weight matrix and its layer Hessian:
// the math only (the whole-model driver that collects Hessians is ptq/gptq.h).
//
// Columns are rounded one at a time, in order (or in order of decreasing H_jj with
// act-order), onto the grid of the existing weight quantizers (per-channel: eq. 2's Δ per
// row; group-wise: one Δ, and zero point if asymmetric, per group, SPEC.md); each column's
// rounding error e_j = (w_j − q_j) / U_jj is spread over the columns still to come,
// w_k −= e_j U_jk, with U the upper Cholesky factor of (H + λI)⁻¹. Updates inside a block of
// 128 columns are immediate; the rest of the matrix gets one GEMM per block (lazy batch).
// Conventions as in the authors' code (IST-DASLab/gptq): per-channel grids from the
// original weights; dead columns (H_jj = 0) get H_jj = 1 and weight 0; λ = dampening ·
// mean diag(H); group grids from the weights as updated so far when the group starts (with
// act-order: from the original weights, "static groups", so groups stay contiguous).
// docs/BASELINES.md has the decisions.
#include <cstdint>
#include <span>
#include <vector>

#include "quant/quantizer.h"

namespace cq {

struct GptqOptions {
  double dampening = 0.01;   // λ = dampening · mean diag(H)
  int64_t block_size = 128;  // columns per lazy batch
  bool act_order = false;    // columns in order of decreasing H_jj
};

// H = 2/n Σ x xᵀ over the n input rows given (x a row of the layer's input). The scale does
// not change GPTQ's result (λ is relative to the diagonal); it is the paper's definition.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t columns);
  // rows × columns, row-major. Throws cq::Error on NaN/Inf.
  void add(const float* x, int64_t rows);
  int64_t columns() const { return columns_; }
  int64_t samples() const { return samples_; }
  // columns × columns, row-major (zeros before any row was added).
  std::vector<double> hessian() const;

 private:
  int64_t columns_ = 0, samples_ = 0;
  std::vector<double> sum_;  // Σ x xᵀ
};

struct GptqResult {
  // Codes and grid: row_scales (per-channel) or group_scales and group_zeros (group-wise).
  QuantizedMatrix quantized;
  double loss = 0;  // Σ (w − q)² / U_jj² / 2, the authors' reported error
  int64_t dead_columns = 0;
};

// weight: rows × cols, row-major (not modified); hessian: cols × cols (taken by value, it is
// modified). spec: per-channel or group (bits, group_size, asymmetric as the quantizers
// read them). Throws cq::Error on bad sizes, NaN/Inf, or a Hessian that stays singular.
GptqResult gptq_quantize(std::span<const float> weight, int64_t rows, int64_t cols, std::vector<double> hessian,
                         const QuantizerSpec& spec, const GptqOptions& options);

// The codes of `weight` (rows × cols), whose values lie on `grid`'s grid (the dequantized
// values of a gptq_quantize result, or OmniQuant's LWC-quantized weights): `grid` with its codes filled in. Throws cq::Error when a
// value is not exactly on the grid.
QuantizedMatrix codes_on_grid(const float* weight, QuantizedMatrix grid);

}  // namespace cq
