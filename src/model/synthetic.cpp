#include "model/synthetic.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <numbers>

#include "io/safetensors.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace cq {

namespace {

// splitmix64: tiny, platform-independent, so every machine writes identical files.
struct Random {
  uint64_t state;
  explicit Random(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {
    const double u1 = 1.0 - uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
};

uint64_t seed_of(const std::string& text) {  // FNV-1a
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char ch : text) hash = (hash ^ ch) * 0x100000001b3ull;
  return hash;
}

struct Preset {
  std::string family;  // opt | llama | mistral | qwen2 | phi3 | gemma
  int64_t vocab = 96, hidden = 32, intermediate = 64, layers = 2, heads = 4, kv_heads = 4, max_positions = 64;
  int64_t word_embed_proj_dim = 0;  // 0: = hidden
  int64_t head_dim = 0;             // 0: hidden / heads (LLaMA may set it explicitly)
  bool pre_norm = true, bias = true, tied = true, store_tied_head = false;
  DType dtype = DType::F32;
  int shards = 1;
  double rope_theta = 10000.0;
  nlohmann::json rope_scaling = nullptr;
  int64_t sliding_window = 0;  // mistral, phi3: 0 writes null
  double weight_std = 0;  // 0: 1/sqrt(fan_in)
  double embed_std = 1.0;
  // Outlier channels (gain multipliers), as large LLMs show: LayerNorm outputs, and the
  // v_proj / fc1 output channels, so every linear input carries a few massive channels.
  std::map<int64_t, double> outlier_gains;
  // Mean of fc1's bias: shifted up in the demo model so ReLU rarely outputs exact zeros
  // (exact zeros are in every method's kernel and would hide the difference).
  double fc1_bias_mean = 0.0;
};

std::map<std::string, Preset> make_presets() {
  std::map<std::string, Preset> p;
  Preset opt;
  opt.family = "opt";
  p["opt-pre"] = opt;
  {
    Preset x = opt;
    x.pre_norm = false;
    x.word_embed_proj_dim = 16;
    p["opt-post-proj"] = x;
  }
  {
    Preset x = opt;
    x.tied = false;
    p["opt-untied"] = x;
  }
  {
    Preset x = opt;
    x.bias = false;
    p["opt-nobias"] = x;
  }
  {
    Preset x = opt;
    x.dtype = DType::F16;
    x.store_tied_head = true;
    p["opt-fp16"] = x;
  }
  Preset llama;
  llama.family = "llama";
  llama.intermediate = 48;
  llama.kv_heads = 2;
  llama.tied = false;
  llama.bias = false;
  p["llama-gqa"] = llama;
  {
    Preset x = llama;
    x.kv_heads = 4;
    x.tied = true;
    p["llama-tied"] = x;
  }
  {
    Preset x = llama;
    x.dtype = DType::BF16;
    x.shards = 2;
    p["llama-bf16-sharded"] = x;
  }
  {
    Preset x = llama;
    x.rope_theta = 500000.0;
    x.max_positions = 1024;
    x.rope_scaling = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                      {"original_max_position_embeddings", 256}};
    p["llama3-rope-scaling"] = x;
  }
  {
    Preset x = llama;
    x.dtype = DType::F16;
    p["llama-fp16"] = x;
  }
  {
    Preset x = llama;  // attention_bias, mlp_bias and an explicit head_dim != hidden / heads
    x.bias = true;
    x.head_dim = 16;
    p["llama-bias-headdim"] = x;
  }
  // The other rotary families (tests/reference/families_reference.py): bias means what the
  // family has (Qwen2: q/k/v biases; Gemma: attention_bias), windows shorter than the
  // reference's 12-token sequences.
  {
    Preset x = llama;
    x.family = "qwen2";
    x.tied = true;
    x.bias = true;
    x.rope_theta = 1000000.0;
    p["qwen2-tied"] = x;
  }
  {
    Preset x = llama;
    x.family = "mistral";
    x.sliding_window = 5;
    p["mistral-window"] = x;
  }
  {
    Preset x = llama;  // kv_heads = heads: AWQ's o_proj group (scaled from the v rows of qkv_proj)
    x.family = "phi3";
    x.kv_heads = 4;
    x.sliding_window = 7;
    p["phi3-window"] = x;
  }
  {
    Preset x = llama;  // multi-query attention and head_dim 16 != hidden / heads, as Gemma-2B
    x.family = "gemma";
    x.kv_heads = 1;
    x.head_dim = 16;
    x.tied = true;
    p["gemma-mqa"] = x;
  }
  // Benchmark shapes.
  {
    Preset x = opt;
    x.vocab = 50272, x.hidden = 768, x.intermediate = 3072, x.layers = 12, x.heads = 12, x.kv_heads = 12;
    x.max_positions = 2048, x.weight_std = 0.02, x.embed_std = 0.02;
    p["opt-125m-shape"] = x;
  }
  {
    Preset x = llama;
    x.vocab = 32000, x.hidden = 4096, x.intermediate = 11008, x.layers = 2, x.heads = 32, x.kv_heads = 32;
    x.max_positions = 4096, x.weight_std = 0.02, x.embed_std = 0.02, x.dtype = DType::BF16;
    p["llama2-7b-2layers-bf16"] = x;
    x.dtype = DType::F32;  // the FP32 baseline of bench_engine reads FP32 weights, no conversion
    p["llama2-7b-2layers"] = x;
  }
  // `make run`: an OPT model whose LayerNorm outputs carry a few massive outlier channels.
  {
    Preset x = opt;
    x.vocab = 512, x.hidden = 256, x.intermediate = 1024, x.layers = 4, x.heads = 8, x.kv_heads = 8;
    x.max_positions = 512;
    x.outlier_gains = {{7, 70.0}, {42, 100.0}, {101, 85.0}, {200, 95.0}};
    x.fc1_bias_mean = 2.5;
    x.embed_std = 0.05;  // logits of a plausible scale through the tied lm_head
    p["opt-outliers"] = x;
  }
  return p;
}

struct TensorData {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

class Writer {
 public:
  Writer(const std::string& preset, const Preset& config) : preset_(preset), config_(config) {}

