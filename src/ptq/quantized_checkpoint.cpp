#include "ptq/quantized_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>

#include "io/torch_checkpoint.h"
#include "model/transformer.h"
#include "model/weight_source.h"
#include "ptq/compressed_tensors.h"
#include "ptq/tensor_set.h"
#include "quant/gptq.h"
#include "quant/method_table.h"
#include "quant/quant_common.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/json_number.h"
#include "util/limits.h"
#include "util/parallel.h"
#include "util/text_file.h"

namespace cq {

namespace {

// A rotated OPT's final LayerNorm bias, folded into lm_head (HF's OPT has no lm_head bias).
constexpr const char* kRotatedLmHeadBias = "lm_head.bias";

std::string site_tensor_name(int64_t layer, int site) {
  return fmt::format("quantization.layers.{}.{}.input_absmax", layer, input_site_name(static_cast<InputSite>(site)));
}

void add_quantized_weight(TensorSet& tensors, const std::string& module, const QuantizedMatrix& q, const StoredCodeLayout& layout) {
  if (q.tensor_scale != 0.f) fail("cq quantize: {}: per-tensor weight scales cannot be stored", module);
  const std::string weight = module + ".weight";
  // Never wrapped into the stored dtype: a code outside the layout's range is a bug upstream.
  for (size_t k = 0; k < q.codes.size(); ++k)
    if (q.codes[k] < layout.min_code || q.codes[k] > layout.max_code)
      fail("cq quantize: internal error: {}: code {} at {} is outside [{}, {}]", weight, q.codes[k], k, layout.min_code,
           layout.max_code);
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
    if (!q.group_zeros.empty() && layout.zero_dtype == DType::I32)  // OmniQuant's, unclamped
      tensors.add(module + ".weight_zero", DType::I32, {q.rows, groups},
                  std::vector<int32_t>(q.group_zeros.begin(), q.group_zeros.end()));
    else if (!q.group_zeros.empty())
      tensors.add(module + ".weight_zero", DType::U8, {q.rows, groups},
                  std::vector<uint8_t>(q.group_zeros.begin(), q.group_zeros.end()));
  } else {
    tensors.add(module + ".weight_scale", DType::F32, {q.rows, 1}, q.row_scales);
  }
  if (!q.column_factors.empty()) tensors.add(module + ".weight_column_factor", DType::F32, {q.cols}, q.column_factors);
}

nlohmann::json null_unless(bool condition, const nlohmann::json& value) { return condition ? value : nlohmann::json(nullptr); }

// A checkpoint's tensors are what the loaded model computes with: no NaN/Inf is written.
void require_finite(const std::string& name, std::span<const float> values) {
  for (size_t k = 0; k < values.size(); ++k)
    if (!std::isfinite(values[k])) fail("cq quantize: tensor '{}' holds {} at {}; nothing non-finite is stored", name, values[k], k);
}

nlohmann::json checkpoint_config(const QuantConfig& c, const QuantizationRecord& record, const StoredCodeLayout& layout,
                                 const std::vector<std::string>& added_biases) {
  const WeightStorage storage = weight_quant_method(c.weight_method).stored_weights;
  const bool omniquant = stores_omniquant_grid(c);
  nlohmann::json q;
  q["format"] = kQuantizedCheckpointFormat;
  q["format_version"] = checkpoint_format_version(c);
  q["method"] = c.method;
  if (!c.scheme.empty()) q["scheme"] = c.scheme;
  q["wbits"] = c.weight_bits;
  q["abits"] = c.activation_bits;
  q["weight_granularity"] = c.weight_method;
  q["group_size"] = null_unless(storage == WeightStorage::GroupScales, c.group_size);
  q["weight_symmetric"] = !(c.weight_asymmetric || omniquant);
  q["weight_alpha"] = null_unless(storage == WeightStorage::RowScalesColumnFactors, c.weight_alpha);
  q["weight_storage"] = {{"codes", layout.describe()},
                         {"code_range", {layout.min_code, layout.max_code}},
                         {"scale", omniquant ? "F32 [out][groups] (groups = 1 per output channel), within OmniQuant's clamp [1e-5, 1e4]"
                                   : storage == WeightStorage::GroupScales ? "F32 [out][groups]"
                                                                           : "F32 [out][1]"},
                         {"zero", omniquant ? nlohmann::json("I32 [out][groups]: OmniQuant's zero point round(clamp(-min/scale, -1e4, 1e4)), "
                                                             "not clamped to the code range")
                                  : c.weight_asymmetric ? nlohmann::json("U8 [out][groups]")
                                                        : nlohmann::json(nullptr)},
                         {"column_factor", null_unless(storage == WeightStorage::RowScalesColumnFactors, "F32 [in]")},
                         {"dequantized", storage == WeightStorage::RowScalesColumnFactors ? "(code * column_factor) * scale"
                                         : c.weight_asymmetric || omniquant ? "(code - zero) * scale"
                                                                        : "code * scale"}};
  const bool quantized_activations = c.quantizes_activations();
  const bool is_static = c.static_columns || c.static_tensor_scale;
  q["activation_method"] = null_unless(quantized_activations, c.activation_method);
  q["activation_scales"] = null_unless(quantized_activations, is_static ? kStaticScales : kDynamicScales);
  q["alpha"] = null_unless(quantized_activations && c.activation_method == "crossquant", c.alpha);
  if (quantized_activations && c.activation_method == "remove-kernel") q["kernel_target"] = c.kernel_target;
  q["quantize_bmm_input"] = c.quantize_attention_inputs;
  q["migration_strength"] = null_unless(c.method == "smoothquant", record.migration_strength);
  if (c.method == "smoothquant" && !c.smoothquant_scales.empty()) q["smoothquant_scales"] = c.smoothquant_scales;
  if (c.method == "awq" && !c.awq_results.empty()) {
    q["awq"] = {{"grid", c.awq_grid}, {"max_shrink", c.awq_max_shrink}, {"clip_tokens", c.awq_clip_tokens},
                {"clip", c.awq_clip}, {"results", c.awq_results}};
  } else if (c.method == "awq") {
    nlohmann::json ratios = nlohmann::json::array();
    for (const auto& s : record.awq.scales) ratios.push_back({{"previous", s.previous}, {"linears", s.linears}, {"ratio", s.ratio}});
    q["awq"] = {{"grid", c.awq_grid}, {"max_shrink", c.awq_max_shrink}, {"clip_tokens", c.awq_clip_tokens},
                {"clip", c.awq_clip}, {"chosen_ratios", ratios}};
  }
  if (omniquant) {
    q["omniquant"] = {{"parameters", c.omni_params.empty() ? nlohmann::json(nullptr)
                                                           : nlohmann::json(std::filesystem::absolute(c.omni_params).string())},
                      {"let", record.omniquant.let},
                      {"lwc", record.omniquant.lwc},
                      {"attention_products", c.quantizes_activations()
                                                 ? "q, k (after RoPE) and v quantized per token (per head on rotary families), "
                                                   "per-token-asym at abits, on load"
                                                 : "not quantized (A16)"}};
    // LET moved shifts into biases the original model lacks; the loader reads exactly these.
    q["added_biases"] = added_biases;
  } else if (!added_biases.empty()) {
    q["added_biases"] = added_biases;
  }
  if (c.method == "gptq")
    q["gptq"] = {{"dampening", c.gptq_dampening}, {"act_order", c.gptq_act_order}, {"block_size", 128}};
  q["calibration"] = nullptr;
  if (c.needs_calibration()) {
    q["calibration"] = {{"file", c.calib_source}, {"samples", c.calib_samples}, {"seqlen", c.calib_seqlen}};
    if (record.calibration_windows > 0) q["calibration"]["windows_used"] = record.calibration_windows;
  }
  q["rotation"] = nullptr;
  if (c.rotation != "none")
    q["rotation"] = {{"kind", c.rotation},
                     {"seed", c.rotation_seed},
                     {"hidden", record.rotation.hidden},
                     {"per_head", record.rotation.head},
                     {"mlp_down_online", record.rotation.mlp_down},
                     {"norms", record.rotation.mean_folded ? "RMSNorm (LayerNorm's mean folded into the residual stream's writers)"
                                                           : "RMSNorm, scales folded into the next linears"}};
  QuantConfig described = c;  // the SmoothQuant α used, not "default"
  if (c.method == "smoothquant") described.migration_strength = record.migration_strength;
  q["description"] = described.describe();
  return q;
}

}  // namespace

