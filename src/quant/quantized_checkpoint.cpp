#include "quant/quantized_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "model/transformer.h"
#include "quant/quant_common.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/json_number.h"
#include "util/limits.h"
#include "util/text_file.h"

namespace cq {

namespace {

// Version 1 stored the dequantized grid values in F32; it is refused with this hint.
constexpr const char* kFormatVersion1 = "crossquant-fake-quantized-v1";
constexpr const char* kStaticScales = "static (calibrated)";
constexpr const char* kDynamicScales = "dynamic (per window)";

// How one quantized weight's codes are stored, from its bits and symmetry.
struct CodeLayout {
  bool packed = false;  // bits <= 4: two codes a byte (pack_nibbles)
  DType dtype = DType::I8;
  int min_code = 0, max_code = 0;
  int nibble_offset = 0;  // packed: nibble = code + offset

  static CodeLayout of(const QuantConfig& config) {
    CodeLayout layout;
    layout.packed = config.weight_bits <= 4;
    if (config.weight_asymmetric) {
      layout.dtype = DType::U8;
      layout.max_code = (1 << config.weight_bits) - 1;
    } else {
      layout.dtype = layout.packed ? DType::U8 : DType::I8;
      layout.max_code = static_cast<int>(quant_detail::symmetric_qmax(config.weight_bits, config.weight_method));
      layout.min_code = -layout.max_code;
      layout.nibble_offset = layout.packed ? 8 : 0;
    }
    return layout;
  }
  std::vector<int64_t> shape(int64_t out, int64_t in) const { return {out, packed ? (in + 1) / 2 : in}; }
  std::string describe() const {
    if (!packed) return fmt::format("{} [out][in], one code per element", dtype_name(dtype));
    return fmt::format("U8 [out][ceil(in/2)], two codes per byte: low nibble = even input column, high nibble = odd; "
                       "nibble = code + {}; logical shape in <module>.weight_shape",
                       nibble_offset);
  }
};

int64_t groups_per_row(const QuantConfig& config, int64_t in) {
  return config.weight_method == "group" ? (in + config.group_size - 1) / config.group_size : 1;
}

std::string site_tensor_name(int64_t layer, int site) {
  return fmt::format("quantization.layers.{}.{}.input_absmax", layer, input_site_name(static_cast<InputSite>(site)));
}

std::string show_shape(const std::vector<int64_t>& shape) { return nlohmann::json(shape).dump(); }

// What model.safetensors will hold: converted or quantized tensors owned here, F32 tensors
// of the source checkpoint as views into its mapping (no copy).
class TensorSet {
 public:
  template <typename T>
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::span<const T> values) {
    Entry& entry = entries_[name];
    entry.dtype = dtype;
    entry.shape = std::move(shape);
    entry.owned.resize(values.size_bytes());
    if (!values.empty()) std::memcpy(entry.owned.data(), values.data(), values.size_bytes());
    entry.bytes = entry.owned;
  }
  template <typename T>
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const std::vector<T>& values) {
    add(name, dtype, std::move(shape), std::span<const T>(values));
  }
  void add_stored(const TensorInfo& tensor) {
    if (tensor.dtype != DType::F32) {
      add(tensor.name, DType::F32, tensor.shape, to_f32(tensor));
      return;
    }
    Entry& entry = entries_[tensor.name];
    entry.dtype = DType::F32;
    entry.shape = tensor.shape;
    entry.owned.clear();
    entry.bytes = {tensor.data, tensor.bytes};
  }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  std::vector<TensorToWrite> to_write() const {
    std::vector<TensorToWrite> tensors;
    for (const auto& [name, entry] : entries_) tensors.push_back({name, entry.dtype, entry.shape, entry.bytes});
    return tensors;
  }

 private:
  struct Entry {
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    std::vector<std::byte> owned;
    std::span<const std::byte> bytes;
  };
  std::map<std::string, Entry> entries_;
};

