#pragma once
// Calibration: streams windows of a calibration text through the (unquantized) model and
// collects, per linear input site, what static methods need. Memory is bounded by one
// vector per site, whatever the number of samples.
#include <cstdint>
#include <span>
#include <vector>

#include "model/transformer.h"

namespace cq {

struct CalibrationOptions {
  int64_t samples = 128;  // windows
  int64_t seqlen = 512;   // tokens per window
  bool show_progress = true;
};

struct CalibrationStats {
  int64_t windows = 0;
  int64_t seqlen = 0;
  // [layer * kInputSites + site][column]: max |x| over every calibration token.
  std::vector<std::vector<float>> column_absmax;
  // [layer * kInputSites + site][column]: mean |x| over every calibration token.
  std::vector<std::vector<float>> column_mean_abs;
  const std::vector<float>& absmax(int64_t layer, InputSite site) const {
    return column_absmax.at(static_cast<size_t>(layer * kInputSites + static_cast<int>(site)));
  }
};

// Non-overlapping windows from the start of `tokens` (at most options.samples of them);
// throws cq::Error when the text holds less than one window.
CalibrationStats calibrate(Transformer& model, std::span<const int32_t> tokens, const CalibrationOptions& options);

}  // namespace cq