  // `seed_name` lets a tensor repeat another's values (a stored copy of a tied lm_head).
  // `inverse_column_gains` divides the columns that read outlier channels, so the layer's
  // output stays in range (as in trained LLMs, whose weights on outlier channels are small).
  void normal(const std::string& name, std::vector<int64_t> shape, double std, double mean = 0.0,
              const std::map<int64_t, double>* gains = nullptr, const std::string& seed_name = "",
              const std::map<int64_t, double>* inverse_column_gains = nullptr) {
    Random random(seed_of(preset_ + "/" + (seed_name.empty() ? name : seed_name)));
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    std::vector<float> values(static_cast<size_t>(count));
    for (auto& value : values) value = static_cast<float>(mean + std * random.normal());
    // Gains scale whole rows (elements of a 1-D tensor): outlier channels.
    const int64_t row_width = shape.size() > 1 ? count / shape[0] : 1;
    if (gains)
      for (const auto& [row, gain] : *gains)
        if (row < shape[0])
          for (int64_t j = 0; j < row_width; ++j) values[static_cast<size_t>(row * row_width + j)] *= static_cast<float>(gain);
    if (inverse_column_gains && shape.size() == 2)
      for (const auto& [column, gain] : *inverse_column_gains)
        if (column < row_width)
          for (int64_t r = 0; r < shape[0]; ++r) values[static_cast<size_t>(r * row_width + column)] /= static_cast<float>(gain);
    add(name, std::move(shape), values);
  }

  void add(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values) {
    TensorData t{name, std::move(shape), {}};
    const size_t element = dtype_size(config_.dtype);
    t.bytes.resize(values.size() * element);
    for (size_t i = 0; i < values.size(); ++i) {
      if (config_.dtype == DType::F32) {
        std::memcpy(t.bytes.data() + i * 4, &values[i], 4);
      } else {
        const uint16_t half = config_.dtype == DType::F16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
        std::memcpy(t.bytes.data() + i * 2, &half, 2);
      }
    }
    tensors_.push_back(std::move(t));
  }

  void write(const std::filesystem::path& dir) const {
    const int shards = config_.shards;
    if (shards == 1) {
      write_shard(dir / "model.safetensors", 0, tensors_.size());
      return;
    }
    nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
    uint64_t total = 0;
    const size_t per_shard = (tensors_.size() + static_cast<size_t>(shards) - 1) / static_cast<size_t>(shards);
    for (int s = 0; s < shards; ++s) {
      const std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards);
      const size_t begin = static_cast<size_t>(s) * per_shard;
      const size_t end = std::min(tensors_.size(), begin + per_shard);
      write_shard(dir / file, begin, end);
      for (size_t i = begin; i < end; ++i) {
        index["weight_map"][tensors_[i].name] = file;
        total += tensors_[i].bytes.size();
      }
    }
    index["metadata"]["total_size"] = total;
    write_file_atomically(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  }