void add_quantized_weight(TensorSet& tensors, const std::string& module, const QuantizedMatrix& q, const CodeLayout& layout) {
  if (q.tensor_scale != 0.f) fail("cq quantize: {}: per-tensor weight scales cannot be stored", module);
  const std::string weight = module + ".weight";
  if (layout.packed) {
    tensors.add(weight, DType::U8, layout.shape(q.rows, q.cols), pack_nibbles(q.codes, q.rows, q.cols, layout.nibble_offset));
    if (q.rows > std::numeric_limits<int32_t>::max() || q.cols > std::numeric_limits<int32_t>::max())
      fail("cq quantize: {} is too large for an I32 shape", weight);
    tensors.add(module + ".weight_shape", DType::I32, {2},
                std::vector<int32_t>{static_cast<int32_t>(q.rows), static_cast<int32_t>(q.cols)});
  } else if (layout.dtype == DType::I8) {
    tensors.add(weight, DType::I8, layout.shape(q.rows, q.cols), std::vector<int8_t>(q.codes.begin(), q.codes.end()));
  } else {
    tensors.add(weight, DType::U8, layout.shape(q.rows, q.cols), std::vector<uint8_t>(q.codes.begin(), q.codes.end()));
  }
  if (q.group_size > 0) {
    const int64_t groups = static_cast<int64_t>(q.group_scales.size()) / q.rows;
    tensors.add(module + ".weight_scale", DType::F32, {q.rows, groups}, q.group_scales);
    if (!q.group_zeros.empty())
      tensors.add(module + ".weight_zero", DType::U8, {q.rows, groups},
                  std::vector<uint8_t>(q.group_zeros.begin(), q.group_zeros.end()));
  } else {
    tensors.add(module + ".weight_scale", DType::F32, {q.rows, 1}, q.row_scales);
  }
  if (!q.column_factors.empty()) tensors.add(module + ".weight_column_factor", DType::F32, {q.cols}, q.column_factors);
}

nlohmann::json null_unless(bool condition, const nlohmann::json& value) { return condition ? value : nlohmann::json(nullptr); }

