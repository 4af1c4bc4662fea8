#include "ptq/awq.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ptq/smoothquant.h"
#include "util/error.h"
#include "util/progress.h"

namespace cq {

namespace {

// What a scale group's loss is measured on (AWQ's module2inspect).
enum class Inspect { Attention, Mlp, Linear };

struct ScaleGroup {
  InputSite site;                // whose input the linears read
  int64_t previous_linear = -1;  // -1: the norm before `site`
  std::string previous;          // name for reports
  std::vector<int64_t> linears;
  Inspect inspect = Inspect::Linear;
  int64_t previous_first_row = 0;  // a fused previous linear: the rows that feed `linears` (v of qkv, up of gate_up)
};

// AWQ's auto_scale_block groups, from the block's layout: the norms that feed q/k/v and the
// MLP (their names from the family's TensorNames), and the MLP kind (a ReLU MLP's fc2 is
// scaled from fc1, a gated MLP's down from up; gate and up share their input's scale). Fused
// projections (Phi-3) make the same groups: qkv_proj alone reads the attention norm, o_proj
// is scaled from the v rows of qkv_proj, down_proj from the up rows of gate_up_proj (as
// AutoAWQ scales the last rows of a fused gate_up).
std::vector<ScaleGroup> scale_groups(const Transformer& model, int64_t layer) {
  const auto& linears = model.linear_layers();
  const ModelConfig& c = model.config();
  const Transformer::BlockLinears b = model.block_linears(layer);
  const TensorNames names = tensor_names(c);
  const std::string prefix = names.layer_prefix + std::to_string(layer) + ".";
  auto present = [](std::initializer_list<int64_t> indexes) {
    std::vector<int64_t> list;
    for (int64_t index : indexes)
      if (index >= 0) list.push_back(index);
    return list;
  };
  std::vector<ScaleGroup> groups;
  groups.push_back({InputSite::AttentionIn, -1, prefix + names.attn_norm, present({b.q, b.k, b.v}), Inspect::Attention});
  const int64_t q_width = c.num_heads * c.head_dim, kv_width = c.num_kv_heads * c.head_dim;
  const int64_t v_source = c.fused_qkv ? b.q : b.v;
  const LinearLayer& o = linears[static_cast<size_t>(b.o)];
  // llm-awq PR #67: o_proj is scaled from v_proj only when their weights have the same shape
  // (v_proj [kv_width, hidden], o_proj [hidden, q_width]: not with GQA).
  if (kv_width == o.out_features && c.hidden_size == o.in_features)
    groups.push_back({InputSite::AttentionOut, v_source, linears[static_cast<size_t>(v_source)].name, {b.o}, Inspect::Linear,
                      c.fused_qkv ? q_width + kv_width : 0});
  if (c.mlp == MlpKind::ReLU) {
    groups.push_back({InputSite::MlpIn, -1, prefix + names.mlp_norm, {b.gate_or_fc1}, Inspect::Linear});
    groups.push_back({InputSite::MlpDown, b.gate_or_fc1, linears[static_cast<size_t>(b.gate_or_fc1)].name, {b.down_or_fc2},
                      Inspect::Linear});
  } else {
    groups.push_back({InputSite::MlpIn, -1, prefix + names.mlp_norm, present({b.gate_or_fc1, b.up}), Inspect::Mlp});
    const int64_t up_source = c.fused_gate_up ? b.gate_or_fc1 : b.up;
    groups.push_back({InputSite::MlpDown, up_source, linears[static_cast<size_t>(up_source)].name, {b.down_or_fc2},
                      Inspect::Linear, c.fused_gate_up ? c.intermediate_size : 0});
  }
  return groups;
}

std::vector<float> inspect_output(Transformer& model, int64_t layer, const ScaleGroup& group, const float* x,
                                  const BlockCalibration& calibration) {
  const int64_t rows = calibration.rows();
  std::vector<float> out;
  if (group.inspect == Inspect::Linear) {
    const LinearLayer& linear = model.linear_layers()[static_cast<size_t>(group.linears.front())];
    out.resize(static_cast<size_t>(rows * linear.out_features));
    model.apply_linear(group.linears.front(), x, rows, out.data());
  } else {
    out.resize(static_cast<size_t>(rows * model.config().hidden_size));
    if (group.inspect == Inspect::Attention) model.run_attention(layer, x, calibration.windows(), calibration.seqlen(), out.data());
    else model.run_mlp(layer, x, rows, calibration.seqlen(), out.data());
  }
  return out;
}

double mean_squared_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    sum += d * d;
  }
  return sum / static_cast<double>(std::max<size_t>(a.size(), 1));
}

