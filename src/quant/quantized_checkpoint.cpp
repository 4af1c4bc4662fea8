#include "quant/quantized_checkpoint.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "io/safetensors.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/json_number.h"
#include "util/text_file.h"

namespace cq {

namespace {

constexpr const char* kFormat = "crossquant-fake-quantized-v1";

// FNV-1a, 64 bits: detects accidental or deliberate edits of the weights file (not a
// cryptographic signature).
std::string file_checksum(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read {}", path.string());
  uint64_t hash = 1469598103934665603ull;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      hash ^= static_cast<unsigned char>(buffer[static_cast<size_t>(i)]);
      hash *= 1099511628211ull;
    }
  }
  return fmt::format("fnv1a64:{:016x}", hash);
}

std::string site_tensor_name(int64_t layer, int site) {
  return fmt::format("quantization.layers.{}.{}.input_absmax", layer, input_site_name(static_cast<InputSite>(site)));
}

QuantConfig config_from_json(const nlohmann::json& q, const std::string& where) {
  QuantConfig c;
  c.method = q.at("method").get<std::string>();
  c.weight_bits = static_cast<int>(json_integer(q.at("weight_bits"), where, "weight_bits", 0, 64));
  c.activation_bits = static_cast<int>(json_integer(q.at("activation_bits"), where, "activation_bits", 0, 64));
  c.weight_method = q.value("weight_method", std::string("per-channel"));
  c.group_size = json_integer_or(q, "group_size", 128, where);
  c.weight_asymmetric = q.value("weight_asymmetric", false);
  c.weight_alpha = q.value("weight_alpha", 0.55);
  c.activation_method = q.value("activation_method", std::string("crossquant"));
  c.alpha = q.value("alpha", 0.15);
  c.kernel_target = q.value("kernel_target", -1.0);
  c.scheme = q.value("scheme", std::string());
  c.static_columns = q.value("crossquant_columns", std::string()) == "static (calibrated)";
  c.static_tensor_scale = q.value("per_tensor_scale", std::string()) == "static (calibrated)";
  if (q.contains("migration_strength") && q["migration_strength"].is_number()) c.migration_strength = q["migration_strength"].get<double>();
  if (q.contains("calibration")) {
    c.calib_source = q["calibration"].value("source", std::string());
    c.calib_samples = json_integer_or(q["calibration"], "samples", 0, where);
    c.calib_seqlen = json_integer_or(q["calibration"], "seqlen", 0, where);
  }
  return c;
}

}  // namespace

void write_quantized_checkpoint(Transformer& model, const QuantConfig& config, const QuantizationRecord& record,
                                const std::vector<std::vector<float>>& static_absmax, const std::filesystem::path& out_dir) {
  const auto quantizer = make_weight_quantizer(config);
  if (!quantizer) fail("cq quantize: nothing to store, the weights are not quantized (--wbits 16)");
  if (config.weight_method == "crossquant") fail("cq quantize: CrossQuant weights (--weight-quant crossquant) cannot be stored yet");
  if (std::filesystem::exists(out_dir) && std::filesystem::equivalent(out_dir, model.directory()))
    fail("cq quantize: --out must differ from --model");
  std::filesystem::create_directories(out_dir);
  const ModelConfig& mc = model.config();
  const TensorNames names = tensor_names(mc);

  // Owned storage of every tensor written (bytes must outlive the write).
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> tensors;
  std::set<std::string> replaced;
  for (auto& linear : model.linear_layers()) {
    std::span<float> w = linear.mutable_weight();
    const QuantizedMatrix q = quantizer->quantize(MatrixView{w.data(), linear.out_features, linear.in_features, linear.in_features}, nullptr);
    std::vector<float> values(w.size());
    for (int64_t i = 0; i < q.rows; ++i)
      for (int64_t j = 0; j < q.cols; ++j) values[static_cast<size_t>(i * q.cols + j)] = q.dequantize(i, j);
    // What the model computes with from now on (the same values fake quantization gives).
    std::copy(values.begin(), values.end(), w.begin());
    tensors[linear.name + ".weight"] = {{linear.out_features, linear.in_features}, std::move(values)};
    if (q.group_size > 0) {
      const int64_t groups = static_cast<int64_t>(q.group_scales.size()) / q.rows;
      tensors[linear.name + ".weight_scale"] = {{q.rows, groups}, q.group_scales};
      if (!q.group_zeros.empty())
        tensors[linear.name + ".weight_zero"] = {{q.rows, groups}, std::vector<float>(q.group_zeros.begin(), q.group_zeros.end())};
    } else {
      tensors[linear.name + ".weight_scale"] = {{q.rows, 1}, q.row_scales};
    }
    if (!linear.bias.empty()) tensors[linear.name + ".bias"] = {{linear.out_features}, linear.bias};
  }
  for (int64_t l = 0; l < mc.num_layers; ++l) {
    const std::string prefix = names.layer_prefix + std::to_string(l) + ".";
    for (auto [site, norm] : {std::pair{InputSite::AttentionIn, names.attn_norm}, std::pair{InputSite::MlpIn, names.mlp_norm}}) {
      tensors[prefix + norm + ".weight"] = {{mc.hidden_size}, model.norm_weight(l, site)};
      if (!model.norm_bias(l, site).empty()) tensors[prefix + norm + ".bias"] = {{mc.hidden_size}, model.norm_bias(l, site)};
    }
  }
  if (!static_absmax.empty())
    for (int64_t l = 0; l < mc.num_layers; ++l)
      for (int site = 0; site < kInputSites; ++site) {
        const auto& absmax = static_absmax.at(static_cast<size_t>(l * kInputSites + site));
        tensors[site_tensor_name(l, site)] = {{static_cast<int64_t>(absmax.size())}, absmax};
      }
  // Everything else (embeddings, positions, final norm, lm_head) as stored, in FP32.
  for (const auto& [name, info] : model.checkpoint().tensors())
    if (!tensors.count(name)) tensors[name] = {info.shape, to_f32(info)};

  std::vector<TensorToWrite> to_write;
  for (const auto& [name, entry] : tensors)
    to_write.push_back({name, DType::F32, entry.first,
                        std::as_bytes(std::span<const float>(entry.second.data(), entry.second.size()))});
  const auto weights_path = out_dir / "model.safetensors";
  write_safetensors(weights_path, to_write, {{"format", "pt"}, {"quantization", kFormat}});

  nlohmann::json json = read_json_file(model.directory() / "config.json");
  nlohmann::json q = config.to_json();
  q["method"] = config.method;
  q["format"] = kFormat;
  q["weights_stored_as"] =
      "float32 dequantized grid values (codes - zero) * scale; codes = round(w / weight_scale) + weight_zero";
  q["weights_checksum"] = file_checksum(weights_path);
  q["source_model"] = std::filesystem::absolute(model.directory()).string();
  if (config.method == "smoothquant") q["migration_strength"] = record.migration_strength;
  if (record.calibration_windows > 0) q["calibration"]["windows_used"] = record.calibration_windows;
  if (config.method == "awq") {
    nlohmann::json ratios = nlohmann::json::array();
    for (const auto& s : record.awq.scales) ratios.push_back({{"previous", s.previous}, {"linears", s.linears}, {"ratio", s.ratio}});
    q["awq"]["chosen_ratios"] = ratios;
  }
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
  if (!q.is_object()) fail("{}: quantization_config is not an object", where);
  const auto format = q.find("format");
  if (format == q.end() || !format->is_string() || *format != kFormat)
    fail("{}: quantization_config format {} is not {}", where, format == q.end() ? "(none)" : format->dump(), kFormat);
  if (!q.contains("weights_checksum") || !q["weights_checksum"].is_string())
    fail("{}: quantization_config has no weights_checksum string", where);
  QuantConfig config;
  try {
    config = config_from_json(q, where);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed quantization_config: {}", where, e.what());
  }
  config.validate();
  return config;
}