nlohmann::json checkpoint_config(const QuantConfig& c, const QuantizationRecord& record, const CodeLayout& layout) {
  nlohmann::json q;
  q["format"] = kQuantizedCheckpointFormat;
  q["format_version"] = kQuantizedCheckpointVersion;
  q["method"] = c.method;
  if (!c.scheme.empty()) q["scheme"] = c.scheme;
  q["wbits"] = c.weight_bits;
  q["abits"] = c.activation_bits;
  q["weight_granularity"] = c.weight_method;
  q["group_size"] = null_unless(c.weight_method == "group", c.group_size);
  q["weight_symmetric"] = !c.weight_asymmetric;
  q["weight_alpha"] = null_unless(c.weight_method == "crossquant", c.weight_alpha);
  q["weight_storage"] = {{"codes", layout.describe()},
                         {"code_range", {layout.min_code, layout.max_code}},
                         {"scale", c.weight_method == "group" ? "F32 [out][groups]" : "F32 [out][1]"},
                         {"zero", c.weight_asymmetric ? nlohmann::json("U8 [out][groups]") : nlohmann::json(nullptr)},
                         {"column_factor", null_unless(c.weight_method == "crossquant", "F32 [in]")},
                         {"dequantized", c.weight_method == "crossquant" ? "(code * column_factor) * scale"
                                         : c.weight_asymmetric          ? "(code - zero) * scale"
                                                                        : "code * scale"}};
  const bool quantized_activations = c.quantizes_activations();
  const bool is_static = c.static_columns || c.static_tensor_scale;
  q["activation_method"] = null_unless(quantized_activations, c.activation_method);
  q["activation_scales"] = null_unless(quantized_activations, is_static ? kStaticScales : kDynamicScales);
  q["alpha"] = null_unless(quantized_activations && c.activation_method == "crossquant", c.alpha);
  if (quantized_activations && c.activation_method == "remove-kernel") q["kernel_target"] = c.kernel_target;
  q["quantize_bmm_input"] = c.quantize_attention_inputs;
  q["migration_strength"] = null_unless(c.method == "smoothquant", record.migration_strength);
  if (c.method == "awq") {
    nlohmann::json ratios = nlohmann::json::array();
    for (const auto& s : record.awq.scales) ratios.push_back({{"previous", s.previous}, {"linears", s.linears}, {"ratio", s.ratio}});
    q["awq"] = {{"grid", c.awq_grid}, {"max_shrink", c.awq_max_shrink}, {"clip_tokens", c.awq_clip_tokens},
                {"clip", c.awq_clip}, {"chosen_ratios", ratios}};
  }
  q["calibration"] = nullptr;
  if (c.needs_calibration()) {
    q["calibration"] = {{"file", c.calib_source}, {"samples", c.calib_samples}, {"seqlen", c.calib_seqlen}};
    if (record.calibration_windows > 0) q["calibration"]["windows_used"] = record.calibration_windows;
  }
  QuantConfig described = c;  // the SmoothQuant α used, not "default"
  if (c.method == "smoothquant") described.migration_strength = record.migration_strength;
  q["description"] = described.describe();
  return q;
}

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
  if (c.weight_method == "group") c.group_size = integer(q, "group_size");
  c.weight_asymmetric = !q.at("weight_symmetric").get<bool>();
  if (c.weight_method == "crossquant") c.weight_alpha = q.at("weight_alpha").get<double>();
  if (c.quantizes_activations()) {
    c.activation_method = q.at("activation_method").get<std::string>();
    const std::string scales = q.at("activation_scales").get<std::string>();
    if (scales != kStaticScales && scales != kDynamicScales)
      fail("activation_scales '{}' is neither '{}' nor '{}'", scales, kStaticScales, kDynamicScales);
    if (c.activation_method == "crossquant") c.alpha = q.at("alpha").get<double>();
    if (c.activation_method == "remove-kernel") c.kernel_target = q.at("kernel_target").get<double>();
    c.static_columns = scales == kStaticScales && c.activation_method == "crossquant";
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
  if (const nlohmann::json& calibration = q.at("calibration"); !calibration.is_null()) {
    c.calib_source = calibration.at("file").get<std::string>();
    c.calib_samples = integer(calibration, "samples");
    c.calib_seqlen = integer(calibration, "seqlen");
  }
  return c;
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

void write_quantized_checkpoint(Transformer& model, const QuantConfig& config, const QuantizationRecord& record,
                                const std::vector<std::vector<float>>& static_absmax, const std::filesystem::path& out_dir) {
  const auto quantizer = make_weight_quantizer(config);
  if (!quantizer) fail("cq quantize: nothing to store, the weights are not quantized (--wbits 16)");
  if (std::filesystem::exists(out_dir) && std::filesystem::equivalent(out_dir, model.directory()))
    fail("cq quantize: --out must differ from --model");
  std::filesystem::create_directories(out_dir);
  const ModelConfig& mc = model.config();
  const TensorNames names = tensor_names(mc);
  const CodeLayout layout = CodeLayout::of(config);

  // Static CrossQuant stores Q(W·diag(f)) and f (folds_static_columns): the codes an integer
  // GEMM takes as they are, and the fake path's ŵ = Q(W·diag(f)) / f.
  const bool fold = folds_static_columns(config);
  TensorSet tensors;
  for (auto& linear : model.linear_layers()) {
    std::span<float> w = linear.mutable_weight();
    std::vector<float> divisors;
    if (fold) {
      divisors = static_column_divisors(config.alpha, static_absmax.at(static_cast<size_t>(linear.layer * kInputSites + static_cast<int>(linear.site))));
      scale_weight_columns(w, linear.in_features, divisors, /*divide=*/false);
    }
    const QuantizedMatrix q = quantizer->quantize(MatrixView{w.data(), linear.out_features, linear.in_features, linear.in_features}, nullptr);
    add_quantized_weight(tensors, linear.name, q, layout);
    if (fold) tensors.add(linear.name + ".weight_column_divisor", DType::F32, {linear.in_features}, divisors);
    // What the model computes with from now on (the values fake quantization gives).
    std::vector<float> values = q.dequantized();
    if (fold) scale_weight_columns(values, linear.in_features, divisors, /*divide=*/true);
    std::copy(values.begin(), values.end(), w.begin());
    if (!linear.bias.empty()) tensors.add(linear.name + ".bias", DType::F32, {linear.out_features}, linear.bias);
  }
  for (int64_t l = 0; l < mc.num_layers; ++l) {
    const std::string prefix = names.layer_prefix + std::to_string(l) + ".";
    for (auto [site, norm] : {std::pair{InputSite::AttentionIn, names.attn_norm}, std::pair{InputSite::MlpIn, names.mlp_norm}}) {
      tensors.add(prefix + norm + ".weight", DType::F32, {mc.hidden_size}, model.norm_weight(l, site));
      if (!model.norm_bias(l, site).empty())
        tensors.add(prefix + norm + ".bias", DType::F32, {mc.hidden_size}, model.norm_bias(l, site));
    }
  }
  if (!static_absmax.empty())
    for (int64_t l = 0; l < mc.num_layers; ++l)
      for (int site = 0; site < kInputSites; ++site) {
        const auto& absmax = static_absmax.at(static_cast<size_t>(l * kInputSites + site));
        tensors.add(site_tensor_name(l, site), DType::F32, {static_cast<int64_t>(absmax.size())}, absmax);
      }
  // Everything else (embeddings, positions, final norm, lm_head) as stored, in FP32.
  for (const auto& [name, info] : model.checkpoint().tensors())
    if (!tensors.contains(name)) tensors.add_stored(info);

  const auto weights_path = out_dir / "model.safetensors";
  write_safetensors(weights_path, tensors.to_write(),
                    {{"format", "pt"}, {"quantization", fmt::format("{} v{}", kQuantizedCheckpointFormat, kQuantizedCheckpointVersion)}});

  nlohmann::json json = nlohmann::json::parse(read_text_file(model.directory() / "config.json"));
  nlohmann::json q = checkpoint_config(config, record, layout);
  q["weights_checksum"] = file_checksum(weights_path);
  q["source_model"] = std::filesystem::absolute(model.directory()).string();
  json["quantization_config"] = q;
  json["torch_dtype"] = "float32";
  write_file_atomically(out_dir / "config.json", json.dump(2) + "\n");
  for (const char* file : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                           "generation_config.json", "vocab.json", "merges.txt"}) {
    const auto source = model.directory() / file;
    if (std::filesystem::exists(source)) write_file_atomically(out_dir / file, read_text_file(source));
  }
}

