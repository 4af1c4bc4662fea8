// The quantized-checkpoint format (checkpoint_format.h): reading config.json's
// quantization_config and the stored codes, scales and zero points, validated.
#include "quant/checkpoint_format.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "quant/method_table.h"
#include "quant/quant_common.h"
#include "util/error.h"
#include "util/json_number.h"
#include "util/limits.h"
#include "util/text_file.h"

namespace cq {

namespace {

constexpr const char* kFormatVersion1 = "crossquant-fake-quantized-v1";

// What the method table says a checkpoint stores for weights of `method` (NotStorable if unknown).
WeightStorage weight_storage(const std::string& method) {
  const QuantMethod* row = find_quant_method(method);
  return row != nullptr ? row->stored_weights : WeightStorage::NotStorable;
}

std::string show_shape(const std::vector<int64_t>& shape) { return nlohmann::json(shape).dump(); }

QuantConfig config_from_checkpoint(const nlohmann::json& q, const std::string& where) {
  // Integers through json_integer: a huge float in a tampered file must not be cast (UB).
  auto integer = [&](const nlohmann::json& object, const char* key) {
    return json_integer(object.at(key), where, key, 0, int64_t{1} << 40);
  };
  QuantConfig c;
  c.method = q.at("method").get<std::string>();
  c.scheme = q.value("scheme", std::string());
  c.weight_bits = static_cast<int>(json_integer(q.at("wbits"), where, "wbits", 0, 64));
  c.activation_bits = static_cast<int>(json_integer(q.at("abits"), where, "abits", 0, 64));
  c.weight_method = q.at("weight_granularity").get<std::string>();
  const WeightStorage storage = weight_storage(c.weight_method);
  if (storage == WeightStorage::GroupScales) c.group_size = integer(q, "group_size");
  c.weight_asymmetric = !q.at("weight_symmetric").get<bool>();
  if (c.method == "omniquant") {
    if (!c.weight_asymmetric) fail("weight_symmetric: OmniQuant's weights are asymmetric (false)");
    const nlohmann::json& omniquant = q.at("omniquant");
    if (!omniquant.at("parameters").is_null()) c.omni_params = omniquant.at("parameters").get<std::string>();
  }
  if (storage == WeightStorage::RowScalesColumnFactors) c.weight_alpha = q.at("weight_alpha").get<double>();
  if (c.quantizes_activations()) {
    c.activation_method = q.at("activation_method").get<std::string>();
    const std::string scales = q.at("activation_scales").get<std::string>();
    if (scales != kStaticScales && scales != kDynamicScales)
      fail("activation_scales '{}' is neither '{}' nor '{}'", scales, kStaticScales, kDynamicScales);
    const QuantMethod* activations = find_quant_method(c.activation_method);
    const auto reads = [&](QuantOption option) { return activations != nullptr && activations->reads(option); };
    if (reads(kOptionAlpha)) c.alpha = q.at("alpha").get<double>();
    if (reads(kOptionKernelTarget)) c.kernel_target = q.at("kernel_target").get<double>();
    // Static statistics: CrossQuant's column maxima, or per-tensor's one scale.
    c.static_columns = scales == kStaticScales && reads(kOptionStaticColumnAbsmax);
    c.static_tensor_scale = scales == kStaticScales && c.activation_method == "per-tensor";
    c.quantize_attention_inputs = q.value("quantize_bmm_input", false);
  }
  if (c.method == "smoothquant") c.migration_strength = q.at("migration_strength").get<double>();
  if (c.method == "awq") {
    const nlohmann::json& awq = q.at("awq");
    c.awq_grid = static_cast<int>(json_integer(awq.at("grid"), where, "awq.grid", 0, 1 << 20));
    c.awq_max_shrink = awq.at("max_shrink").get<double>();
    c.awq_clip_tokens = integer(awq, "clip_tokens");
    c.awq_clip = awq.at("clip").get<bool>();
  }
  // A rotated checkpoint (ptq/rotation.h): its tensors are the rotated ones; the loader
  // restores the online transform and the norms.
  if (const auto rotation = q.find("rotation"); rotation != q.end() && !rotation->is_null()) {
    c.rotation = rotation->at("kind").get<std::string>();
    c.rotation_seed = static_cast<uint64_t>(json_integer(rotation->at("seed"), where, "rotation.seed", 0, kMaxRotationSeed));
  }
  if (const nlohmann::json& calibration = q.at("calibration"); !calibration.is_null()) {
    c.calib_source = calibration.at("file").get<std::string>();
    c.calib_samples = integer(calibration, "samples");
    c.calib_seqlen = integer(calibration, "seqlen");
  }
  return c;
}

// OmniQuant's scales lie within its clamp [1e-5, 1e4] (quant/omniquant_grid.cpp).
void check_omniquant_scales(const TensorInfo& tensor, const std::vector<float>& scales) {
  for (size_t k = 0; k < scales.size(); ++k)
    if (!(scales[k] >= 1e-5f && scales[k] <= 1e4f))
      fail("{}: tensor '{}': element {} is {}, outside OmniQuant's scale range [1e-05, 10000]", tensor.file.string(), tensor.name,
           k, scales[k]);
}

// Scales and column factors divide nothing on the way back, but a zero, negative, NaN or Inf
// one is not what any quantizer writes: the file was edited.
std::vector<float> positive_values(const TensorInfo& tensor) {
  std::vector<float> values = to_f32(tensor);
  for (size_t k = 0; k < values.size(); ++k)
    if (!(std::isfinite(values[k]) && values[k] > 0.f))
      fail("{}: tensor '{}': element {} is {}, expected a finite positive scale", tensor.file.string(), tensor.name, k, values[k]);
  return values;
}

void check_no_tensor(const SafetensorsCheckpoint& checkpoint, const std::string& name, const char* why) {
  if (checkpoint.contains(name))
    fail("{}: tensor '{}' is present, but {}", checkpoint.tensor(name).file.string(), name, why);
}

}  // namespace

bool stores_omniquant_grid(const QuantConfig& config) { return config.method == "omniquant" && config.quantizes_weights(); }

int checkpoint_format_version(const QuantConfig& config) { return stores_omniquant_grid(config) ? 3 : 2; }

StoredCodeLayout StoredCodeLayout::of(const QuantConfig& config) {
  StoredCodeLayout layout;
  layout.packed = config.weight_bits <= 4;
  if (config.weight_asymmetric || stores_omniquant_grid(config)) {
    layout.dtype = DType::U8;
    layout.max_code = (1 << config.weight_bits) - 1;
    if (stores_omniquant_grid(config)) layout.zero_dtype = DType::I32;
  } else {
    layout.dtype = layout.packed ? DType::U8 : DType::I8;
    layout.max_code = static_cast<int>(quant_detail::symmetric_qmax(config.weight_bits, config.weight_method));
    layout.min_code = -layout.max_code;
    layout.nibble_offset = layout.packed ? 8 : 0;
  }
  return layout;
}

std::string StoredCodeLayout::describe() const {
  if (!packed) return fmt::format("{} [out][in], one code per element", dtype_name(dtype));
  return fmt::format("U8 [out][ceil(in/2)], two codes per byte: low nibble = even input column, high nibble = odd; "
                     "nibble = code + {}; logical shape in <module>.weight_shape",
                     nibble_offset);
}

int64_t groups_per_row(const QuantConfig& config, int64_t in) {
  return weight_storage(config.weight_method) == WeightStorage::GroupScales ? (in + config.group_size - 1) / config.group_size : 1;
}

// A tensor of the checkpoint with the dtype and shape the format prescribes.
const TensorInfo& stored_tensor(const SafetensorsCheckpoint& checkpoint, const StoredQuantization& stored,
                                const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                                const std::string& role) {
  if (!checkpoint.contains(name)) fail("{}: missing tensor '{}' ({})", stored.weights_file.string(), name, role);
  const TensorInfo& tensor = checkpoint.tensor(name);
  if (tensor.dtype != dtype || tensor.shape != shape)
    fail("{}: tensor '{}' is {} {}, expected {} {} ({})", tensor.file.string(), name, dtype_name(tensor.dtype),
         show_shape(tensor.shape), dtype_name(dtype), show_shape(shape), role);
  return tensor;
}

std::vector<uint8_t> pack_nibbles(std::span<const int16_t> codes, int64_t rows, int64_t cols, int offset) {
  if (static_cast<int64_t>(codes.size()) != rows * cols)
    fail("pack_nibbles: {} codes for a {} x {} matrix", codes.size(), rows, cols);
  const int64_t row_bytes = (cols + 1) / 2;
  std::vector<uint8_t> packed(static_cast<size_t>(rows * row_bytes), 0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const int nibble = codes[static_cast<size_t>(i * cols + j)] + offset;
      if (nibble < 0 || nibble > 15) fail("pack_nibbles: code {} does not fit a nibble with offset {}", nibble - offset, offset);
      packed[static_cast<size_t>(i * row_bytes + j / 2)] |= static_cast<uint8_t>(nibble << (4 * (j % 2)));
    }
  return packed;
}

std::string file_checksum(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read {}", path.string());
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a: detects edits, not a cryptographic signature
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      hash ^= static_cast<unsigned char>(buffer[static_cast<size_t>(i)]);
      hash *= 0x100000001b3ull;
    }
  }
  return fmt::format("fnv1a64:{:016x}", hash);
}