void write_quantized_checkpoint(Transformer& model, const QuantConfig& config, const QuantizationRecord& record,
                                const std::vector<std::vector<float>>& static_absmax, const std::filesystem::path& out_dir) {
  const auto quantizer = make_weight_quantizer(config);
  if (!quantizer) fail("cq quantize: nothing to store, the weights are not quantized (--wbits 16)");
  if (weight_quant_method(config.weight_method).stored_weights == WeightStorage::NotStorable)
    fail("cq quantize: weights quantized with '{}' have no stored form", config.weight_method);
  if (std::filesystem::exists(out_dir) && std::filesystem::equivalent(out_dir, model.directory()))
    fail("cq quantize: --out must differ from --model");
  if (!parallel::writes_outputs()) return;  // in an MPI job rank 0 writes (and checksums) the checkpoint
  std::filesystem::create_directories(out_dir);
  const ModelConfig& mc = model.config();
  const TensorNames names = tensor_names(mc);
  const StoredCodeLayout layout = StoredCodeLayout::of(config);

  // Static CrossQuant stores Q(W·diag(f)) and f (folds_static_columns): the codes an integer
  // GEMM takes as they are, and the fake path's ŵ = Q(W·diag(f)) / f.
  const bool fold = folds_static_columns(config);
  TensorSet tensors;
  auto& linears = model.linear_layers();
  const bool gptq = !record.gptq.grids.empty();
  // OmniQuant's weights are on its LWC grids already (apply_omniquant): stored as their codes.
  const bool omniquant = stores_omniquant_grid(config);
  if (omniquant && record.omniquant.grids.size() != linears.size())
    fail("cq quantize: internal error: OmniQuant recorded {} weight grids for {} linear layers", record.omniquant.grids.size(),
         linears.size());
  std::vector<std::string> added_biases;
  for (size_t index = 0; index < linears.size(); ++index) {
    LinearLayer& linear = linears[index];
    std::span<float> w = linear.mutable_weight();
    std::vector<float> divisors;
    if (fold) {
      divisors = static_column_divisors(config.alpha, static_absmax.at(static_cast<size_t>(linear.layer * kInputSites + static_cast<int>(linear.site))));
      scale_weight_columns(w, linear.in_features, divisors, /*divide=*/false);
    }
    // GPTQ's weights are on their grids already: stored as their codes, not rounded again.
    const QuantizedMatrix q = gptq        ? gptq_codes(model, record.gptq, index)
                              : omniquant ? codes_on_grid(w.data(), record.omniquant.grids[index])
                                          : quantizer->quantize(MatrixView{w.data(), linear.out_features, linear.in_features, linear.in_features}, nullptr);
    add_quantized_weight(tensors, linear.name, q, layout);
    if (fold) tensors.add(linear.name + ".weight_column_divisor", DType::F32, {linear.in_features}, divisors);
    // What the model computes with from now on (the values fake quantization gives).
    std::vector<float> values = q.dequantized();
    if (fold) scale_weight_columns(values, linear.in_features, divisors, /*divide=*/true);
    std::copy(values.begin(), values.end(), w.begin());
    if (!linear.bias.empty()) {
      require_finite(linear.name + ".bias", linear.bias);
      tensors.add(linear.name + ".bias", DType::F32, {linear.out_features}, linear.bias);
      if (!model.checkpoint().contains(linear.name + ".bias")) added_biases.push_back(linear.name);
    }
  }
  for (int64_t l = 0; l < mc.num_layers; ++l) {
    const std::string prefix = names.layer_prefix + std::to_string(l) + ".";
    for (auto [site, norm] : {std::pair{InputSite::AttentionIn, names.attn_norm}, std::pair{InputSite::MlpIn, names.mlp_norm}}) {
      // The decoder holds Gemma's effective weight 1 + w (folded scales included); store w.
      std::vector<float> stored_norm = model.norm_weight(l, site);
      for (float& w : stored_norm) w -= static_cast<float>(mc.norm_weight_offset);
      require_finite(prefix + norm + ".weight", stored_norm);
      tensors.add(prefix + norm + ".weight", DType::F32, {mc.hidden_size}, stored_norm);
      if (!model.norm_bias(l, site).empty()) {
        require_finite(prefix + norm + ".bias", model.norm_bias(l, site));
        tensors.add(prefix + norm + ".bias", DType::F32, {mc.hidden_size}, model.norm_bias(l, site));
      }
    }
  }
  if (!static_absmax.empty())
    for (int64_t l = 0; l < mc.num_layers; ++l)
      for (int site = 0; site < kInputSites; ++site) {
        const auto& absmax = static_absmax.at(static_cast<size_t>(l * kInputSites + site));
        tensors.add(site_tensor_name(l, site), DType::F32, {static_cast<int64_t>(absmax.size())}, absmax);
      }
  if (config.rotation != "none") {  // the rotated tensors outside the linears (rotation_of_checkpoint restores the rest)
    tensors.add(names.embed_tokens, DType::F32, model.checkpoint().tensor(names.embed_tokens).shape,
                model.tensor_values(Transformer::StoredTensor::EmbedTokens));
    if (mc.positions == PositionKind::Learned)
      tensors.add(names.embed_positions, DType::F32, model.checkpoint().tensor(names.embed_positions).shape,
                  model.tensor_values(Transformer::StoredTensor::EmbedPositions));
    tensors.add(names.lm_head, DType::F32, {mc.vocab_size, mc.hidden_size}, model.tensor_values(Transformer::StoredTensor::LmHead));
    if (!model.lm_head_bias().empty()) tensors.add(kRotatedLmHeadBias, DType::F32, {mc.vocab_size}, model.lm_head_bias());
    if (mc.final_norm) tensors.add(names.final_norm + ".weight", DType::F32, {mc.hidden_size}, model.final_norm_weight());
    if (record.rotation.mean_folded) {  // LayerNorm biases folded: zeros, so the stored file says what runs
      const std::vector<float> zeros(static_cast<size_t>(mc.hidden_size), 0.f);
      for (int64_t l = 0; l < mc.num_layers; ++l)
        for (const std::string& norm : {names.attn_norm, names.mlp_norm})
          tensors.add(names.layer_prefix + std::to_string(l) + "." + norm + ".bias", DType::F32, {mc.hidden_size}, zeros);
      if (mc.final_norm) tensors.add(names.final_norm + ".bias", DType::F32, {mc.hidden_size}, zeros);
    }
  }
  // Everything else (embeddings, positions, final norm, lm_head) as stored, in FP32.
  for (const auto& [name, info] : model.checkpoint().tensors())
    if (!tensors.contains(name)) tensors.add_stored(info);

  const auto weights_path = out_dir / "model.safetensors";
  write_safetensors(weights_path, tensors.to_write(),
                    {{"format", "pt"}, {"quantization", fmt::format("{} v{}", kQuantizedCheckpointFormat, checkpoint_format_version(config))}});

  nlohmann::json json = nlohmann::json::parse(read_text_file(model.directory() / "config.json"));
  nlohmann::json q = checkpoint_config(config, record, layout, added_biases);
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
  bool adds_bias(const std::string& module) const override {
    return stored_ && std::find(stored_->added_biases.begin(), stored_->added_biases.end(), module) != stored_->added_biases.end();
  }
  const StoredQuantization* stored() const { return stored_.get(); }

 private:
  SafetensorsCheckpoint checkpoint_;
  std::shared_ptr<const StoredQuantization> stored_;
};