// _search_module_scale: the grid over r, each candidate against the original weights.
AwqScaleRecord search_scales(Transformer& model, int64_t layer, const ScaleGroup& group, const float* x, int64_t width,
                             const BlockCalibration& calibration, const Quantizer& quantizer, int grid) {
  const int64_t rows = calibration.rows();
  const std::vector<float> original_out = inspect_output(model, layer, group, x, calibration);
  std::vector<double> sums(static_cast<size_t>(width), 0.0);
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t j = 0; j < width; ++j) sums[static_cast<size_t>(j)] += std::abs(x[t * width + j]);
  std::vector<float> mean_abs(static_cast<size_t>(width));
  for (int64_t j = 0; j < width; ++j) mean_abs[static_cast<size_t>(j)] = static_cast<float>(sums[static_cast<size_t>(j)] / static_cast<double>(rows));

  auto& linears = model.linear_layers();
  std::vector<std::vector<float>> originals;
  for (int64_t index : group.linears) {
    auto w = linears[static_cast<size_t>(index)].mutable_weight();
    originals.emplace_back(w.begin(), w.end());
  }
  AwqScaleRecord best;
  best.layer = layer;
  best.previous = group.previous;
  for (int64_t index : group.linears) best.linears.push_back(linears[static_cast<size_t>(index)].name);
  best.loss = std::numeric_limits<double>::infinity();
  best.ratio = -1;
  std::vector<float> scales(static_cast<size_t>(width));
  for (int i = 0; i < grid; ++i) {
    const double ratio = static_cast<double>(i) / grid;
    float s_max = 0, s_min = std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < width; ++j) {
      const float s = std::max(std::pow(mean_abs[static_cast<size_t>(j)], static_cast<float>(ratio)), 1e-4f);
      scales[static_cast<size_t>(j)] = s;
      s_max = std::max(s_max, s);
      s_min = std::min(s_min, s);
    }
    const float norm = std::sqrt(s_max * s_min);
    for (float& s : scales) s /= norm;
    for (size_t n = 0; n < group.linears.size(); ++n) {
      LinearLayer& linear = linears[static_cast<size_t>(group.linears[n])];
      std::span<float> w = linear.mutable_weight();
      const int64_t in = linear.in_features;
      for (int64_t k = 0; k < linear.out_features; ++k)
        for (int64_t j = 0; j < in; ++j) w[static_cast<size_t>(k * in + j)] = originals[n][static_cast<size_t>(k * in + j)] * scales[static_cast<size_t>(j)];
      quantizer.fake_quantize(MatrixView{w.data(), linear.out_features, in, in}, nullptr);
      for (int64_t k = 0; k < linear.out_features; ++k)
        for (int64_t j = 0; j < in; ++j) w[static_cast<size_t>(k * in + j)] /= scales[static_cast<size_t>(j)];
    }
    const double loss = mean_squared_difference(inspect_output(model, layer, group, x, calibration), original_out);
    if (loss < best.loss) {
      best.loss = loss;
      best.ratio = ratio;
      best.scales = scales;
    }
  }
  for (size_t n = 0; n < group.linears.size(); ++n) {
    std::span<float> w = linears[static_cast<size_t>(group.linears[n])].mutable_weight();
    std::copy(originals[n].begin(), originals[n].end(), w.begin());
  }
  if (best.ratio < 0) fail("AWQ: no finite loss in the scale search of {} (layer {})", group.previous, layer);
  return best;
}

