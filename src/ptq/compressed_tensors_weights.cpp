// Reading a compressed-tensors directory (ptq/compressed_tensors.h): the quantization_config
// checked against the schemes cq can run, each quantized linear served as code * scale
// (int-quantized) or unpacked (pack-quantized int4).
#include <cmath>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>

#include "model/weight_source.h"
#include "ptq/compressed_tensors.h"
#include "ptq/compressed_tensors_pack_quantized.h"
#include "util/error.h"
#include "util/limits.h"
#include "util/text_file.h"

namespace cq {

namespace {

nlohmann::json read_config_json(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "config.json";
  try {
    return nlohmann::json::parse(read_text_file(path, kMaxConfigFileBytes));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed JSON: {}", path.string(), e.what());
  }
}

const nlohmann::json* member(const nlohmann::json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

// QuantizationArgs `args` must be int8 symmetric with `strategy` and `dynamic`.
void check_int8_args(const nlohmann::json& args, const char* strategy, bool dynamic, const std::string& where) {
  if (!args.is_object()) fail("{} is not an object", where);
  const auto field_is = [&](const char* key, const nlohmann::json& expected) {
    const nlohmann::json* value = member(args, key);
    return value != nullptr && *value == expected;
  };
  if (!field_is("num_bits", 8) || !field_is("type", "int") || !field_is("symmetric", true))
    fail("{}: cq runs int8 symmetric quantization only (num_bits 8, type \"int\", symmetric true), got {}", where, args.dump());
  if (!field_is("strategy", strategy) || !field_is("dynamic", dynamic))
    fail("{}: cq runs strategy \"{}\" with dynamic {} here, got {}", where, strategy, dynamic, args.dump());
  for (const char* key : {"group_size", "block_structure", "actorder"})
    if (member(args, key) != nullptr) fail("{}: '{}' is set; cq runs plain per-channel / per-token int8 only", where, key);
}

// pack-quantized QuantizationArgs `args`: int4 static, group-wise or per channel, in
// column order (no g_idx); sets the weight fields of `config`.
void read_int4_args(const nlohmann::json& args, const std::string& where, QuantConfig& config) {
  if (!args.is_object()) fail("{} is not an object", where);
  const auto field_is = [&](const char* key, const nlohmann::json& expected) {
    const nlohmann::json* value = member(args, key);
    return value != nullptr && *value == expected;
  };
  if (!field_is("num_bits", 4) || !field_is("type", "int"))
    fail("{}: cq reads pack-quantized int4 weights only (num_bits 4, type \"int\"), got {}", where, args.dump());
  if (!field_is("dynamic", false)) fail("{}: pack-quantized weights must be static (dynamic false), got {}", where, args.dump());
  const nlohmann::json* symmetric = member(args, "symmetric");
  if (symmetric == nullptr || !symmetric->is_boolean()) fail("{}: 'symmetric' must be true or false, got {}", where, args.dump());
  if (member(args, "block_structure") != nullptr) fail("{}: 'block_structure' is set; cq reads group or channel strategies", where);
  // actorder "weight" reorders during calibration only; "group" (or its alias "dynamic")
  // stores a g_idx permutation, which cq does not apply.
  if (const nlohmann::json* actorder = member(args, "actorder"); actorder != nullptr && *actorder != "weight" && *actorder != false)
    fail("{}: actorder {} needs weight_g_idx, which cq does not read", where, actorder->dump());
  const nlohmann::json* group_size = member(args, "group_size");
  config.weight_bits = 4;
  if (field_is("strategy", "group")) {
    if (group_size == nullptr || !group_size->is_number_integer() || group_size->get<int64_t>() < 1)
      fail("{}: strategy \"group\" needs a positive integer group_size, got {}", where, args.dump());
    config.weight_method = "group";
    config.group_size = group_size->get<int64_t>();
    config.weight_asymmetric = !symmetric->get<bool>();
  } else if (field_is("strategy", "channel")) {
    if (group_size != nullptr && *group_size != -1) fail("{}: strategy \"channel\" with group_size {}", where, group_size->dump());
    if (!symmetric->get<bool>()) fail("{}: asymmetric per-channel int4 is not read by cq (asymmetric groups are)", where);
    config.weight_method = "per-channel";
  } else {
    fail("{}: cq reads pack-quantized strategies \"group\" and \"channel\", got {}", where, args.dump());
  }
}

StoredQuantization parse_config(const std::filesystem::path& model_dir) {
  const nlohmann::json json = read_config_json(model_dir);
  const std::string where = (model_dir / "config.json").string() + ": quantization_config";
  const nlohmann::json& q = json.at("quantization_config");
  const nlohmann::json* format = member(q, "format");
  if (format == nullptr || !format->is_string() ||
      (*format != "int-quantized" && *format != "naive-quantized" && *format != "pack-quantized"))
    fail("{}: format {} is not read by cq (int-quantized W8A8, naive-quantized int8 and pack-quantized int4 only)", where,
         format ? format->dump() : "missing");
  const bool packed = *format == "pack-quantized";
  if (const nlohmann::json* status = member(q, "quantization_status"); status == nullptr || *status != "compressed")
    fail("{}: quantization_status must be \"compressed\" (codes stored as integers)", where);
  if (member(q, "kv_cache_scheme") != nullptr) fail("{}: kv_cache_scheme is set; cq does not quantize the KV cache", where);
  for (const char* key : {"sparsity_config", "transform_config"})
    if (const nlohmann::json* value = member(q, key); value != nullptr && !(value->is_object() && value->empty()))
      fail("{}: '{}' is not empty; cq reads dense, untransformed models only", where, key);
  const nlohmann::json* groups = member(q, "config_groups");
  if (groups == nullptr || !groups->is_object() || groups->size() != 1)
    fail("{}: config_groups must hold exactly one scheme (cq quantizes every decoder linear alike)", where);
  // Copied out of the iterator: items()' proxy holds the key only while it lives.
  const std::string group_name = groups->begin().key();
  const nlohmann::json& group = groups->begin().value();
  const std::string group_where = where + ".config_groups." + group_name;
  if (!group.is_object()) fail("{} is not an object", group_where);
  if (const nlohmann::json* targets = member(group, "targets"); targets == nullptr || *targets != nlohmann::json::array({"Linear"}))
    fail("{}: targets must be [\"Linear\"]", group_where);
  if (member(group, "output_activations") != nullptr) fail("{}: output_activations are not run by cq", group_where);
  if (const nlohmann::json* group_format = member(group, "format"); group_format != nullptr && *group_format != *format)
    fail("{}: format {} differs from the model's {}", group_where, group_format->dump(), format->dump());
  const nlohmann::json* weights = member(group, "weights");
  if (weights == nullptr) fail("{}: no weights scheme", group_where);
  StoredQuantization stored;
  stored.weights_file = model_dir / "model.safetensors";
  stored.served_as_values = true;
  QuantConfig& config = stored.config;
  config.method = "rtn";
  config.engine = "fake";
  if (packed) {
    read_int4_args(*weights, group_where + ".weights", config);
    if (member(group, "input_activations") != nullptr)
      fail("{}: input_activations with pack-quantized weights are not read by cq (weight-only W4A16 only)", group_where);
    config.activation_method = "per-token";  // what activation flags given on top default to
    config.validate();
    return stored;
  }
  check_int8_args(*weights, "channel", false, group_where + ".weights");
  config.weight_bits = 8;
  config.weight_method = "per-channel";
  if (const nlohmann::json* inputs = member(group, "input_activations")) {
    check_int8_args(*inputs, "token", true, group_where + ".input_activations");
    config.activation_bits = 8;
  }
  config.activation_method = "per-token";
  config.engine = "fake";
  config.validate();
  return stored;
}

class CompressedTensorsWeights final : public WeightSource {
 public:
  explicit CompressedTensorsWeights(const std::filesystem::path& model_dir)
      : stored_(parse_config(model_dir)), checkpoint_(model_dir) {}
  const SafetensorsCheckpoint& checkpoint() const override { return checkpoint_; }
  std::optional<std::vector<float>> linear_weight(const std::string& module, int64_t out, int64_t in) const override {
    const QuantConfig& config = stored_.config;
    if (config.weight_bits == 4)
      return read_pack_quantized_linear(checkpoint_, module, out, in, config.weight_method == "group" ? config.group_size : 0,
                                        config.weight_method == "group" && config.weight_asymmetric);
    const TensorInfo& codes = checkpoint_.tensor(module + ".weight", {out, in});
    const std::span<const int8_t> code_values = i8_values(codes);
    const TensorInfo& scale_tensor = checkpoint_.tensor(module + ".weight_scale");
    if (!(scale_tensor.shape == std::vector<int64_t>{out, 1} || scale_tensor.shape == std::vector<int64_t>{out}))
      fail("{}: tensor '{}' has shape [{}], expected [{}, 1] (one scale per output channel)", scale_tensor.file.string(),
           scale_tensor.name, fmt::join(scale_tensor.shape, ", "), out);
    const std::vector<float> scales = to_f32(scale_tensor);
    std::vector<float> values(static_cast<size_t>(out * in));
    for (int64_t k = 0; k < out; ++k) {
      const float scale = scales[static_cast<size_t>(k)];
      if (!(std::isfinite(scale) && scale > 0.f))
        fail("{}: tensor '{}': element {} is {}, expected a finite scale > 0", scale_tensor.file.string(), scale_tensor.name, k, scale);
      for (int64_t j = 0; j < in; ++j) {
        const auto index = static_cast<size_t>(k * in + j);
        values[index] = static_cast<float>(code_values[index]) * scale;
      }
    }
    return values;
  }
  bool is_parameter(const std::string& name, const TensorInfo& info) const override {
    return !is_integer(info.dtype) && !name.ends_with(".weight_scale") && !name.ends_with(".weight_zero_point") &&
           !name.ends_with(".input_scale");
  }
  const StoredQuantization& stored() const { return stored_; }

 private:
  StoredQuantization stored_;
  SafetensorsCheckpoint checkpoint_;
};

}  // namespace

bool is_compressed_tensors_directory(const std::filesystem::path& model_dir) {
  if (!std::filesystem::is_regular_file(model_dir / "config.json")) return false;
  const nlohmann::json json = read_config_json(model_dir);
  if (!json.is_object()) return false;
  const auto q = json.find("quantization_config");
  if (q == json.end() || !q->is_object()) return false;
  const auto method = q->find("quant_method");
  return method != q->end() && *method == kCompressedTensorsMethod;
}

std::unique_ptr<WeightSource> open_compressed_tensors_weights(const std::filesystem::path& model_dir) {
  return std::make_unique<CompressedTensorsWeights>(model_dir);
}

const StoredQuantization* compressed_tensors_quantization(const WeightSource& weights) {
  const auto* source = dynamic_cast<const CompressedTensorsWeights*>(&weights);
  return source != nullptr ? &source->stored() : nullptr;
}

}  // namespace cq
