#include "ptq/omniquant_calibration.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "io/safetensors.h"
#include "io/torch_writer.h"
#include "kernels/rope.h"
#include "util/atomic_file.h"
#include "util/cancel.h"
#include "util/error.h"
#include "util/progress.h"

namespace cq {

namespace {

size_t at(int64_t i) { return static_cast<size_t>(i); }

constexpr float kInitialClippingFactor = 4.f;  // sigmoid(4) ≈ 0.982
constexpr float kMinimumStatistic = 1e-5f;     // act and weight maxima, and the scales, clamp here
constexpr float kScaleFloor = 1e-2f;           // OmniQuant's truncate_number on LET scales

// OmniQuant's module names (the keys its parameter files use), by OmniLinear.
const char* module_name(bool llama, int linear) {
  static const char* const opt[kOmniLinears] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                "self_attn.out_proj", "fc1", "", "fc2"};
  static const char* const llama_names[kOmniLinears] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                        "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                                        "mlp.down_proj"};
  return llama ? llama_names[linear] : opt[linear];
}

const char* const kLetNames[] = {"qkv_smooth_scale", "qkv_smooth_shift", "out_smooth_scale", "out_smooth_shift",
                                 "fc1_smooth_scale", "fc1_smooth_shift", "qkt_smooth_scale"};
constexpr int kLetTensors = 7;

bool is_llama(const ModelConfig& config) { return config.norm == NormKind::RMSNorm; }

// Column max |x| over every window, and (max + min) / 2 per window averaged 0.99 / 0.01 in
// window order (OmniQuant's generate_act_scale_shift), for one site.
struct SiteStatistics {
  std::vector<float> absmax, shift;
  bool started = false;
  void add(const float* x, int64_t rows, int64_t width) {
    std::vector<float> top(at(width), -INFINITY), bottom(at(width), INFINITY);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < width; ++c) {
        const float v = x[r * width + c];
        if (!std::isfinite(v)) fail("OmniQuant calibration: a non-finite full-precision activation");
        top[at(c)] = std::max(top[at(c)], v);
        bottom[at(c)] = std::min(bottom[at(c)], v);
      }
    if (!started) absmax.assign(at(width), 0.f), shift.assign(at(width), 0.f);
    for (int64_t c = 0; c < width; ++c) {
      absmax[at(c)] = std::max({absmax[at(c)], std::abs(top[at(c)]), std::abs(bottom[at(c)])});
      const float middle = (top[at(c)] + bottom[at(c)]) / 2;
      shift[at(c)] = started ? 0.99f * shift[at(c)] + 0.01f * middle : middle;
    }
    started = true;
  }
};

std::vector<float> column_absmax(const OmniDenseLinear& linear) {
  std::vector<float> maxima(at(linear.in), 0.f);
  for (int64_t r = 0; r < linear.out; ++r)
    for (int64_t c = 0; c < linear.in; ++c)
      maxima[at(c)] = std::max(maxima[at(c)], std::abs(linear.weight[at(r * linear.in + c)]));
  return maxima;
}

// A query-width vector reduced to key/value width: the max over the query heads that read
// each key/value head (our convention for grouped-query attention, docs/BASELINES.md).
std::vector<float> kv_reduce(const std::vector<float>& v, const OmniBlockWeights& block) {
  const int64_t group = block.heads / block.kv_heads, hd = block.head_dim;
  std::vector<float> out(at(block.kv_width()), 0.f);
  for (int64_t i = 0; i < block.q_width(); ++i) {
    const int64_t j = (i / hd) / group * hd + i % hd;
    out[at(j)] = std::max(out[at(j)], v[at(i)]);
  }
  return out;
}

std::vector<float> smoothing_scale(std::vector<float> act, std::vector<float> weight_max, double alpha) {
  for (size_t c = 0; c < act.size(); ++c) {
    const float a = std::max(act[c], kMinimumStatistic), w = std::max(weight_max[c], kMinimumStatistic);
    const auto s = static_cast<float>(std::pow(a, static_cast<float>(alpha)) / std::pow(w, static_cast<float>(1 - alpha)));
    act[c] = std::max(s, kMinimumStatistic);
  }
  return act;
}