 private:
  void write_shard(const std::filesystem::path& path, size_t begin, size_t end) const {
    std::vector<TensorToWrite> list;
    for (size_t i = begin; i < end; ++i)
      list.push_back({tensors_[i].name, config_.dtype, tensors_[i].shape, tensors_[i].bytes});
    write_safetensors(path, list, {{"format", "pt"}});
  }

  std::string preset_;
  const Preset& config_;
  std::vector<TensorData> tensors_;
};

// Mistral, Qwen2, Phi-3 and Gemma: LLaMA's module names (Phi-3: fused qkv_proj and
// gate_up_proj), each family's own config.json keys.
void write_rotary_family(const Preset& p, Writer& w, nlohmann::json& config, const char* torch_dtype) {
  const int64_t head_dim = p.head_dim ? p.head_dim : p.hidden / p.heads;
  const int64_t q_width = p.heads * head_dim, kv_width = p.kv_heads * head_dim;
  const bool gemma = p.family == "gemma", phi3 = p.family == "phi3", qwen2 = p.family == "qwen2";
  const std::string architecture = gemma ? "GemmaForCausalLM" : phi3 ? "Phi3ForCausalLM" : qwen2 ? "Qwen2ForCausalLM" : "MistralForCausalLM";
  config = {{"architectures", {architecture}}, {"model_type", p.family}, {"hidden_size", p.hidden},
            {"intermediate_size", p.intermediate}, {"num_attention_heads", p.heads}, {"num_key_value_heads", p.kv_heads},
            {"num_hidden_layers", p.layers}, {"max_position_embeddings", p.max_positions}, {"vocab_size", p.vocab},
            {"rms_norm_eps", 1e-5}, {"rope_theta", p.rope_theta}, {"rope_scaling", nullptr},
            {"tie_word_embeddings", p.tied}, {"bos_token_id", 1}, {"eos_token_id", 2}, {"torch_dtype", torch_dtype}};
  if (gemma) {
    config["hidden_act"] = "gelu_pytorch_tanh";
    config["hidden_activation"] = "gelu_pytorch_tanh";
    config["head_dim"] = head_dim;
    config["attention_bias"] = p.bias;
  } else {
    config["hidden_act"] = "silu";
  }
  if (p.family == "mistral" || phi3) config["sliding_window"] = p.sliding_window > 0 ? nlohmann::json(p.sliding_window) : nlohmann::json(nullptr);
  if (qwen2) config["use_sliding_window"] = false;
  auto linear_std = [&](int64_t fan_in) { return p.weight_std > 0 ? p.weight_std : 1.0 / std::sqrt(static_cast<double>(fan_in)); };
  w.normal("model.embed_tokens.weight", {p.vocab, p.hidden}, p.embed_std);
  // Gemma stores w of x·(1 + w): near 0; the others w near 1.
  const double norm_mean = gemma ? 0.0 : 1.0;
  for (int64_t l = 0; l < p.layers; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    if (phi3) {
      w.normal(prefix + "self_attn.qkv_proj.weight", {q_width + 2 * kv_width, p.hidden}, linear_std(p.hidden));
    } else {
      w.normal(prefix + "self_attn.q_proj.weight", {q_width, p.hidden}, linear_std(p.hidden));
      w.normal(prefix + "self_attn.k_proj.weight", {kv_width, p.hidden}, linear_std(p.hidden));
      w.normal(prefix + "self_attn.v_proj.weight", {kv_width, p.hidden}, linear_std(p.hidden));
      if (p.bias && (qwen2 || gemma)) {
        w.normal(prefix + "self_attn.q_proj.bias", {q_width}, 0.1);
        w.normal(prefix + "self_attn.k_proj.bias", {kv_width}, 0.1);
        w.normal(prefix + "self_attn.v_proj.bias", {kv_width}, 0.1);
      }
    }
    w.normal(prefix + "self_attn.o_proj.weight", {p.hidden, q_width}, linear_std(q_width));
    if (p.bias && gemma) w.normal(prefix + "self_attn.o_proj.bias", {p.hidden}, 0.1);
    if (phi3) {
      w.normal(prefix + "mlp.gate_up_proj.weight", {2 * p.intermediate, p.hidden}, linear_std(p.hidden));
    } else {
      w.normal(prefix + "mlp.gate_proj.weight", {p.intermediate, p.hidden}, linear_std(p.hidden));
      w.normal(prefix + "mlp.up_proj.weight", {p.intermediate, p.hidden}, linear_std(p.hidden));
    }
    w.normal(prefix + "mlp.down_proj.weight", {p.hidden, p.intermediate}, linear_std(p.intermediate));
    w.normal(prefix + "input_layernorm.weight", {p.hidden}, 0.1, norm_mean, &p.outlier_gains);
    w.normal(prefix + "post_attention_layernorm.weight", {p.hidden}, 0.1, norm_mean, &p.outlier_gains);
  }
  w.normal("model.norm.weight", {p.hidden}, 0.1, norm_mean);
  if (!p.tied) w.normal("lm_head.weight", {p.vocab, p.hidden}, p.embed_std);
}

}  // namespace

std::vector<std::string> synthetic_presets() {
  std::vector<std::string> names;
  for (const auto& [name, preset] : make_presets()) names.push_back(name);
  return names;
}

void write_synthetic_model(const std::string& preset_name, const std::filesystem::path& out_dir) {
  const auto presets = make_presets();
  const auto found = presets.find(preset_name);
  if (found == presets.end()) fail("unknown synthetic preset '{}' (see `cq synth --list`)", preset_name);
  const Preset& p = found->second;
  std::filesystem::create_directories(out_dir);
  const int64_t head_dim = p.head_dim ? p.head_dim : p.hidden / p.heads;
  const int64_t proj = p.word_embed_proj_dim ? p.word_embed_proj_dim : p.hidden;
  auto linear_std = [&](int64_t fan_in) { return p.weight_std > 0 ? p.weight_std : 1.0 / std::sqrt(static_cast<double>(fan_in)); };
  Writer w(preset_name, p);
  nlohmann::json config;
  const char* torch_dtype = p.dtype == DType::F32 ? "float32" : p.dtype == DType::F16 ? "float16" : "bfloat16";
  if (p.family == "opt") {
    config = {{"architectures", {"OPTForCausalLM"}}, {"model_type", "opt"}, {"activation_function", "relu"},
              {"bos_token_id", 2}, {"eos_token_id", 2}, {"pad_token_id", 1}, {"do_layer_norm_before", p.pre_norm},
              {"enable_bias", p.bias}, {"ffn_dim", p.intermediate}, {"hidden_size", p.hidden},
              {"num_attention_heads", p.heads}, {"num_hidden_layers", p.layers},
              {"max_position_embeddings", p.max_positions}, {"vocab_size", p.vocab}, {"word_embed_proj_dim", proj},
              {"tie_word_embeddings", p.tied}, {"layer_norm_elementwise_affine", true}, {"torch_dtype", torch_dtype}};
    const std::string d = "model.decoder.";
    w.normal(d + "embed_tokens.weight", {p.vocab, proj}, p.embed_std);
    w.normal(d + "embed_positions.weight", {p.max_positions + 2, p.hidden}, p.embed_std * 0.5);
    if (proj != p.hidden) {
      w.normal(d + "project_in.weight", {p.hidden, proj}, linear_std(proj));
      w.normal(d + "project_out.weight", {proj, p.hidden}, linear_std(p.hidden));
    }
    for (int64_t l = 0; l < p.layers; ++l) {
      const std::string prefix = d + "layers." + std::to_string(l) + ".";
      for (const char* name : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
        const auto* gains = std::string(name) == "v_proj" ? &p.outlier_gains : nullptr;
        w.normal(prefix + "self_attn." + name + ".weight", {p.hidden, p.hidden}, linear_std(p.hidden), 0.0, gains, "",
                 &p.outlier_gains);
        if (p.bias) w.normal(prefix + "self_attn." + name + ".bias", {p.hidden}, 0.1, 0.0, gains);
      }
      w.normal(prefix + "fc1.weight", {p.intermediate, p.hidden}, linear_std(p.hidden), 0.0, &p.outlier_gains, "",
               &p.outlier_gains);
      if (p.bias) w.normal(prefix + "fc1.bias", {p.intermediate}, 0.1, p.fc1_bias_mean, &p.outlier_gains);
      w.normal(prefix + "fc2.weight", {p.hidden, p.intermediate}, linear_std(p.intermediate), 0.0, nullptr, "",
               &p.outlier_gains);
      if (p.bias) w.normal(prefix + "fc2.bias", {p.hidden}, 0.1);
      for (const char* norm : {"self_attn_layer_norm", "final_layer_norm"}) {
        w.normal(prefix + norm + ".weight", {p.hidden}, 0.1, 1.0, &p.outlier_gains);
        w.normal(prefix + norm + ".bias", {p.hidden}, 0.1, 0.0, &p.outlier_gains);
      }
    }
    if (p.pre_norm) {
      w.normal(d + "final_layer_norm.weight", {p.hidden}, 0.1, 1.0);
      w.normal(d + "final_layer_norm.bias", {p.hidden}, 0.1);
    }
    if (!p.tied) w.normal("lm_head.weight", {p.vocab, proj}, p.embed_std);
  } else if (p.family != "llama") {
    write_rotary_family(p, w, config, torch_dtype);
  } else {
    config = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_act", "silu"},
              {"bos_token_id", 1}, {"eos_token_id", 2}, {"hidden_size", p.hidden},
              {"intermediate_size", p.intermediate}, {"num_attention_heads", p.heads},
              {"num_key_value_heads", p.kv_heads}, {"num_hidden_layers", p.layers},
              {"max_position_embeddings", p.max_positions}, {"vocab_size", p.vocab}, {"rms_norm_eps", 1e-5},
              {"rope_theta", p.rope_theta}, {"rope_scaling", p.rope_scaling}, {"tie_word_embeddings", p.tied},
              {"attention_bias", p.bias}, {"mlp_bias", p.bias}, {"torch_dtype", torch_dtype}};
    if (p.head_dim) config["head_dim"] = p.head_dim;
    w.normal("model.embed_tokens.weight", {p.vocab, p.hidden}, p.embed_std);
    for (int64_t l = 0; l < p.layers; ++l) {
      const std::string prefix = "model.layers." + std::to_string(l) + ".";
      w.normal(prefix + "self_attn.q_proj.weight", {p.heads * head_dim, p.hidden}, linear_std(p.hidden));
      w.normal(prefix + "self_attn.k_proj.weight", {p.kv_heads * head_dim, p.hidden}, linear_std(p.hidden));
      w.normal(prefix + "self_attn.v_proj.weight", {p.kv_heads * head_dim, p.hidden}, linear_std(p.hidden));
      w.normal(prefix + "self_attn.o_proj.weight", {p.hidden, p.heads * head_dim}, linear_std(p.heads * head_dim));
      if (p.bias) {
        w.normal(prefix + "self_attn.q_proj.bias", {p.heads * head_dim}, 0.1);
        w.normal(prefix + "self_attn.k_proj.bias", {p.kv_heads * head_dim}, 0.1);
        w.normal(prefix + "self_attn.v_proj.bias", {p.kv_heads * head_dim}, 0.1);
        w.normal(prefix + "self_attn.o_proj.bias", {p.hidden}, 0.1);
        w.normal(prefix + "mlp.gate_proj.bias", {p.intermediate}, 0.1);
        w.normal(prefix + "mlp.up_proj.bias", {p.intermediate}, 0.1);
        w.normal(prefix + "mlp.down_proj.bias", {p.hidden}, 0.1);
      }
      w.normal(prefix + "mlp.gate_proj.weight", {p.intermediate, p.hidden}, linear_std(p.hidden));
      w.normal(prefix + "mlp.up_proj.weight", {p.intermediate, p.hidden}, linear_std(p.hidden));
      w.normal(prefix + "mlp.down_proj.weight", {p.hidden, p.intermediate}, linear_std(p.intermediate));
      w.normal(prefix + "input_layernorm.weight", {p.hidden}, 0.1, 1.0, &p.outlier_gains);
      w.normal(prefix + "post_attention_layernorm.weight", {p.hidden}, 0.1, 1.0, &p.outlier_gains);
    }
    w.normal("model.norm.weight", {p.hidden}, 0.1, 1.0);
    if (!p.tied) w.normal("lm_head.weight", {p.vocab, p.hidden}, p.embed_std);
  }
  if (p.tied && p.store_tied_head) {
    // Like many HF exports: the tied lm_head is stored as a copy of embed_tokens.
    const std::string embed = p.family == "opt" ? "model.decoder.embed_tokens.weight" : "model.embed_tokens.weight";
    w.normal("lm_head.weight", {p.vocab, proj}, p.embed_std, 0.0, nullptr, embed);
  }
  w.write(out_dir);
  write_file_atomically(out_dir / "config.json", config.dump(2) + "\n");
}

}  // namespace cq