// auto_clip_layer: per output channel and group, the clamp minimizing the output error.
// Rows [first_row, end_row) of the weight only (the v rows of a fused qkv_proj: llm-awq never
// clips q and k).
AwqClipRecord search_clip(LinearLayer& linear, const std::vector<float>& input, int64_t rows, const QuantizerSpec& spec,
                          const AwqOptions& options, int64_t first_row, int64_t end_row) {
  const int64_t in = linear.in_features;
  const int64_t group_size = spec.method == "group" ? std::min(spec.group_size, in) : in;
  const int64_t groups = (in + group_size - 1) / group_size;
  // input_feat[:, 0::T // n_sample_token] (a step of at least 1 when T < n_sample_token).
  const int64_t step = std::max<int64_t>(1, rows / options.clip_tokens);
  std::vector<int64_t> tokens;
  for (int64_t t = 0; t < rows; t += step) tokens.push_back(t);
  QuantizerSpec group_spec = spec;
  if (spec.method != "group") group_spec.method = "group", group_spec.group_size = in;
  const auto quantizer = make_quantizer(group_spec);
  const int64_t clipped_rows = end_row - first_row;
  AwqClipRecord record{linear.name, groups, std::vector<float>(static_cast<size_t>(clipped_rows * groups))};
  std::span<float> w = linear.mutable_weight();
  const int shrink_steps = static_cast<int>(options.max_shrink * options.grid);
#pragma omp parallel for schedule(dynamic)
  for (int64_t k = first_row; k < end_row; ++k) {
    std::vector<float> clamped(static_cast<size_t>(group_size));
    std::vector<double> original_out(tokens.size());
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t start = g * group_size, length = std::min(group_size, in - start);
      const float* row = w.data() + k * in + start;
      float absmax = 0;
      for (int64_t j = 0; j < length; ++j) absmax = std::max(absmax, std::abs(row[j]));
      for (size_t n = 0; n < tokens.size(); ++n) {
        const float* x = input.data() + tokens[n] * in + start;
        double sum = 0;
        for (int64_t j = 0; j < length; ++j) sum += static_cast<double>(x[j]) * row[j];
        original_out[n] = sum;
      }
      float best_max = absmax;
      double best_error = 1e9;
      for (int i = 0; i < shrink_steps; ++i) {
        const float max_value = absmax * static_cast<float>(1 - static_cast<double>(i) / options.grid);
        for (int64_t j = 0; j < length; ++j) clamped[static_cast<size_t>(j)] = std::clamp(row[j], -max_value, max_value);
        quantizer->fake_quantize(MatrixView{clamped.data(), 1, length, length}, nullptr);
        double error = 0;
        for (size_t n = 0; n < tokens.size(); ++n) {
          const float* x = input.data() + tokens[n] * in + start;
          double sum = 0;
          for (int64_t j = 0; j < length; ++j) sum += static_cast<double>(x[j]) * clamped[static_cast<size_t>(j)];
          error += (sum - original_out[n]) * (sum - original_out[n]);
        }
        error /= static_cast<double>(tokens.size());
        if (error < best_error) best_error = error, best_max = max_value;
      }
      record.max_values[static_cast<size_t>((k - first_row) * groups + g)] = best_max;
    }
  }
  // apply_clip
  for (int64_t k = first_row; k < end_row; ++k)
    for (int64_t j = 0; j < in; ++j) {
      const float m = record.max_values[static_cast<size_t>((k - first_row) * groups + j / group_size)];
      float& value = w[static_cast<size_t>(k * in + j)];
      value = std::clamp(value, -m, m);
    }
  return record;
}

}  // namespace

AwqResult apply_awq(Transformer& model, std::span<const int32_t> calibration_tokens, const CalibrationOptions& calibration_options,
                    const AwqOptions& options) {
  if (!model.config().pre_norm) fail("AWQ needs a pre-norm model (the norm before q/k/v and fc1 absorbs 1/s)");
  if (options.grid < 1) fail("AWQ: the grid needs at least one point");
  const auto quantizer = make_quantizer(options.weight);
  BlockCalibration calibration(model, calibration_tokens, calibration_options);
  AwqResult result;
  ProgressBar progress("AWQ", model.config().num_layers, "blocks");
  for (int64_t layer = 0; layer < model.config().num_layers; ++layer) {
    auto& inputs = calibration.advance(layer);
    const auto groups = scale_groups(model, layer);
    std::vector<AwqScaleRecord> records;
    for (const ScaleGroup& group : groups) {
      const auto site = static_cast<size_t>(group.site);
      records.push_back(search_scales(model, layer, group, inputs[site].data(), calibration.site_width(group.site), calibration,
                                      *quantizer, options.grid));
    }
    // apply_scale: fold, and divide the kept inputs by s for the clip search.
    for (size_t n = 0; n < groups.size(); ++n) {
      const ScaleGroup& group = groups[n];
      const std::vector<float>& s = records[n].scales;
      if (group.previous_linear < 0) fold_scales_into_norm(model, layer, group.site, s);
      else fold_scales_into_linear(model, group.previous_linear, group.linears, s, group.previous_first_row);
      auto& x = inputs[static_cast<size_t>(group.site)];
      const auto width = static_cast<int64_t>(s.size());
      for (size_t i = 0; i < x.size(); ++i) x[i] /= s[i % static_cast<size_t>(width)];
    }
    for (auto& record : records) result.scales.push_back(std::move(record));
    if (options.clip) {
      const Transformer::BlockLinears b = model.block_linears(layer);
      const ModelConfig& c = model.config();
      for (int64_t index : {c.fused_qkv ? b.q : b.v, b.o, b.gate_or_fc1, b.up, b.down_or_fc2}) {
        if (index < 0) continue;
        LinearLayer& linear = model.linear_layers()[static_cast<size_t>(index)];
        // A fused qkv_proj: its v rows, the last num_kv_heads · head_dim.
        const int64_t first_row = index == b.q ? linear.out_features - c.num_kv_heads * c.head_dim : 0;
        result.clips.push_back(search_clip(linear, inputs[static_cast<size_t>(linear.site)], calibration.rows(), options.weight,
                                           options, first_row, linear.out_features));
      }
    }
    if (options.show_progress) progress.advance();
  }
  progress.finish();
  return result;
}

}  // namespace cq