void require_finite_tensor(const SafetensorsCheckpoint& checkpoint, const std::string& name, std::span<const float> values) {
  for (size_t k = 0; k < values.size(); ++k)
    if (!std::isfinite(values[k]))
      fail("{}: tensor '{}': element {} is {}, expected a finite value", checkpoint.tensor(name).file.string(), name, k, values[k]);
}

// What a transformation may have changed besides the codes (biases, added ones included, and
// norms): as the writer stored them, finite, and no bias the model would silently ignore.
void check_stored_parameters(Transformer& model, const StoredQuantization& stored) {
  const SafetensorsCheckpoint& checkpoint = model.checkpoint();
  for (const std::string& module : stored.added_biases)
    if (std::none_of(model.linear_layers().begin(), model.linear_layers().end(),
                     [&](const LinearLayer& linear) { return linear.name == module; }))
      fail("{}: quantization_config.added_biases names '{}', which is not a decoder linear of this model",
           (model.directory() / "config.json").string(), module);
  for (const LinearLayer& linear : model.linear_layers()) {
    const std::string bias = linear.name + ".bias";
    if (linear.bias.empty() && checkpoint.contains(bias))
      fail("{}: tensor '{}' is present, but this linear has no bias (config.json gives it none and "
           "quantization_config.added_biases does not name it)",
           checkpoint.tensor(bias).file.string(), bias);
    if (!linear.bias.empty()) require_finite_tensor(checkpoint, bias, linear.bias);
  }
  const TensorNames names = tensor_names(model.config());
  for (int64_t l = 0; l < model.config().num_layers; ++l) {
    const std::string prefix = names.layer_prefix + std::to_string(l) + ".";
    for (auto [site, norm] : {std::pair{InputSite::AttentionIn, names.attn_norm}, std::pair{InputSite::MlpIn, names.mlp_norm}}) {
      require_finite_tensor(checkpoint, prefix + norm + ".weight", model.norm_weight(l, site));
      if (!model.norm_bias(l, site).empty()) require_finite_tensor(checkpoint, prefix + norm + ".bias", model.norm_bias(l, site));
    }
  }
}

}  // namespace

