// `cq info --model DIR`: family, sizes, parameter count, dtype, quantization, tokenizer kind.
#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/output_paths.h"
#include "model/transformer.h"
#include "ptq/quantized_checkpoint.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace cq::cli {

void add_info_command(CLI::App& app) {
  struct Options {
    std::string model, json;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("info", "describe a model directory");
  command->add_option("--model", options->model, "Hugging Face model directory")->required();
  command->add_option("--json", options->json, "also write the description as JSON to this file ('-' for stdout)");
  command->callback([options] {
    check_output_file("--json", options->json);
    Transformer model = load_model(options->model);
    const ModelConfig& c = model.config();
    std::string tokenizer_kind;
    try {
      tokenizer_kind = load_tokenizer(options->model)->kind();
    } catch (const Error& e) {
      tokenizer_kind = fmt::format("none ({})", e.what());
    }
    const int64_t params = model.parameter_count();
    fmt::print("model        {}\n", options->model);
    fmt::print("family       {} ({})\n", c.family_name(), c.pre_norm ? "pre-norm" : "post-norm");
    fmt::print("layers       {}\n", c.num_layers);
    fmt::print("hidden       {} (intermediate {}{})\n", c.hidden_size, c.intermediate_size,
               c.has_projections() ? fmt::format(", word_embed_proj_dim {}", c.word_embed_proj_dim) : "");
    fmt::print("heads        {} (kv heads {}, head_dim {}{})\n", c.num_heads, c.num_kv_heads, c.head_dim,
               c.num_kv_heads < c.num_heads ? ", grouped-query" : "");
    fmt::print("vocab        {}\n", c.vocab_size);
    fmt::print("positions    {} (max {}{})\n", c.positions == PositionKind::Rotary ? "rotary" : "learned",
               c.max_position_embeddings,
               c.positions == PositionKind::Rotary ? fmt::format(", theta {}, scaling {}", c.rope_theta, c.rope_scaling.type) : "");
    fmt::print("parameters   {} ({:.2f} M)\n", params, static_cast<double>(params) / 1e6);
    fmt::print("dtype        {}\n", dtype_name(model.checkpoint().dominant_dtype()));
    const StoredQuantization* stored = stored_quantization(model);
    if (stored && stored->served_as_values) fmt::print("quantized    {} (compressed-tensors)\n", stored->config.describe());
    else if (stored) fmt::print("quantized    {} (cq quantize, format version {})\n", stored->config.describe(), stored->format_version);
    fmt::print("file size    {:.1f} MB\n", static_cast<double>(model.checkpoint().file_bytes()) / 1e6);
    fmt::print("tied lm_head {}\n", c.tie_word_embeddings ? "yes" : "no");
    fmt::print("tokenizer    {}\n", tokenizer_kind);
    if (!options->json.empty()) {
      nlohmann::json json = {{"model", options->model}, {"family", c.family_name()}, {"layers", c.num_layers},
                             {"hidden_size", c.hidden_size}, {"intermediate_size", c.intermediate_size},
                             {"num_heads", c.num_heads}, {"num_kv_heads", c.num_kv_heads}, {"head_dim", c.head_dim},
                             {"vocab_size", c.vocab_size}, {"parameters", params},
                             {"dtype", dtype_name(model.checkpoint().dominant_dtype())},
                             {"tie_word_embeddings", c.tie_word_embeddings}, {"tokenizer", tokenizer_kind}};
      if (stored) json["quantization"] = stored->config.describe();
      write_output(options->json, json.dump(2) + "\n");
    }
  });
}

}  // namespace cq::cli