OmniBlockParameters initial_parameters(const OmniBlockWeights& block, const OmniQuantSettings& settings,
                                       const std::array<SiteStatistics, 3>& sites, double alpha) {
  OmniBlockParameters p;
  if (settings.let) {
    p.qkv_scale = smoothing_scale(sites[0].absmax, column_absmax(block.linear(OmniLinear::Q)), alpha);
    p.out_scale = smoothing_scale(kv_reduce(sites[1].absmax, block),
                                  kv_reduce(column_absmax(block.linear(OmniLinear::O)), block), alpha);
    p.fc1_scale = smoothing_scale(sites[2].absmax, column_absmax(block.linear(block.llama ? OmniLinear::Up : OmniLinear::Fc1)), alpha);
    const bool shifts = settings.shift && !block.llama;
    p.qkv_shift = shifts ? sites[0].shift : std::vector<float>(p.qkv_scale.size(), 0.f);
    p.out_shift = shifts ? sites[1].shift : std::vector<float>(p.out_scale.size(), 0.f);
    p.fc1_shift = shifts ? sites[2].shift : std::vector<float>(p.fc1_scale.size(), 0.f);
    p.qkt_scale.assign(at(block.kv_width()), 1.f);
  }
  if (settings.lwc && settings.weight_bits < 16)
    for (int i = 0; i < kOmniLinears; ++i) {
      const OmniDenseLinear& linear = block.linears[at(i)];
      if (linear.out == 0) continue;
      const int64_t ranges = omni_weight_ranges(linear.out, linear.in, settings.group_size);
      p.upbound[at(i)].assign(at(ranges), kInitialClippingFactor);
      p.lowbound[at(i)].assign(at(ranges), kInitialClippingFactor);
    }
  return p;
}

void truncate_scales(OmniBlockParameters& p) {
  for (auto* v : {&p.qkv_scale, &p.out_scale, &p.fc1_scale, &p.qkt_scale})
    for (float& s : *v)
      if (std::abs(s) < kScaleFloor) s = s > 0 ? kScaleFloor : (s < 0 ? -kScaleFloor : 0.f);
}

// torch.optim.AdamW (betas 0.9 / 0.999, eps 1e-8, decoupled weight decay), per tensor.
class AdamW {
 public:
  AdamW(const OmniBlockParameters& p, std::vector<double> learning_rates, double weight_decay)
      : first_(omni_zero_like(p)), second_(omni_zero_like(p)), rates_(std::move(learning_rates)), decay_(weight_decay) {}
  void step(OmniBlockParameters& p, OmniBlockParameters& g) {
    ++steps_;
    const double correction1 = 1 - std::pow(0.9, steps_), correction2 = std::sqrt(1 - std::pow(0.999, steps_));
    auto params = p.all(), grads = g.all(), m = first_.all(), v = second_.all();
    for (size_t t = 0; t < params.size(); ++t) {
      const double lr = rates_[t];
      if (lr == 0 || params[t]->empty()) continue;
      const auto step_size = static_cast<float>(lr / correction1);
      const auto decay = static_cast<float>(1 - lr * decay_);
      for (size_t i = 0; i < params[t]->size(); ++i) {
        float& w = (*params[t])[i];
        const float grad = (*grads[t])[i];
        w *= decay;
        float& m1 = (*m[t])[i];
        float& m2 = (*v[t])[i];
        m1 = m1 * 0.9f + grad * static_cast<float>(1 - 0.9);
        m2 = m2 * 0.999f + grad * grad * static_cast<float>(1 - 0.999);
        const float denom = std::sqrt(m2) / static_cast<float>(correction2) + 1e-8f;
        w -= step_size * m1 / denom;
      }
    }
  }

 private:
  OmniBlockParameters first_, second_;
  std::vector<double> rates_;  // per tensor of OmniBlockParameters::all(); 0: not trained
  double decay_;
  int steps_ = 0;
};

}  // namespace