Transformer load_model(const std::filesystem::path& model_dir) {
  // config.json's errors first, then the checkpoint's, then the quantization's.
  (void)load_model_config(model_dir);
  // A PyTorch checkpoint is always an ordinary one: cq quantize writes safetensors.
  if (const auto torch_file = torch_checkpoint_of(model_dir)) {
    if (read_json_file(model_dir / "config.json").contains("quantization_config"))
      fail("{}: quantization_config beside a PyTorch checkpoint ({}); cq reads only the quantized checkpoints it "
           "writes, which are safetensors",
           (model_dir / "config.json").string(), torch_file->filename().string());
    return Transformer(model_dir, open_torch_weights(model_dir));
  }
  if (is_compressed_tensors_directory(model_dir)) return Transformer(model_dir, open_compressed_tensors_weights(model_dir));
  Transformer model(model_dir, std::make_unique<CheckpointDirectoryWeights>(model_dir));
  if (const StoredQuantization* stored = stored_quantization(model)) check_stored_parameters(model, *stored);
  if (const StoredQuantization* stored = stored_quantization(model); stored != nullptr && stored->config.rotation != "none")
    restore_rotation(model, model.checkpoint().contains(kRotatedLmHeadBias) ? to_f32(model.checkpoint().tensor(kRotatedLmHeadBias))
                                                                           : std::vector<float>{});
  return model;
}

const StoredQuantization* stored_quantization(const Transformer& model) {
  const auto* weights = dynamic_cast<const CheckpointDirectoryWeights*>(&model.weights());
  return weights != nullptr ? weights->stored() : compressed_tensors_quantization(model.weights());
}

}  // namespace cq
