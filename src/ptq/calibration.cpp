#include "ptq/calibration.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"
#include "util/parallel.h"
#include "util/progress.h"

namespace cq {

namespace {

// The per-rank maxima (max) and sums (sum) of every site. A rank that saw no window (more
// ranks than windows) has empty vectors; it takes the width from the others.
void combine_over_ranks(std::vector<std::vector<float>>& absmax, std::vector<std::vector<double>>& abs_sums,
                        std::vector<int64_t>& rows_seen) {
  if (parallel::ranks() == 1) return;
  std::vector<int64_t> widths(absmax.size());
  for (size_t i = 0; i < absmax.size(); ++i) widths[i] = static_cast<int64_t>(absmax[i].size());
  parallel::max(widths);
  parallel::sum(rows_seen);
  for (size_t i = 0; i < absmax.size(); ++i) {
    if (widths[i] == 0) continue;
    absmax[i].resize(static_cast<size_t>(widths[i]), 0.f);
    abs_sums[i].resize(static_cast<size_t>(widths[i]), 0.0);
    parallel::max(absmax[i]);
    parallel::sum(abs_sums[i]);  // only for column_mean_abs, which no method reads bit-exactly
  }
}

}  // namespace

CalibrationStats calibrate(Transformer& model, std::span<const int32_t> tokens, const CalibrationOptions& options) {
  const ModelConfig& config = model.config();
  if (options.seqlen < 1) fail("--calib-seqlen must be positive");
  const int64_t available = static_cast<int64_t>(tokens.size()) / options.seqlen;
  const int64_t windows = std::min(available, options.samples);
  if (windows < 1)
    fail("the calibration text has {} tokens, fewer than one window of --calib-seqlen {}", tokens.size(), options.seqlen);
  CalibrationStats stats;
  stats.windows = windows;
  stats.seqlen = options.seqlen;
  const auto sites = static_cast<size_t>(config.num_layers * kInputSites);
  stats.column_absmax.assign(sites, {});
  std::vector<std::vector<double>> abs_sums(sites);
  std::vector<int64_t> rows_seen(sites, 0);
  model.set_observer([&](int64_t layer, InputSite site, const float* x, int64_t rows, int64_t cols, const RowWindows&) {
    const auto index = static_cast<size_t>(layer * kInputSites + static_cast<int>(site));
    auto& absmax = stats.column_absmax[index];
    auto& sums = abs_sums[index];
    if (absmax.empty()) absmax.assign(static_cast<size_t>(cols), 0.f), sums.assign(static_cast<size_t>(cols), 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = x + r * cols;
      for (int64_t j = 0; j < cols; ++j) {
        const float magnitude = std::abs(row[j]);
        if (!std::isfinite(magnitude))
          fail("calibration: non-finite activation at layer {} ({}) token {} channel {}", layer, input_site_name(site), r, j);
        absmax[static_cast<size_t>(j)] = std::max(absmax[static_cast<size_t>(j)], magnitude);
        sums[static_cast<size_t>(j)] += magnitude;
      }
    }
    rows_seen[index] += rows;
  });
  std::vector<float> logits(static_cast<size_t>(options.seqlen * config.vocab_size));
  // In an MPI job each rank streams a contiguous share of the windows; the maxima are then
  // reduced (exact in any order), so the calibrated scales equal one process's.
  const parallel::Share mine = parallel::my_share(windows);
  ProgressBar progress("calibration", mine.size(), "windows");
  try {
    for (int64_t w = mine.begin; w < mine.end; ++w) {
      model.forward(tokens.subspan(static_cast<size_t>(w * options.seqlen), static_cast<size_t>(options.seqlen)), 1,
                    options.seqlen, logits);
      if (options.show_progress) progress.advance();
    }
  } catch (...) {
    model.set_observer(nullptr);
    throw;
  }
  progress.finish();
  model.set_observer(nullptr);
  combine_over_ranks(stats.column_absmax, abs_sums, rows_seen);
  stats.column_mean_abs.assign(sites, {});
  for (size_t i = 0; i < sites; ++i) {
    stats.column_mean_abs[i].resize(abs_sums[i].size());
    for (size_t j = 0; j < abs_sums[i].size(); ++j)
      stats.column_mean_abs[i][j] = static_cast<float>(abs_sums[i][j] / static_cast<double>(std::max<int64_t>(rows_seen[i], 1)));
  }
  return stats;
}

BlockCalibration::BlockCalibration(Transformer& model, std::span<const int32_t> tokens, const CalibrationOptions& options)
    : model_(model), seqlen_(options.seqlen) {
  if (options.seqlen < 1) fail("--calib-seqlen must be positive");
  windows_ = std::min(static_cast<int64_t>(tokens.size()) / options.seqlen, options.samples);
  if (windows_ < 1)
    fail("the calibration text has {} tokens, fewer than one window of --calib-seqlen {}", tokens.size(), options.seqlen);
  hidden_.resize(static_cast<size_t>(rows() * model.config().hidden_size));
  model.embed_tokens(tokens.first(static_cast<size_t>(rows())), windows_, seqlen_, hidden_.data());
  site_inputs_.assign(kInputSites, {});
  widths_.assign(kInputSites, 0);
}

std::vector<std::vector<float>>& BlockCalibration::advance(int64_t layer, bool keep_block_input) {
  if (layer != next_layer_) fail("internal error: block calibration expects layer {}, got {}", next_layer_, layer);
  ++next_layer_;
  if (keep_block_input) block_input_ = hidden_;
  else std::vector<float>().swap(block_input_);
  for (auto& input : site_inputs_) input.clear();
  model_.set_observer([&](int64_t observed_layer, InputSite site, const float* x, int64_t rows, int64_t cols, const RowWindows&) {
    if (observed_layer != layer) return;
    auto& input = site_inputs_[static_cast<size_t>(site)];
    input.insert(input.end(), x, x + rows * cols);
    widths_[static_cast<size_t>(site)] = cols;
  });
  try {
    model_.run_block(layer, hidden_.data(), windows_, seqlen_);
  } catch (...) {
    model_.set_observer(nullptr);
    throw;
  }
  model_.set_observer(nullptr);
  return site_inputs_;
}

void BlockCalibration::rerun_last_block() {
  if (next_layer_ == 0 || block_input_.size() != hidden_.size())
    fail("internal error: rerun_last_block needs advance(layer, keep_block_input = true) first");
  hidden_ = block_input_;
  model_.run_block(next_layer_ - 1, hidden_.data(), windows_, seqlen_);
}

}  // namespace cq