OmniQuantSettings omniquant_default_settings(const ModelConfig& config, int weight_bits, int activation_bits,
                                             int64_t group_size) {
  OmniQuantSettings s;
  s.weight_bits = weight_bits;
  s.activation_bits = activation_bits;
  s.group_size = group_size;
  s.lwc = true;
  s.let = !is_llama(config) || activation_bits < 16;
  s.shift = !is_llama(config) && activation_bits < 16;
  return s;
}

OmniQuantCalibrationOptions omniquant_calibration_options(const QuantConfig& config, const ModelConfig& model) {
  check_omniquant_calibration_supported(model);
  if (!config.quantizes_weights())
    fail("OmniQuant calibration learns weight clipping: quantize the weights (--wbits < 16 or a --scheme)");
  const int64_t positions = model.max_position_embeddings;
  if (positions > 0 && config.calib_seqlen > positions)
    fail("--calib-seqlen {} exceeds the model's {} positions", config.calib_seqlen, positions);
  OmniQuantCalibrationOptions options;
  options.samples = config.calib_samples;
  options.seqlen = config.calib_seqlen;
  options.settings = omniquant_default_settings(model, config.weight_bits, config.activation_bits,
                                                config.weight_method == "group" ? config.group_size : 0);
  options.epochs = config.omni_epochs;
  options.lwc_lr = config.omni_lwc_lr;
  options.let_lr = config.omni_let_lr;
  // The default cannot be told from a given value here; any other value on a setting without
  // LET would change nothing.
  if (!options.settings.let && options.let_lr != kOmniQuantDefaultLetLr)
    fail("--lr-let has no effect: OmniQuant trains no equivalent transformation for this {} model with "
         "full-precision activations (its weight-only scripts use --lwc alone)",
         model.model_type);
  return options;
}

void check_omniquant_calibration_supported(const ModelConfig& config) {
  const bool opt = config.norm == NormKind::LayerNorm && config.mlp == MlpKind::ReLU && config.pre_norm &&
                   config.query_scaling == QueryScaling::AfterProjection;
  const bool llama = config.norm == NormKind::RMSNorm && config.mlp == MlpKind::SwiGLU &&
                     config.positions == PositionKind::Rotary && config.query_scaling == QueryScaling::OnScores &&
                     !config.fused_qkv && !config.fused_gate_up && config.sliding_window == 0 &&
                     config.norm_weight_offset == 0;
  if (!opt && !llama)
    fail("OmniQuant calibration supports OPT (pre-LN, ReLU) and LLaMA-like (RMSNorm, SwiGLU, RoPE) blocks; "
         "this {} model is neither",
         config.model_type);
  if (config.num_kv_heads < 1 || config.num_heads % config.num_kv_heads != 0)
    fail("OmniQuant calibration: {} heads are not a multiple of {} key/value heads", config.num_heads, config.num_kv_heads);
}

OmniBlockWeights omni_block_weights(Transformer& model, int64_t layer) {
  const ModelConfig& c = model.config();
  check_omniquant_calibration_supported(c);
  OmniBlockWeights block;
  block.llama = is_llama(c);
  block.hidden = c.hidden_size;
  block.heads = c.num_heads;
  block.kv_heads = c.num_kv_heads;
  block.head_dim = c.head_dim;
  block.ffn = c.intermediate_size;
  block.norm_eps = static_cast<float>(c.norm_eps);
  if (block.llama) {
    kernels::RopeFrequencyScaling scaling;
    scaling.kind = c.rope_scaling.type == "linear"   ? kernels::RopeScalingKind::Linear
                   : c.rope_scaling.type == "llama3" ? kernels::RopeScalingKind::Llama3
                                                     : kernels::RopeScalingKind::None;
    scaling.factor = c.rope_scaling.factor;
    scaling.low_freq_factor = c.rope_scaling.low_freq_factor;
    scaling.high_freq_factor = c.rope_scaling.high_freq_factor;
    scaling.original_context = c.rope_scaling.original_max_position_embeddings;
    block.rope_inv_freq = kernels::rope_inverse_frequencies(c.head_dim, c.rope_theta, scaling);
  }
  block.norm1_weight = model.norm_weight(layer, InputSite::AttentionIn);
  block.norm1_bias = model.norm_bias(layer, InputSite::AttentionIn);
  block.norm2_weight = model.norm_weight(layer, InputSite::MlpIn);
  block.norm2_bias = model.norm_bias(layer, InputSite::MlpIn);
  const Transformer::BlockLinears b = model.block_linears(layer);
  const int64_t indexes[kOmniLinears] = {b.q, b.k, b.v, b.o, b.gate_or_fc1, b.up, b.down_or_fc2};
  for (int i = 0; i < kOmniLinears; ++i) {
    if (indexes[i] < 0) continue;
    const LinearLayer& linear = model.linear_layers()[at(indexes[i])];
    OmniDenseLinear& dense = block.linears[at(i)];
    dense.out = linear.out_features;
    dense.in = linear.in_features;
    dense.weight = linear.owned_weight.empty() ? to_f32(*linear.stored_weight) : linear.owned_weight;
    dense.bias = linear.bias;
  }
  return block;
}