bool is_quantization_metadata(const std::string& name) {
  for (const char* suffix : {".weight_scale", ".weight_zero", ".weight_shape", ".weight_column_factor", ".weight_column_divisor"})
    if (name.ends_with(suffix)) return true;
  return name.starts_with("quantization.");
}

QuantConfig parse_quantization_config(const nlohmann::json& q, const std::string& where) {
  if (!q.is_object()) fail("{} is not an object", where);
  const std::string format = q.contains("format") && q["format"].is_string() ? q["format"].get<std::string>() : "";
  if (format == kFormatVersion1)
    fail("{}: format '{}' (FP32 grid values, written by an older cq) is no longer read; run cq quantize again", where, format);
  if (format != kQuantizedCheckpointFormat)
    fail("{}: format '{}' is not '{}' (not written by cq quantize?)", where, format, kQuantizedCheckpointFormat);
  if (!q.contains("format_version") || !q["format_version"].is_number_integer() ||
      q["format_version"].get<int64_t>() < kOldestQuantizedCheckpointVersion ||
      q["format_version"].get<int64_t>() > kQuantizedCheckpointVersion)
    fail("{}: format_version {} is not supported (this cq reads versions {} to {})", where,
         q.contains("format_version") ? q["format_version"].dump() : "(missing)", kOldestQuantizedCheckpointVersion,
         kQuantizedCheckpointVersion);
  const int64_t version = q["format_version"].get<int64_t>();
  try {
    QuantConfig config = config_from_checkpoint(q, where);
    config.validate();
    if (!config.quantizes_weights()) fail("wbits {}: a quantized checkpoint stores quantized weights", config.weight_bits);
    if (stores_omniquant_grid(config) && version < checkpoint_format_version(config))
      fail("method omniquant needs format_version {} (I32 zero points), the file says {}", checkpoint_format_version(config),
           version);
    if (config.weight_asymmetric && !stores_omniquant_grid(config) &&
        weight_storage(config.weight_method) != WeightStorage::GroupScales)
      fail("asymmetric weights are group-wise only (got {})", config.weight_method);
    return config;
  } catch (const nlohmann::json::exception& e) {
    fail("{} is malformed: {}", where, e.what());
  } catch (const Error& e) {
    fail("{} is malformed: {}", where, e.what());
  }
}

