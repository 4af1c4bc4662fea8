// `cq export --format compressed-tensors`: a W8A8 model in the layout vLLM loads
// (ptq/compressed_tensors.h, docs/EXPORT.md). Every scaling cq applies to activations is
// folded into norms and linear weights first, so what remains is vLLM's standard W8A8:
// int8 per-channel weights and int8 per-token dynamic activations.
#include <unistd.h>

#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <nlohmann/json.hpp>

#include "model/transformer.h"
#include "ptq/apply_quantization.h"
#include "ptq/compressed_tensors.h"
#include "ptq/compressed_tensors_pack_quantized.h"
#include "ptq/tensor_set.h"
#include "quant/gptq.h"
#include "ptq/smoothquant.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/limits.h"
#include "util/text_file.h"

namespace cq {

bool exports_pack_quantized(const QuantConfig& c) {
  return c.quantizes_weights() && !c.quantizes_activations() && c.weight_bits == 4 &&
         (c.weight_method == "group" || c.weight_method == "per-channel");
}

std::string compressed_tensors_refusal(const QuantConfig& c) {
  if (c.engine != "fake") return "--engine chooses how cq runs a model; vLLM runs the export with its own kernels";
  if (!c.quantizes_weights()) return "the weights are not quantized (--wbits 16): there is nothing to export";
  if (c.rotation != "none")
    return "--rotate hadamard needs an online Hadamard transform of down_proj's input at run time, which the exported "
           "linears do not apply";
  if (c.quantizes_activations() && c.activation_bits < 8)
    return fmt::format("{}-bit activations: vLLM's int path quantizes activations to 8 bits per token, so W{}A{} would run as "
                       "a different model",
                       c.activation_bits, c.weight_bits, c.activation_bits);
  if (c.weight_method != "per-channel" && c.weight_method != "group")
    return fmt::format("'{}' weights carry per-column factors that vLLM's int8 per-channel weights cannot hold", c.weight_method);
  if (c.method == "omniquant" && c.weight_method != "group")
    return "OmniQuant's per-channel weights have a zero point per output channel, which cq's pack-quantized export "
           "(channel strategy: symmetric) cannot hold; use OmniQuant's group-wise parameters (--weight-quant group)";
  if (!c.quantizes_activations()) {
    if (exports_pack_quantized(c)) return "";
    return fmt::format("weight-only W{}A16: only 4-bit weight-only settings (W4A16, pack-quantized) and W8A8 are exported",
                       c.weight_bits);
  }
  if (c.weight_method == "group")
    return fmt::format("group-wise W{} weights with int8 activations: only weight-only group-wise int4 (W4A16, --abits 16) is "
                       "exported as pack-quantized",
                       c.weight_bits);
  if (c.weight_bits != 8) return fmt::format("{}-bit per-channel weights: vLLM's W8A8 path takes int8 weights (use --wbits 8)", c.weight_bits);
  if (c.activation_bits != 8) return fmt::format("{}-bit activations: only int8 activations are exported", c.activation_bits);
  if (c.quantize_attention_inputs) return "vLLM does not quantize the inputs of the attention products (--quantize-bmm-input)";
  if (c.activation_method == "per-token") return "";
  if (c.activation_method == "crossquant")
    return c.static_columns ? ""
                            : "dynamic CrossQuant divides by column maxima c_j of each window, which no per-token int8 kernel "
                              "applies; calibrate c with --calib FILE (static CrossQuant folds into the weights)";
  if (c.activation_method == "per-tensor")
    return "per-tensor activation scales are not exported; use --act-quant per-token (or static CrossQuant)";
  return fmt::format("--act-quant {} has no integer form in compressed-tensors", c.activation_method);
}

std::string compressed_tensors_shape_refusal(const Transformer& model, const QuantConfig& c) {
  if (!exports_pack_quantized(c)) return "";
  int64_t common_divisor = 0;
  for (const LinearLayer& linear : model.linear_layers()) common_divisor = std::gcd(common_divisor, linear.in_features);
  for (const LinearLayer& linear : model.linear_layers()) {
    if (c.weight_method == "group" && linear.in_features % c.group_size != 0)
      return fmt::format("{} has {} input columns, not a multiple of --group-size {}: compressed-tensors' group strategy and "
                         "vLLM store whole groups only (group sizes dividing every linear's input size here: the divisors of {})",
                         linear.name, linear.in_features, c.group_size, common_divisor);
    if (c.weight_method == "group" && c.weight_asymmetric && linear.out_features % kCodesPerWord != 0)
      return fmt::format("{} has {} output channels, not a multiple of {}: its zero points would not fill whole int32 words, "
                         "which vLLM's packed zero points need",
                         linear.name, linear.out_features, kCodesPerWord);
  }
  return "";
}

namespace {

// Static CrossQuant, X̃_ij = round(X_ij / (r_i f_j)) with f_j = c_j^(1−α): dividing the input
// channels by f (in the norm, or the rows of the linear that produces them) and multiplying
// the reading weight's columns by f leaves a per-token problem on X / f. Exact wherever
// what lies between is per-channel linear and positive-homogeneous: a pre-norm's weight and
// bias, the value path of multi-head attention into o_proj, ReLU (fc1 → fc2), the up half of
// SwiGLU (up → down). With grouped-query attention one v row serves several heads' columns
// of o_proj's input, so o_proj's factor is left out (plain per-token on its input).
void fold_static_crossquant(Transformer& model, double alpha, const std::vector<std::vector<float>>& static_absmax) {
  const ModelConfig& mc = model.config();
  for (int64_t layer = 0; layer < mc.num_layers; ++layer) {
    const auto divisors = [&](InputSite site) {
      return static_column_divisors(alpha, static_absmax.at(static_cast<size_t>(layer * kInputSites + static_cast<int>(site))));
    };
    fold_scales_into_norm(model, layer, InputSite::AttentionIn, divisors(InputSite::AttentionIn));
    fold_scales_into_norm(model, layer, InputSite::MlpIn, divisors(InputSite::MlpIn));
    const Transformer::BlockLinears block = model.block_linears(layer);
    if (mc.num_kv_heads == mc.num_heads) {
      const int64_t next[] = {block.o};
      fold_scales_into_linear(model, block.v, next, divisors(InputSite::AttentionOut));
    }
    const int64_t down[] = {block.down_or_fc2};
    fold_scales_into_linear(model, block.up >= 0 ? block.up : block.gate_or_fc1, down, divisors(InputSite::MlpDown));
  }
}

nlohmann::json int8_args(const char* strategy, bool dynamic) {
  // QuantizationArgs as compressed-tensors serializes them (every field, sorted keys).
  return {{"num_bits", 8},          {"type", "int"},          {"symmetric", true},
          {"group_size", nullptr},  {"strategy", strategy},   {"block_structure", nullptr},
          {"dynamic", dynamic},     {"actorder", nullptr},    {"scale_dtype", nullptr},
          {"zp_dtype", nullptr},    {"observer", dynamic ? nlohmann::json(nullptr) : nlohmann::json("memoryless_minmax")},
          {"observer_kwargs", nlohmann::json::object()}};
}

// W4A16's weights as compressed-tensors serializes them: int4, static, "group" with its size
// or "channel"; zp_dtype names the zero points' dtype only when there are zero points.
nlohmann::json int4_weight_args(const QuantConfig& c) {
  const bool grouped = c.weight_method == "group";
  const bool asymmetric = grouped && c.weight_asymmetric;
  nlohmann::json args = int8_args(grouped ? "group" : "channel", false);
  args["num_bits"] = kPackedBits;
  args["symmetric"] = !asymmetric;
  args["group_size"] = grouped ? nlohmann::json(c.group_size) : nlohmann::json(nullptr);
  args["zp_dtype"] = asymmetric ? nlohmann::json("torch.int8") : nlohmann::json(nullptr);
  return args;
}

nlohmann::json quantization_config(const QuantConfig& c, const std::vector<std::string>& ignored) {
  const bool packed = exports_pack_quantized(c);
  const char* format = packed ? "pack-quantized" : "int-quantized";
  nlohmann::json group = {{"targets", {"Linear"}},
                          {"weights", packed ? int4_weight_args(c) : int8_args("channel", false)},
                          {"input_activations", packed ? nlohmann::json(nullptr) : int8_args("token", true)},
                          {"output_activations", nullptr},
                          {"format", format}};
  return {{"config_groups", {{"group_0", group}}},
          {"format", format},
          {"global_compression_ratio", nullptr},
          {"ignore", ignored},
          {"kv_cache_scheme", nullptr},
          {"quant_method", kCompressedTensorsMethod},
          {"quantization_status", "compressed"},
          {"sparsity_config", nlohmann::json::object()},
          {"transform_config", nlohmann::json::object()},
          {"version", kCompressedTensorsVersion}};
}

// The directory is built beside out_dir and renamed into place; a previous export (or an
// empty folder) under that name is replaced, anything else refused.
void replace_directory(const std::filesystem::path& built, const std::filesystem::path& out_dir) {
  std::error_code ec;
  if (std::filesystem::exists(out_dir)) {
    const bool empty = std::filesystem::is_directory(out_dir) && std::filesystem::is_empty(out_dir);
    if (!empty && !is_compressed_tensors_directory(out_dir))
      fail("--out {}: exists and is not a compressed-tensors export; give a new or empty folder", out_dir.string());
    std::filesystem::path old = out_dir;
    old += fmt::format(".old.{}", ::getpid());
    std::filesystem::rename(out_dir, old, ec);
    if (ec) fail("--out {}: cannot move the previous export aside: {}", out_dir.string(), ec.message());
    std::filesystem::rename(built, out_dir, ec);
    if (ec) {
      std::filesystem::rename(old, out_dir);
      fail("--out {}: cannot rename into place: {}", out_dir.string(), ec.message());
    }
    std::filesystem::remove_all(old, ec);
    return;
  }
  std::filesystem::rename(built, out_dir, ec);
  if (ec) fail("--out {}: cannot rename into place: {}", out_dir.string(), ec.message());
}

void write_export(Transformer& model, const QuantConfig& config, const QuantizationRecord& record, const std::filesystem::path& dir) {
  const auto quantizer = make_weight_quantizer(config);
  const ModelConfig& mc = model.config();
  const TensorNames names = tensor_names(mc);
  TensorSet tensors;
  std::set<std::string> packed_weights;
  for (size_t index = 0; index < model.linear_layers().size(); ++index) {
    LinearLayer& linear = model.linear_layers()[index];
    std::span<float> w = linear.mutable_weight();
    // GPTQ's and OmniQuant's weights are on their grids already; rounding them again to
    // nearest could change the grid (a row whose largest code moved), so their own codes are
    // written (OmniQuant's zero points outside 0..15 are then refused, never re-rounded).
    const QuantizedMatrix q =
        !record.gptq.grids.empty()        ? gptq_codes(model, record.gptq, index)
        : !record.omniquant.grids.empty() ? codes_on_grid(w.data(), record.omniquant.grids[index])
                                          : quantizer->quantize(MatrixView{w.data(), linear.out_features, linear.in_features, linear.in_features}, nullptr);
    if (exports_pack_quantized(config)) {
      add_pack_quantized_linear(tensors, linear.name, q);
      packed_weights.insert(linear.name + ".weight");  // replaced by weight_packed
      if (!linear.bias.empty()) tensors.add(linear.name + ".bias", DType::F32, {linear.out_features}, std::span<const float>(linear.bias));
      continue;
    }
    if (q.row_scales.size() != static_cast<size_t>(linear.out_features) || !q.column_factors.empty() || q.group_size > 0)
      fail("internal error: {}: the weight quantizer did not give per-channel scales", linear.name);
    std::vector<int8_t> codes(q.codes.size());
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<int8_t>(q.codes[i]);
    tensors.add(linear.name + ".weight", DType::I8, {linear.out_features, linear.in_features}, std::span<const int8_t>(codes));
    tensors.add(linear.name + ".weight_scale", DType::F32, {linear.out_features, 1}, std::span<const float>(q.row_scales));
    if (!linear.bias.empty()) tensors.add(linear.name + ".bias", DType::F32, {linear.out_features}, std::span<const float>(linear.bias));
  }
  for (int64_t l = 0; l < mc.num_layers; ++l) {
    const std::string prefix = names.layer_prefix + std::to_string(l) + ".";
    for (auto [site, norm] : {std::pair{InputSite::AttentionIn, names.attn_norm}, std::pair{InputSite::MlpIn, names.mlp_norm}}) {
      tensors.add(prefix + norm + ".weight", DType::F32, {mc.hidden_size}, std::span<const float>(model.norm_weight(l, site)));
      if (!model.norm_bias(l, site).empty())
        tensors.add(prefix + norm + ".bias", DType::F32, {mc.hidden_size}, std::span<const float>(model.norm_bias(l, site)));
    }
  }
  // Embeddings, positions, the final norm, lm_head and OPT's projections: as stored, in FP32.
  for (const auto& [name, info] : model.checkpoint().tensors())
    if (!tensors.contains(name) && !packed_weights.contains(name)) tensors.add(name, DType::F32, info.shape, std::span<const float>(to_f32(info)));
  write_safetensors(dir / "model.safetensors", tensors.to_write(), {{"format", "pt"}});

  // Every nn.Linear that is not a decoder linear stays in full precision (vLLM matches names).
  std::vector<std::string> ignored = {"lm_head"};
  for (const std::string& projection : {names.project_in, names.project_out})
    if (!projection.empty() && model.checkpoint().contains(projection + ".weight")) ignored.push_back(projection);
  nlohmann::json json = nlohmann::json::parse(read_text_file(model.directory() / "config.json", kMaxConfigFileBytes));
  json["quantization_config"] = quantization_config(config, ignored);
  json["torch_dtype"] = "float32";
  write_file_atomically(dir / "config.json", json.dump(2) + "\n");
  for (const char* file : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                           "generation_config.json", "vocab.json", "merges.txt"}) {
    const auto source = model.directory() / file;
    if (std::filesystem::exists(source)) write_file_atomically(dir / file, read_text_file(source));
  }
}

}  // namespace