OmniQuantLayerParameters omniquant_layer_parameters(const OmniBlockParameters& parameters, const ModelConfig& config) {
  const bool llama = is_llama(config);
  OmniQuantLayerParameters named;
  auto p = const_cast<OmniBlockParameters&>(parameters).all();
  for (int i = 0; i < kLetTensors; ++i)
    if (!p[at(i)]->empty()) named[kLetNames[i]] = {{static_cast<int64_t>(p[at(i)]->size())}, *p[at(i)]};
  for (int i = 0; i < kOmniLinears; ++i) {
    const auto& up = parameters.upbound[at(i)];
    const auto& low = parameters.lowbound[at(i)];
    if (up.empty()) continue;
    const std::string prefix = std::string(module_name(llama, i)) + ".weight_quantizer.";
    named[prefix + "upbound_factor"] = {{static_cast<int64_t>(up.size()), 1}, up};
    named[prefix + "lowbound_factor"] = {{static_cast<int64_t>(low.size()), 1}, low};
  }
  return named;
}

OmniBlockParameters omni_block_parameters(const OmniQuantLayerParameters& named, const ModelConfig& config) {
  const bool llama = is_llama(config);
  OmniBlockParameters parameters;
  auto p = parameters.all();
  auto take = [&](const std::string& name, std::vector<float>& into) {
    if (auto it = named.find(name); it != named.end()) into = it->second.values;
  };
  for (int i = 0; i < kLetTensors; ++i) take(kLetNames[i], *p[at(i)]);
  for (int i = 0; i < kOmniLinears; ++i) {
    if (module_name(llama, i)[0] == '\0') continue;
    const std::string prefix = std::string(module_name(llama, i)) + ".weight_quantizer.";
    take(prefix + "upbound_factor", parameters.upbound[at(i)]);
    take(prefix + "lowbound_factor", parameters.lowbound[at(i)]);
  }
  return parameters;
}

void save_omniquant_parameters(const OmniQuantParameters& parameters, const std::filesystem::path& path) {
  std::vector<TorchNamedTensors> layers;
  for (const OmniQuantLayerParameters& layer : parameters.layers) {
    TorchNamedTensors named;
    for (const auto& [name, tensor] : layer) named.push_back({name, {tensor.shape, tensor.values}});
    layers.push_back(std::move(named));
  }
  write_file_atomically(path, torch_save_layer_dicts(layers, path.stem().string().empty() ? "archive" : path.stem().string()));
}