std::shared_ptr<const StoredQuantization> read_stored_quantization(const std::filesystem::path& model_dir) {
  const auto config_path = model_dir / "config.json";
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(read_text_file(config_path, kMaxConfigFileBytes));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed JSON: {}", config_path.string(), e.what());
  }
  if (!json.is_object() || !json.contains("quantization_config")) return nullptr;
  auto stored = std::make_shared<StoredQuantization>();
  stored->config = parse_quantization_config(json["quantization_config"], config_path.string() + ": quantization_config");
  stored->weights_file = model_dir / "model.safetensors";
  const nlohmann::json& q = json["quantization_config"];
  stored->format_version = static_cast<int>(q["format_version"].get<int64_t>());
  if (const auto added = q.find("added_biases"); added != q.end()) {
    const std::string field = config_path.string() + ": quantization_config.added_biases";
    if (!added->is_array()) fail("{} is not a list of module names", field);
    for (const nlohmann::json& module : *added) {
      if (!module.is_string()) fail("{} holds {}, not a module name", field, module.dump());
      stored->added_biases.push_back(module.get<std::string>());
    }
  }
  const auto checksum = q.find("weights_checksum");
  if (checksum == q.end() || !checksum->is_string() || file_checksum(stored->weights_file) != checksum->get<std::string>())
    fail("{}: the weights do not match weights_checksum in {} (modified or corrupted after cq quantize)",
         stored->weights_file.string(), config_path.string());
  return stored;
}