QuantConfig parse_quantization_config(const nlohmann::json& q, const std::string& where) {
  if (!q.is_object()) fail("{} is not an object", where);
  const std::string format = q.contains("format") && q["format"].is_string() ? q["format"].get<std::string>() : "";
  if (format == kFormatVersion1)
    fail("{}: format '{}' (FP32 grid values, written by an older cq) is no longer read; run cq quantize again", where, format);
  if (format != kQuantizedCheckpointFormat)
    fail("{}: format '{}' is not '{}' (not written by cq quantize?)", where, format, kQuantizedCheckpointFormat);
  if (!q.contains("format_version") || !q["format_version"].is_number_integer() ||
      q["format_version"].get<int64_t>() != kQuantizedCheckpointVersion)
    fail("{}: format_version {} is not supported (this cq reads version {})", where,
         q.contains("format_version") ? q["format_version"].dump() : "(missing)", kQuantizedCheckpointVersion);
  try {
    QuantConfig config = config_from_checkpoint(q, where);
    config.validate();
    if (!config.quantizes_weights()) fail("wbits {}: a quantized checkpoint stores quantized weights", config.weight_bits);
    if (config.weight_asymmetric && config.weight_method != "group")
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
  const auto checksum = q.find("weights_checksum");
  if (checksum == q.end() || !checksum->is_string() || file_checksum(stored->weights_file) != checksum->get<std::string>())
    fail("{}: the weights do not match weights_checksum in {} (modified or corrupted after cq quantize)",
         stored->weights_file.string(), config_path.string());
  return stored;
}

QuantizedMatrix read_stored_weight(const SafetensorsCheckpoint& checkpoint, const StoredQuantization& stored,
                                   const std::string& module, int64_t out, int64_t in) {
  const QuantConfig& config = stored.config;
  const CodeLayout layout = CodeLayout::of(config);
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
  std::vector<float> scales = positive_values(stored_tensor(checkpoint, stored, module + ".weight_scale", DType::F32,
                                                            {out, groups}, "scales of " + weight));
  if (config.weight_method == "group") {
    q.group_size = config.group_size;
    q.group_scales = std::move(scales);
  } else {
    q.row_scales = std::move(scales);
  }
  const std::string zero = module + ".weight_zero";
  if (config.weight_asymmetric) {
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
  if (config.weight_method == "crossquant")
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

std::vector<std::vector<float>> read_static_absmax(const Transformer& model) {
  const StoredQuantization* stored = stored_quantization(model);
  if (!stored || !stored->config.quantizes_activations() || !(stored->config.static_columns || stored->config.static_tensor_scale))
    return {};
  const auto sites = static_cast<size_t>(model.config().num_layers * kInputSites);
  std::vector<int64_t> widths(sites, 0);
  for (const auto& linear : model.linear_layers())
    widths[static_cast<size_t>(linear.layer * kInputSites + static_cast<int>(linear.site))] = linear.in_features;
  std::vector<std::vector<float>> absmax(sites);
  for (size_t slot = 0; slot < sites; ++slot) {
    const TensorInfo& tensor =
        stored_tensor(model.checkpoint(), *stored, site_tensor_name(static_cast<int64_t>(slot) / kInputSites, static_cast<int>(slot % kInputSites)),
                      DType::F32, {widths[slot]}, "calibrated activation maxima");
    absmax[slot] = to_f32(tensor);
    for (size_t j = 0; j < absmax[slot].size(); ++j)
      if (!(std::isfinite(absmax[slot][j]) && absmax[slot][j] >= 0.f))
        fail("{}: tensor '{}': element {} is {}, expected a finite maximum >= 0", tensor.file.string(), tensor.name, j,
             absmax[slot][j]);
  }
  return absmax;
}

// ---- TEMPORARY adapter (moves to src/ptq/): the model gets a directory's weights through it ----

namespace {

// A model directory as `cq` loads it: an ordinary checkpoint, or one `cq quantize` wrote
// (verified on opening; each linear weight then given as the values its codes stand for).
class CheckpointDirectoryWeights final : public WeightSource {
 public:
  explicit CheckpointDirectoryWeights(const std::filesystem::path& model_dir)
      : checkpoint_(model_dir), stored_(read_stored_quantization(model_dir)) {}
  const SafetensorsCheckpoint& checkpoint() const override { return checkpoint_; }
  std::optional<std::vector<float>> linear_weight(const std::string& module, int64_t out, int64_t in) const override {
    if (!stored_) return std::nullopt;
    return read_stored_weight_values(checkpoint_, *stored_, module, out, in);
  }
  bool is_parameter(const std::string& name, const TensorInfo& info) const override {
    return !stored_ || (!is_integer(info.dtype) && !is_quantization_metadata(name));
  }
  const StoredQuantization* stored() const { return stored_.get(); }

 private:
  SafetensorsCheckpoint checkpoint_;
  std::shared_ptr<const StoredQuantization> stored_;
};

}  // namespace

Transformer load_model(const std::filesystem::path& model_dir) {
  // config.json's errors first, then the checkpoint's, then the quantization's, as before.
  (void)load_model_config(model_dir);
  return Transformer(model_dir, std::make_unique<CheckpointDirectoryWeights>(model_dir));
}

const StoredQuantization* stored_quantization(const Transformer& model) {
  const auto* weights = dynamic_cast<const CheckpointDirectoryWeights*>(&model.weights());
  return weights != nullptr ? weights->stored() : nullptr;
}

}  // namespace cq
