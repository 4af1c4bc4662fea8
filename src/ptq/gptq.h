#pragma once
// GPTQ on a whole model (the per-matrix solver is quant/gptq.h), block by block as the
// authors' opt.py / llama.py do without --true-sequential:
//  1. the calibration windows' hidden states enter block l as the already-quantized blocks
//     0 … l−1 computed them (activations unquantized);
//  2. block l runs once with its original weights; each linear's Hessian H = 2/n Σ x xᵀ
//     comes from its input there (q/k/v, and gate/up, share one);
//  3. every linear of the block is GPTQ-quantized (its weights become the dequantized codes);
//  4. block l runs again, quantized, and its output is block l+1's input.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "model/transformer.h"
#include "ptq/calibration.h"
#include "quant/gptq.h"
#include "quant/quantizer.h"

namespace cq {

struct GptqModelOptions {
  QuantizerSpec weight;  // the grid: per-channel or group (bits, group size, zero points)
  GptqOptions solver;
  bool show_progress = true;
};

struct GptqLayerRecord {
  std::string linear;
  double loss = 0;  // the solver's Σ (w − q)² / U_jj² / 2
  int64_t dead_columns = 0;
};

struct GptqModelResult {
  // Per linear layer (model.linear_layers() order): the grid its weights lie on (row scales,
  // or group scales and zero points; codes left empty: codes_on_grid recomputes them).
  std::vector<QuantizedMatrix> grids;
  std::vector<GptqLayerRecord> layers;
  int64_t calibration_windows = 0;
};

// Quantizes every decoder linear's weights in place (the model keeps the dequantized values).
GptqModelResult apply_gptq(Transformer& model, std::span<const int32_t> calibration_tokens,
                           const CalibrationOptions& calibration, const GptqModelOptions& options);

// The codes and grid of linear `index` after apply_gptq (its weights as they are now).
QuantizedMatrix gptq_codes(Transformer& model, const GptqModelResult& result, size_t index);

}  // namespace cq
