// Applying OmniQuant's learned parameters (ptq/omniquant.h): LET folded, then LWC weights.
#include "ptq/omniquant.h"

#include <algorithm>
#include <cmath>

#include "model/transformer.h"
#include "ptq/smoothquant.h"
#include "quant/omniquant_grid.h"
#include "util/error.h"

namespace cq {

namespace {

// OmniQuant's truncate_number: scales closer to 0 than 1e-2 become ±1e-2 (0 stays 0 there;
// check_omniquant_parameters refuses it).
constexpr float kScaleTruncation = 1e-2f;

std::vector<float> truncated(const std::vector<float>& scales) {
  std::vector<float> out = scales;
  for (float& s : out)
    if (std::abs(s) < kScaleTruncation) s = s > 0.f ? kScaleTruncation : (s < 0.f ? -kScaleTruncation : 0.f);
  return out;
}

// A key/value-channel vector (kv_width entries) for the query heads (heads × head_dim):
// query head h takes key/value head h / (heads / kv_heads), as repeat_kv pairs them.
std::vector<float> for_query_heads(const std::vector<float>& per_kv_channel, const ModelConfig& c) {
  if (c.num_kv_heads == c.num_heads) return per_kv_channel;
  const int64_t group = c.num_heads / c.num_kv_heads;
  std::vector<float> out(static_cast<size_t>(c.num_heads * c.head_dim));
  for (int64_t h = 0; h < c.num_heads; ++h)
    for (int64_t d = 0; d < c.head_dim; ++d)
      out[static_cast<size_t>(h * c.head_dim + d)] = per_kv_channel[static_cast<size_t>((h / group) * c.head_dim + d)];
  return out;
}

bool all_zero(const std::vector<float>& values) {
  return std::all_of(values.begin(), values.end(), [](float v) { return v == 0.f; });
}

// bias ← bias + W·shift (W as it is now, before any column scaling); a linear without a
// bias gets one (W·shift) unless the shift is zero, which would only add zeros.
void add_weight_times_shift(LinearLayer& linear, const std::vector<float>& shift) {
  if (linear.bias.empty() && all_zero(shift)) return;
  if (linear.bias.empty()) linear.bias.assign(static_cast<size_t>(linear.out_features), 0.f);
  const std::span<float> w = linear.mutable_weight();
  for (int64_t k = 0; k < linear.out_features; ++k) {
    double sum = 0;
    for (int64_t j = 0; j < linear.in_features; ++j)
      sum += static_cast<double>(w[static_cast<size_t>(k * linear.in_features + j)]) * shift[static_cast<size_t>(j)];
    linear.bias[static_cast<size_t>(k)] += static_cast<float>(sum);
  }
}

void scale_columns(LinearLayer& linear, const std::vector<float>& scales) {
  const std::span<float> w = linear.mutable_weight();
  for (int64_t k = 0; k < linear.out_features; ++k)
    for (int64_t j = 0; j < linear.in_features; ++j) w[static_cast<size_t>(k * linear.in_features + j)] *= scales[static_cast<size_t>(j)];
}

// rows (and bias) of `linear` divided (divide) or multiplied by scales[row].
void scale_rows(LinearLayer& linear, const std::vector<float>& scales, bool divide) {
  const std::span<float> w = linear.mutable_weight();
  for (int64_t k = 0; k < linear.out_features; ++k) {
    const float s = scales[static_cast<size_t>(k)];
    for (int64_t j = 0; j < linear.in_features; ++j) {
      float& value = w[static_cast<size_t>(k * linear.in_features + j)];
      value = divide ? value / s : value * s;
    }
    if (!linear.bias.empty()) linear.bias[static_cast<size_t>(k)] = divide ? linear.bias[static_cast<size_t>(k)] / s : linear.bias[static_cast<size_t>(k)] * s;
  }
}

// smooth_ln_fcs: the norm before `site` and the linears reading it.
void fold_into_norm(Transformer& model, int64_t layer, InputSite site, const std::vector<float>& scales,
                    const std::vector<float>& shifts) {
  std::vector<float>& norm_bias = model.norm_bias(layer, site);
  if (!norm_bias.empty())
    for (size_t j = 0; j < shifts.size(); ++j) norm_bias[j] -= shifts[j];
  // (RMSNorm: no bias, and check_omniquant_parameters made sure the shifts are 0.)
  for (int64_t index : site_readers(model, layer, site))
    add_weight_times_shift(model.linear_layers()[static_cast<size_t>(index)], shifts);
  fold_scales_into_norm(model, layer, site, scales);  // norm weight and bias / s, columns · s
}

void fold_layer(Transformer& model, int64_t l, const OmniQuantLayerParameters& p) {
  const ModelConfig& c = model.config();
  const Transformer::BlockLinears block = model.block_linears(l);
  auto& linears = model.linear_layers();
  const auto& values = [&](const char* name) -> const std::vector<float>& { return p.at(name).values; };
  fold_into_norm(model, l, InputSite::AttentionIn, truncated(values("qkv_smooth_scale")), values("qkv_smooth_shift"));
  fold_into_norm(model, l, InputSite::MlpIn, truncated(values("fc1_smooth_scale")), values("fc1_smooth_shift"));
  // smooth_fc_fc: v_proj → o_proj, per key/value channel, o_proj's columns per query head.
  const std::vector<float> out_scale = truncated(values("out_smooth_scale"));
  const std::vector<float>& out_shift = values("out_smooth_shift");
  LinearLayer& v = linears.at(static_cast<size_t>(block.v));
  LinearLayer& o = linears.at(static_cast<size_t>(block.o));
  if (v.bias.empty() && !all_zero(out_shift)) v.bias.assign(static_cast<size_t>(v.out_features), 0.f);
  if (!v.bias.empty())
    for (size_t k = 0; k < out_shift.size(); ++k) v.bias[k] -= out_shift[k];
  scale_rows(v, out_scale, /*divide=*/true);
  add_weight_times_shift(o, for_query_heads(out_shift, c));
  scale_columns(o, for_query_heads(out_scale, c));
  // smooth_q_k: q rows / s (per query head's key/value channel), k rows · s.
  const std::vector<float> qkt_scale = truncated(values("qkt_smooth_scale"));
  scale_rows(linears.at(static_cast<size_t>(block.q)), for_query_heads(qkt_scale, c), /*divide=*/true);
  scale_rows(linears.at(static_cast<size_t>(block.k)), qkt_scale, /*divide=*/false);
}

float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

// OmniQuant's weight quantizer: per output channel (group_size 0) or per group of inputs
// (the last group the shorter remainder), range [min, max] of the run, times the LWC
// factors when given, on the asymmetric grid. Returns the grid of every run (group_size =
// width), which a checkpoint or an export stores.
QuantizedMatrix quantize_weight(LinearLayer& linear, int bits, int64_t group_size, const OmniQuantTensor* upbound,
                                const OmniQuantTensor* lowbound) {
  const std::span<float> w = linear.mutable_weight();
  const int64_t in = linear.in_features;
  const int64_t width = group_size > 0 ? group_size : in;
  const int64_t groups = (in + width - 1) / width;
  for (const float value : w)
    if (!std::isfinite(value)) fail("OmniQuant: weight of {} holds a non-finite value after LET", linear.name);
  QuantizedMatrix grid;
  grid.rows = linear.out_features;
  grid.cols = in;
  grid.bits = bits;
  grid.group_size = width;
  grid.group_scales.resize(static_cast<size_t>(linear.out_features * groups));
  grid.group_zeros.resize(grid.group_scales.size());
#pragma omp parallel for schedule(static) if (linear.out_features * in > (int64_t{1} << 15))
  for (int64_t k = 0; k < linear.out_features; ++k) {
    OmniQuantRunCounts counts;
    for (int64_t g = 0; g < groups; ++g) {
      float* run = w.data() + k * in + g * width;
      const int64_t length = std::min(width, in - g * width);
      float low = run[0], high = run[0];
      for (int64_t j = 1; j < length; ++j) low = std::min(low, run[j]), high = std::max(high, run[j]);
      const auto slot = static_cast<size_t>(k * groups + g);
      if (upbound != nullptr) {
        high = sigmoid(upbound->values[slot]) * high;
        low = sigmoid(lowbound->values[slot]) * low;
      }
      const OmniQuantGrid run_grid = omniquant_grid(low, high, bits);
      for (int64_t j = 0; j < length; ++j) run[j] = omniquant_value(omniquant_code(run[j], run_grid, counts), run_grid);
      grid.group_scales[slot] = run_grid.scale;  // |zero point| <= 1e4 (its clamp): an int16
      grid.group_zeros[slot] = static_cast<int16_t>(run_grid.zero_point);
    }
  }
  return grid;
}

}  // namespace

OmniQuantRecord apply_omniquant(Transformer& model, const OmniQuantParameters& parameters,
                                const OmniQuantWeightSetting& weights, const std::string& source) {
  check_omniquant_parameters(model, parameters, weights, source);
  OmniQuantRecord record;
  if (weights.bits < 16) record.grids.resize(model.linear_layers().size());
  for (int64_t l = 0; l < model.config().num_layers; ++l) {
    const OmniQuantLayerParameters& layer = parameters.layers[static_cast<size_t>(l)];
    if (layer.count("qkv_smooth_scale")) {
      fold_layer(model, l, layer);
      record.let = true;
    }
    if (weights.bits >= 16) continue;
    for (size_t index = 0; index < model.linear_layers().size(); ++index) {
      LinearLayer& linear = model.linear_layers()[index];
      if (linear.layer != l) continue;
      const std::string base = omniquant_linear_name(linear.name);
      const auto up = layer.find(base + ".weight_quantizer.upbound_factor");
      const auto low = layer.find(base + ".weight_quantizer.lowbound_factor");
      const bool lwc = up != layer.end() && low != layer.end();
      record.lwc = record.lwc || lwc;
      record.grids[index] =
          quantize_weight(linear, weights.bits, weights.group_size, lwc ? &up->second : nullptr, lwc ? &low->second : nullptr);
    }
  }
  return record;
}

}  // namespace cq