QuantizedMatrix read_stored_weight(const SafetensorsCheckpoint& checkpoint, const StoredQuantization& stored,
                                   const std::string& module, int64_t out, int64_t in) {
  const QuantConfig& config = stored.config;
  const StoredCodeLayout layout = StoredCodeLayout::of(config);
  const std::string weight = module + ".weight";
  const std::string role = fmt::format("{}-bit codes of {}", config.weight_bits, weight);
  const TensorInfo& codes = stored_tensor(checkpoint, stored, weight, layout.dtype, layout.shape(out, in), role);
  QuantizedMatrix q;
  q.rows = out;
  q.cols = in;
  q.bits = config.weight_bits;
  q.codes.resize(static_cast<size_t>(out * in));
  if (layout.packed) {
    const std::vector<int32_t> shape = i32_values(stored_tensor(checkpoint, stored, module + ".weight_shape", DType::I32, {2},
                                                                "logical shape of " + weight));
    if (shape[0] != out || shape[1] != in)
      fail("{}: tensor '{}.weight_shape' is [{}, {}], config.json implies [{}, {}]", codes.file.string(), module, shape[0],
           shape[1], out, in);
    const std::span<const uint8_t> bytes = u8_values(codes);
    const int64_t row_bytes = (in + 1) / 2;
    for (int64_t i = 0; i < out; ++i) {
      for (int64_t j = 0; j < in; ++j) {
        const int nibble = (bytes[static_cast<size_t>(i * row_bytes + j / 2)] >> (4 * (j % 2))) & 0xf;
        q.codes[static_cast<size_t>(i * in + j)] = static_cast<int16_t>(nibble - layout.nibble_offset);
      }
      if (in % 2 == 1 && (bytes[static_cast<size_t>(i * row_bytes + row_bytes - 1)] >> 4) != 0)
        fail("{}: tensor '{}': row {} has a non-zero padding nibble", codes.file.string(), weight, i);
    }
  } else if (layout.dtype == DType::I8) {
    const std::span<const int8_t> values = i8_values(codes);
    std::copy(values.begin(), values.end(), q.codes.begin());
  } else {
    const std::span<const uint8_t> values = u8_values(codes);
    std::copy(values.begin(), values.end(), q.codes.begin());
  }
  for (size_t k = 0; k < q.codes.size(); ++k)
    if (q.codes[k] < layout.min_code || q.codes[k] > layout.max_code)
      fail("{}: tensor '{}': code {} at [{}, {}] is outside [{}, {}] for {}-bit {} weights", codes.file.string(), weight,
           q.codes[k], static_cast<int64_t>(k) / in, static_cast<int64_t>(k) % in, layout.min_code, layout.max_code,
           config.weight_bits, config.weight_asymmetric ? "asymmetric" : "symmetric");

  const int64_t groups = groups_per_row(config, in);
  const TensorInfo& scale_tensor = stored_tensor(checkpoint, stored, module + ".weight_scale", DType::F32, {out, groups}, "scales of " + weight);
  std::vector<float> scales = positive_values(scale_tensor);
  const WeightStorage storage = weight_storage(config.weight_method);
  if (stores_omniquant_grid(config)) {  // one zero point per run: a group per output channel, or config's groups
    check_omniquant_scales(scale_tensor, scales);
    q.group_size = storage == WeightStorage::GroupScales ? config.group_size : in;
    q.group_scales = std::move(scales);
  } else if (storage == WeightStorage::GroupScales) {
    q.group_size = config.group_size;
    q.group_scales = std::move(scales);
  } else {
    q.row_scales = std::move(scales);
  }
  const std::string zero = module + ".weight_zero";
  if (layout.zero_dtype == DType::I32) {
    const TensorInfo& zero_tensor =
        stored_tensor(checkpoint, stored, zero, DType::I32, {out, groups}, "OmniQuant zero points (unclamped) of " + weight);
    const std::vector<int32_t> zeros = i32_values(zero_tensor);
    for (size_t k = 0; k < zeros.size(); ++k)
      if (zeros[k] < -kOmniQuantZeroPointBound || zeros[k] > kOmniQuantZeroPointBound)
        fail("{}: tensor '{}': zero point {} at [{}, {}] is outside OmniQuant's bound [-{}, {}]", zero_tensor.file.string(), zero,
             zeros[k], static_cast<int64_t>(k) / groups, static_cast<int64_t>(k) % groups, kOmniQuantZeroPointBound,
             kOmniQuantZeroPointBound);
    q.group_zeros.resize(zeros.size());
    for (size_t k = 0; k < zeros.size(); ++k) q.group_zeros[k] = static_cast<int16_t>(zeros[k]);
  } else if (config.weight_asymmetric) {
    const TensorInfo& zero_tensor = stored_tensor(checkpoint, stored, zero, DType::U8, {out, groups}, "zero points of " + weight);
    const std::span<const uint8_t> zeros = u8_values(zero_tensor);
    for (size_t k = 0; k < zeros.size(); ++k)
      if (zeros[k] > layout.max_code)
        fail("{}: tensor '{}': zero point {} at {} is above {} for {}-bit weights", zero_tensor.file.string(), zero,
             zeros[k], k, layout.max_code, config.weight_bits);
    q.group_zeros.assign(zeros.begin(), zeros.end());
  } else {
    check_no_tensor(checkpoint, zero, "the weights are symmetric (weight_symmetric: true)");
  }
  const std::string column_factor = module + ".weight_column_factor";
  if (storage == WeightStorage::RowScalesColumnFactors)
    q.column_factors = positive_values(stored_tensor(checkpoint, stored, column_factor, DType::F32, {in},
                                                     "CrossQuant column factors of " + weight));
  else
    check_no_tensor(checkpoint, column_factor, "only CrossQuant weights have column factors");
  return q;
}

std::vector<float> read_stored_column_divisors(const SafetensorsCheckpoint& checkpoint, const StoredQuantization& stored,
                                               const std::string& module, int64_t in) {
  const std::string name = module + ".weight_column_divisor";
  if (!folds_static_columns(stored.config)) {
    check_no_tensor(checkpoint, name, "only static CrossQuant checkpoints fold column divisors into the weights");
    return {};
  }
  return positive_values(stored_tensor(checkpoint, stored, name, DType::F32, {in},
                                       "static CrossQuant column divisors c^(1-alpha) of " + module + ".weight"));
}

std::vector<float> read_stored_weight_values(const SafetensorsCheckpoint& checkpoint, const StoredQuantization& stored,
                                             const std::string& module, int64_t out, int64_t in) {
  std::vector<float> values = read_stored_weight(checkpoint, stored, module, out, in).dequantized();
  const std::vector<float> divisors = read_stored_column_divisors(checkpoint, stored, module, in);
  if (!divisors.empty()) scale_weight_columns(values, in, divisors, /*divide=*/true);
  return values;
}

}  // namespace cq