std::optional<StoredQuantization> read_quantized_checkpoint(const Transformer& model) {
  const auto config_path = model.directory() / "config.json";
  const nlohmann::json json = read_json_file(config_path);
  if (!json.is_object() || !json.contains("quantization_config")) return std::nullopt;
  const nlohmann::json& q = json["quantization_config"];
  StoredQuantization stored;
  stored.config = parse_quantization_config(q, config_path.string());
  const auto weights_path = model.directory() / "model.safetensors";
  if (file_checksum(weights_path) != q["weights_checksum"].get<std::string>())
    fail("{}: the weights do not match the checksum in config.json (modified or corrupted after cq quantize)", weights_path.string());
  // Every stored weight must lie on its quantization grid.
  const SafetensorsCheckpoint& ckpt = model.checkpoint();
  const float max_code = stored.config.weight_asymmetric ? static_cast<float>((1 << stored.config.weight_bits) - 1)
                                                         : static_cast<float>((1 << (stored.config.weight_bits - 1)) - 1);
  for (const auto& linear : model.linear_layers()) {
    const std::vector<float> w = to_f32(*linear.stored_weight);
    const std::vector<float> scales = to_f32(ckpt.tensor(linear.name + ".weight_scale"));
    const std::vector<float> zeros = ckpt.contains(linear.name + ".weight_zero") ? to_f32(ckpt.tensor(linear.name + ".weight_zero"))
                                                                                 : std::vector<float>();
    const int64_t groups = static_cast<int64_t>(scales.size()) / linear.out_features;
    const int64_t group_size = groups == 1 ? linear.in_features : stored.config.group_size;
    if (groups < 1 || static_cast<int64_t>(scales.size()) != groups * linear.out_features ||
        (linear.in_features - 1) / group_size >= groups || (!zeros.empty() && zeros.size() != scales.size()))
      fail("{}: {}.weight_scale ({} values) or .weight_zero ({}) does not fit the weight [{}, {}] with group size {}",
           weights_path.string(), linear.name, scales.size(), zeros.size(), linear.out_features, linear.in_features, group_size);
    for (int64_t i = 0; i < linear.out_features; ++i)
      for (int64_t j = 0; j < linear.in_features; ++j) {
        const auto slot = static_cast<size_t>(i * groups + j / group_size);
        const float zero = zeros.empty() ? 0.f : zeros[slot];
        const float code = std::nearbyint(w[static_cast<size_t>(i * linear.in_features + j)] / scales[slot]) + zero;
        const float back = (code - zero) * scales[slot];
        const bool in_range = zeros.empty() ? std::abs(code) <= max_code : code >= 0 && code <= max_code;
        if (!in_range || std::abs(back - w[static_cast<size_t>(i * linear.in_features + j)]) > 1e-6f * std::abs(scales[slot]) * max_code)
          fail("{}: {} [{}, {}] is not on its quantization grid", weights_path.string(), linear.name, i, j);
      }
  }
  if (stored.config.static_columns || stored.config.static_tensor_scale) {
    for (int64_t l = 0; l < model.config().num_layers; ++l)
      for (int site = 0; site < kInputSites; ++site) stored.static_absmax.push_back(to_f32(ckpt.tensor(site_tensor_name(l, site))));
  }
  return stored;
}

}  // namespace cq
