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

// Layer-by-layer calibration (AWQ): the calibration windows' hidden states entering one block
// at a time, and the inputs of that block's linears. Memory: one block's activations.
class BlockCalibration {
 public:
  // Embeds the windows (non-overlapping, at most options.samples, from the start of tokens).
  BlockCalibration(Transformer& model, std::span<const int32_t> tokens, const CalibrationOptions& options);
  int64_t windows() const { return windows_; }
  int64_t seqlen() const { return seqlen_; }
  int64_t rows() const { return windows_ * seqlen_; }
  // Runs block `layer` (call with 0, 1, 2, … in order) on the current hidden states,
  // unquantized, keeping the input of each of its sites; the output becomes the next
  // block's input. Returns the inputs: [site] -> rows x width, row-major.
  // keep_block_input: remember the block's input for rerun_last_block().
  std::vector<std::vector<float>>& advance(int64_t layer, bool keep_block_input = false);
  // Runs the last advanced block again on its input (kept by advance) with the weights as
  // they are now; its output replaces the next block's input (GPTQ: the blocks after a
  // quantized block see its quantized output).
  void rerun_last_block();
  int64_t site_width(InputSite site) const { return widths_[static_cast<size_t>(site)]; }

 private:
  Transformer& model_;
  int64_t windows_ = 0, seqlen_ = 0, next_layer_ = 0;
  std::vector<float> hidden_;
  std::vector<float> block_input_;
  std::vector<std::vector<float>> site_inputs_;
  std::vector<int64_t> widths_;
};

// Non-overlapping windows from the start of `tokens` (at most options.samples of them);
// throws cq::Error when the text holds less than one window.
CalibrationStats calibrate(Transformer& model, std::span<const int32_t> tokens, const CalibrationOptions& options);

}  // namespace cq
