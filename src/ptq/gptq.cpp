#include "ptq/gptq.h"

#include <algorithm>

#include "util/error.h"
#include "util/progress.h"

namespace cq {

GptqModelResult apply_gptq(Transformer& model, std::span<const int32_t> calibration_tokens,
                           const CalibrationOptions& calibration_options, const GptqModelOptions& options) {
  auto& linears = model.linear_layers();
  GptqModelResult result;
  result.grids.resize(linears.size());
  BlockCalibration calibration(model, calibration_tokens, calibration_options);
  result.calibration_windows = calibration.windows();
  ProgressBar progress("GPTQ", static_cast<int64_t>(linears.size()), "linear layers");
  for (int64_t layer = 0; layer < model.config().num_layers; ++layer) {
    auto& inputs = calibration.advance(layer, /*keep_block_input=*/true);
    for (int site = 0; site < kInputSites; ++site) {
      std::vector<size_t> at_site;
      for (size_t index = 0; index < linears.size(); ++index)
        if (linears[index].layer == layer && static_cast<int>(linears[index].site) == site) at_site.push_back(index);
      if (at_site.empty()) continue;
      const int64_t width = calibration.site_width(static_cast<InputSite>(site));
      const std::vector<float>& x = inputs[static_cast<size_t>(site)];
      if (width != linears[at_site.front()].in_features || x.size() != static_cast<size_t>(calibration.rows() * width))
        fail("internal error: GPTQ saw {} inputs of width {} for {}", x.size(), width, linears[at_site.front()].name);
      HessianAccumulator accumulator(width);
      accumulator.add(x.data(), calibration.rows());
      const std::vector<double> hessian = accumulator.hessian();
      for (size_t index : at_site) {
        LinearLayer& linear = linears[index];
        std::span<float> w = linear.mutable_weight();
        GptqResult solved = gptq_quantize(w, linear.out_features, linear.in_features, hessian, options.weight, options.solver);
        const std::vector<float> values = solved.quantized.dequantized();
        std::copy(values.begin(), values.end(), w.begin());
        std::vector<int16_t>().swap(solved.quantized.codes);
        result.grids[index] = std::move(solved.quantized);
        result.layers.push_back({linear.name, solved.loss, solved.dead_columns});
        if (options.show_progress) progress.advance();
      }
    }
    calibration.rerun_last_block();
  }
  progress.finish();
  return result;
}

QuantizedMatrix gptq_codes(Transformer& model, const GptqModelResult& result, size_t index) {
  auto& linears = model.linear_layers();
  if (index >= linears.size() || index >= result.grids.size() || result.grids[index].rows == 0)
    fail("internal error: no GPTQ grid for linear layer {}", index);
  return codes_on_grid(linears[index].mutable_weight().data(), result.grids[index]);
}

}  // namespace cq