void export_compressed_tensors(Transformer& model, const QuantConfig& config, std::span<const int32_t> calibration_tokens,
                               const std::filesystem::path& out_dir) {
  if (const std::string refusal = compressed_tensors_refusal(config); !refusal.empty())
    fail("cq export --format compressed-tensors: {}", refusal);
  if (const std::string refusal = compressed_tensors_shape_refusal(model, config); !refusal.empty())
    fail("cq export --format compressed-tensors: --model {}: {}", model.directory().string(), refusal);
  if (std::filesystem::exists(out_dir) && std::filesystem::equivalent(out_dir, model.directory()))
    fail("--out {}: must differ from --model", out_dir.string());
  // SmoothQuant's factors fold into the norms here, exactly as for `cq ppl`.
  const QuantizationRecord record = apply_transformation(model, config, calibration_tokens);
  if (config.activation_method == "crossquant")
    fold_static_crossquant(model, config.alpha, calibrate_static_activations(model, config, calibration_tokens));

  const std::filesystem::path absolute = std::filesystem::absolute(out_dir).lexically_normal();
  const std::filesystem::path target = absolute.filename().empty() ? absolute.parent_path() : absolute;
  std::filesystem::create_directories(target.parent_path());
  std::filesystem::path built = target;
  built += fmt::format(".tmp.{}", ::getpid());
  std::error_code ec;
  std::filesystem::remove_all(built, ec);
  std::filesystem::create_directory(built);
  try {
    write_export(model, config, record, built);
    replace_directory(built, target);
  } catch (...) {
    std::filesystem::remove_all(built, ec);
    throw;
  }
}

}  // namespace cq
