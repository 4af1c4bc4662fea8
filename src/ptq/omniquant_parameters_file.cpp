// Reading OmniQuant's omni_parameters.pth and checking it against a model (ptq/omniquant.h).
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "io/torch_checkpoint.h"
#include "model/transformer.h"
#include "ptq/omniquant.h"
#include "util/error.h"

namespace cq {

namespace {

const char* const kLetNames[] = {"qkv_smooth_scale", "qkv_smooth_shift", "out_smooth_scale", "out_smooth_shift",
                                 "fc1_smooth_scale", "fc1_smooth_shift", "qkt_smooth_scale"};
constexpr const char* kUpbound = ".weight_quantizer.upbound_factor";
constexpr const char* kLowbound = ".weight_quantizer.lowbound_factor";

std::string shape_text(const std::vector<int64_t>& shape) { return nlohmann::json(shape).dump(); }

}  // namespace

std::string omniquant_linear_name(const std::string& module_name) {
  const size_t layers = module_name.find("layers.");
  if (layers == std::string::npos) fail("internal error: linear '{}' is not inside a decoder layer", module_name);
  const size_t dot = module_name.find('.', layers + 7);
  if (dot == std::string::npos) fail("internal error: linear '{}' is not inside a decoder layer", module_name);
  return module_name.substr(dot + 1);
}

OmniQuantParameters read_omniquant_parameters(const std::filesystem::path& file) {
  if (!std::filesystem::is_regular_file(file)) fail("--omni-params {}: no such file", file.string());
  TorchArchive archive(file);
  const std::string where = file.string();
  const PickleReader& pickle = archive.pickle();
  const PickleValue& root = pickle.value(pickle.root());
  if (root.kind != PickleKind::Dict)
    fail("{}: the pickle holds {}, not OmniQuant's {{layer index: {{name: tensor}}}}", where, PickleReader::kind_name(root.kind));
  std::map<int64_t, OmniQuantLayerParameters> by_index;
  std::vector<std::vector<std::byte>> copies;
  for (size_t i = 0; i < root.items.size(); i += 2) {
    const PickleValue& key = pickle.value(root.items[i]);
    if (key.kind != PickleKind::Int)
      fail("{}: top-level key is {}, not a layer index (OmniQuant saves {{layer index: {{name: tensor}}}})", where,
           PickleReader::kind_name(key.kind));
    const PickleValue& layer = pickle.value(root.items[i + 1]);
    if (layer.kind != PickleKind::Dict)
      fail("{}: layer {} holds {}, not a dict of tensors", where, key.integer, PickleReader::kind_name(layer.kind));
    if (by_index.count(key.integer)) fail("{}: layer {} appears twice", where, key.integer);
    OmniQuantLayerParameters& parameters = by_index[key.integer];
    for (size_t j = 0; j < layer.items.size(); j += 2) {
      const PickleValue& name = pickle.value(layer.items[j]);
      if (name.kind != PickleKind::String)
        fail("{}: layer {}: a key is {}, not a parameter name", where, key.integer, PickleReader::kind_name(name.kind));
      const std::string label = fmt::format("{}.{}", key.integer, name.text);
      if (pickle.value(layer.items[j + 1]).kind != PickleKind::Tensor)
        fail("{}: layer {}: '{}' is {}, not a tensor", where, key.integer, name.text,
             PickleReader::kind_name(pickle.value(layer.items[j + 1]).kind));
      const TensorInfo info = archive.tensor(layer.items[j + 1], label, copies);
      if (parameters.count(name.text)) fail("{}: layer {}: '{}' appears twice", where, key.integer, name.text);
      parameters[name.text] = OmniQuantTensor{info.shape, to_f32(info)};
    }
  }
  OmniQuantParameters parameters;
  for (auto& [index, layer] : by_index) {
    if (index != static_cast<int64_t>(parameters.layers.size()))
      fail("{}: layer {} is missing (layer indices must be 0, 1, 2, ...; found {} next)", where, parameters.layers.size(), index);
    parameters.layers.push_back(std::move(layer));
  }
  return parameters;
}

void check_omniquant_parameters(const Transformer& model, const OmniQuantParameters& parameters,
                                const OmniQuantWeightSetting& weights, const std::string& source) {
  const ModelConfig& c = model.config();
  if (c.fused_qkv || c.fused_gate_up)
    fail("{}: OmniQuant's LET names q/k/v_proj and up/gate_proj; this model fuses them (qkv_proj / gate_up_proj)", source);
  if (!c.pre_norm) fail("{}: OmniQuant's LET folds into the norms before the linears; this model normalizes after the residual", source);
  if (static_cast<int64_t>(parameters.layers.size()) != c.num_layers)
    fail("{}: {} layers of parameters, the model has {} decoder layers", source, parameters.layers.size(), c.num_layers);
  const int64_t kv_width = c.num_kv_heads * c.head_dim;
  const bool has_norm_bias = c.norm == NormKind::LayerNorm;
  std::optional<bool> let_everywhere, lwc_everywhere;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const OmniQuantLayerParameters& layer = parameters.layers[static_cast<size_t>(l)];
    std::set<std::string> expected;
    // LET: all seven names or none.
    int let_found = 0;
    for (const char* name : kLetNames) let_found += layer.count(name) ? 1 : 0;
    if (let_found != 0 && let_found != 7) {
      for (const char* name : kLetNames)
        if (!layer.count(name)) fail("{}: layer {}: '{}' is missing (the file has other LET parameters)", source, l, name);
    }
    const bool let = let_found == 7;
    if (let_everywhere && *let_everywhere != let)
      fail("{}: layer {} {} LET parameters and layer 0 {}", source, l, let ? "has" : "lacks", let ? "lacks them" : "has them");
    let_everywhere = let;
    auto check_vector = [&](const char* name, int64_t width, const char* what) {
      const OmniQuantTensor& tensor = layer.at(name);
      if (tensor.shape != std::vector<int64_t>{width})
        fail("{}: layer {}: '{}' has shape {}, the model needs [{}] ({})", source, l, name, shape_text(tensor.shape), width, what);
      for (float value : tensor.values)
        if (!std::isfinite(value)) fail("{}: layer {}: '{}' holds a non-finite value", source, l, name);
      if (std::string_view(name).ends_with("_scale"))
        for (float value : tensor.values)
          if (value == 0.f) fail("{}: layer {}: '{}' holds a zero scale (it divides the norm and the weights)", source, l, name);
    };
    if (let) {
      check_vector("qkv_smooth_scale", c.hidden_size, "hidden size");
      check_vector("qkv_smooth_shift", c.hidden_size, "hidden size");
      check_vector("fc1_smooth_scale", c.hidden_size, "hidden size");
      check_vector("fc1_smooth_shift", c.hidden_size, "hidden size");
      check_vector("out_smooth_scale", kv_width, "key/value heads x head_dim");
      check_vector("out_smooth_shift", kv_width, "key/value heads x head_dim");
      check_vector("qkt_smooth_scale", kv_width, "key/value heads x head_dim");
      if (!has_norm_bias)
        for (const char* name : {"qkv_smooth_shift", "fc1_smooth_shift"})
          for (float value : layer.at(name).values)
            if (value != 0.f)
              fail("{}: layer {}: '{}' is not zero; this model's RMSNorm has no bias to take it (OmniQuant keeps "
                   "LLaMA's shifts at 0)",
                   source, l, name);
      for (const char* name : kLetNames) expected.insert(name);
    }
    // LWC: both factors of every decoder linear, or none.
    int lwc_found = 0, lwc_total = 0;
    for (const LinearLayer& linear : model.linear_layers()) {
      if (linear.layer != l) continue;
      const std::string base = omniquant_linear_name(linear.name);
      for (const char* suffix : {kUpbound, kLowbound}) {
        ++lwc_total;
        lwc_found += layer.count(base + suffix) ? 1 : 0;
        expected.insert(base + suffix);
      }
    }
    const bool lwc = lwc_found > 0;
    if (lwc && lwc_found != lwc_total)
      for (const LinearLayer& linear : model.linear_layers()) {
        if (linear.layer != l) continue;
        for (const char* suffix : {kUpbound, kLowbound})
          if (!layer.count(omniquant_linear_name(linear.name) + suffix))
            fail("{}: layer {}: '{}{}' is missing (the file has other LWC factors)", source, l,
                 omniquant_linear_name(linear.name), suffix);
      }
    if (lwc_everywhere && *lwc_everywhere != lwc)
      fail("{}: layer {} {} LWC factors and layer 0 {}", source, l, lwc ? "has" : "lacks", lwc ? "lacks them" : "has them");
    lwc_everywhere = lwc;
    for (const auto& [name, tensor] : layer) {
      (void)tensor;
      if (!expected.count(name))
        fail("{}: layer {}: unknown parameter '{}' (expected OmniQuant's LET names {} and "
             "'<linear>{}' / '<linear>{}' for this model's linears)",
             source, l, name, "qkv/out/fc1_smooth_scale/shift, qkt_smooth_scale", kUpbound, kLowbound);
    }
    if (!lwc) continue;
    if (weights.bits >= 16)
      fail("{}: the file has learnable weight clipping factors but the weights are not quantized (W16): give --wbits or a "
           "--scheme",
           source);
    for (const LinearLayer& linear : model.linear_layers()) {
      if (linear.layer != l) continue;
      const int64_t groups = weights.group_size > 0 ? (linear.in_features + weights.group_size - 1) / weights.group_size : 1;
      const std::vector<int64_t> shape = {linear.out_features * groups, 1};
      for (const char* suffix : {kUpbound, kLowbound}) {
        const std::string name = omniquant_linear_name(linear.name) + suffix;
        const OmniQuantTensor& tensor = layer.at(name);
        if (tensor.shape != shape)
          fail("{}: layer {}: '{}' has shape {}, the model needs {} ({} output channels x {} group(s) of {})", source, l, name,
               shape_text(tensor.shape), shape_text(shape), linear.out_features, groups,
               weights.group_size > 0 ? fmt::format("{} inputs", weights.group_size) : std::string("all inputs"));
        for (float value : tensor.values)
          if (!std::isfinite(value)) fail("{}: layer {}: '{}' holds a non-finite value", source, l, name);
      }
    }
  }
}

}  // namespace cq