OmniQuantParameters calibrate_omniquant(Transformer& model, std::span<const int32_t> tokens,
                                        const OmniQuantCalibrationOptions& options) {
  const ModelConfig& c = model.config();
  check_omniquant_calibration_supported(c);
  const OmniQuantSettings& settings = options.settings;
  if (settings.weight_bits < 2 || settings.activation_bits < 2)
    fail("OmniQuant calibration: {} weight / {} activation bits (at least 2)", settings.weight_bits, settings.activation_bits);
  if (options.epochs < 0) fail("--epochs must be zero or positive, got {}", options.epochs);
  if (options.seqlen < 1) fail("--calib-seqlen must be positive");
  if (options.samples < 1) fail("--calib-samples must be positive");
  const int64_t windows = std::min(static_cast<int64_t>(tokens.size()) / options.seqlen, options.samples);
  if (windows < 1)
    fail("the calibration text has {} tokens, fewer than one window of --calib-seqlen {}", tokens.size(), options.seqlen);
  const int64_t L = options.seqlen, H = c.hidden_size;
  const auto window_size = at(L * H);
  std::vector<std::vector<float>> fp_in(at(windows)), quant_in, fp_out(at(windows));
  for (int64_t w = 0; w < windows; ++w) {
    fp_in[at(w)].resize(window_size);
    model.embed_tokens(tokens.subspan(at(w * L), at(L)), 1, L, fp_in[at(w)].data());
  }
  quant_in = fp_in;

  OmniQuantParameters result;
  auto workspace = make_omni_workspace();
  ProgressBar progress("omniquant", c.num_layers * std::max<int64_t>(options.epochs, 1) * windows, "steps");
  for (int64_t layer = 0; layer < c.num_layers; ++layer) {
    const OmniBlockWeights block = omni_block_weights(model, layer);
    std::array<SiteStatistics, 3> sites;
    for (int64_t w = 0; w < windows; ++w) {
      fp_out[at(w)].resize(window_size);
      omni_block_run(block, {}, settings, false, fp_in[at(w)].data(), L, nullptr, fp_out[at(w)].data(), nullptr, *workspace);
      const OmniSiteInputs inputs = omni_site_inputs(*workspace);
      sites[0].add(inputs.attention_in, L, H);
      sites[1].add(inputs.attention_out, L, block.q_width());
      sites[2].add(inputs.mlp_in, L, H);
    }
    OmniBlockParameters parameters = initial_parameters(block, settings, sites, options.alpha);
    if (options.epochs > 0) {
      std::vector<double> rates;
      for (int i = 0; i < kLetTensors; ++i) {
        const bool shift = i == 1 || i == 3 || i == 5;
        rates.push_back(settings.let && (!shift || settings.shift) ? options.let_lr : 0.0);
      }
      for (int i = 0; i < 2 * kOmniLinears; ++i) rates.push_back(settings.lwc ? options.lwc_lr : 0.0);
      AdamW optimizer(parameters, rates, options.weight_decay);
      OmniBlockParameters gradients = omni_zero_like(parameters);
      for (int64_t epoch = 0; epoch < options.epochs; ++epoch) {
        double total = 0;
        for (int64_t w = 0; w < windows; ++w) {
          check_cancelled();  // also under --quiet, where no progress bar checks
          if (settings.let) truncate_scales(parameters);
          const double loss = omni_block_run(block, parameters, settings, true, quant_in[at(w)].data(), L,
                                             fp_out[at(w)].data(), nullptr, &gradients, *workspace);
          if (!std::isfinite(loss))
            fail("OmniQuant calibration: the loss of layer {} became {} (epoch {}, window {}); lower --lr-lwc / --lr-let",
                 layer, loss, epoch, w);
          optimizer.step(parameters, gradients);
          total += loss;
          if (options.show_progress) progress.advance();
        }
        const double mean_loss = total / static_cast<double>(windows);
        if (options.show_progress)
          progress.note(fmt::format("omniquant: layer {} epoch {} loss {:.6g}", layer, epoch, mean_loss));
        if (options.on_epoch) options.on_epoch(layer, epoch, mean_loss);
      }
      if (settings.let) truncate_scales(parameters);
      for (int64_t w = 0; w < windows; ++w)
        omni_block_run(block, parameters, settings, true, quant_in[at(w)].data(), L, nullptr, quant_in[at(w)].data(),
                       nullptr, *workspace);
    } else if (options.show_progress) {
      progress.advance(windows);
    }
    fp_in.swap(fp_out);
    result.layers.push_back(omniquant_layer_parameters(parameters, c));
  }
  progress.finish();
  return result;
}

}  // namespace cq
