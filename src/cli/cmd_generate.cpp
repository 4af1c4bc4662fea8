// `cq generate`: greedy (temperature 0) or sampled continuation with a KV cache.
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/run_options.h"
#include "eval/generation.h"
#include "model/position_limit.h"
#include "ptq/apply_quantization.h"
#include "model/transformer.h"
#include "ptq/quantized_checkpoint.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace cq::cli {

void add_generate_command(CLI::App& app) {
  struct Options {
    std::string model, prompt;
    int64_t new_tokens = 64;
    double temperature = 0.0;
    uint64_t seed = 0;
    bool ids = false;
    QuantOptions quant;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("generate", "continue a prompt");
  command->add_option("--model", options->model, "Hugging Face model directory")->required();
  command->add_option("--prompt", options->prompt, "prompt text (BOS added as the tokenizer says)")->required();
  command->add_option("-n,--tokens", options->new_tokens, "tokens to generate")->check(positive_count())->capture_default_str();
  command->add_option("--temperature", options->temperature, "0 = greedy")->capture_default_str();
  command->add_option("--seed", options->seed, "sampling seed")->capture_default_str();
  command->add_flag("--ids", options->ids, "also print the generated token ids");
  // Speed commands run the integer kernels by default where they compute the same model.
  options->quant.config.engine = "auto";
  add_quant_options(*command, options->quant);
  add_run_options(*command);
  command->callback([options] {
    if (options->temperature < 0) fail("--temperature must be >= 0");
    const QuantConfig quant = options->quant.resolve();
    Transformer model = load_model(options->model);
    const auto tokenizer = load_tokenizer(options->model);
    std::vector<int32_t> tokens = tokenizer->encode(options->prompt, true);
    if (tokens.empty()) fail("the prompt encodes to no tokens");
    check_position_limit(model.config(), options->model, static_cast<int64_t>(tokens.size()) + options->new_tokens,
                         fmt::format("a prompt of {} tokens + --tokens {}", tokens.size(), options->new_tokens));
    const QuantConfig applied = apply_quantization(model, quant, options->quant.calibration_tokens(*tokenizer)).applied;
    if (applied.quantizes_weights() || applied.quantizes_activations())  // stdout keeps the text alone
      fmt::print(stderr, "setting {} (engine {})\n", applied.describe(), applied.engine);
    GenerationOptions generation;
    generation.new_tokens = options->new_tokens;
    generation.temperature = options->temperature;
    generation.seed = options->seed;
    generation.eos_id = tokenizer->eos_id();
    const std::vector<int32_t> generated = generate_tokens(model, tokens, generation);
    fmt::print("{}{}\n", options->prompt, tokenizer->decode(generated, true));
    if (options->ids) fmt::print("ids: {}\n", fmt::join(generated, " "));
  });
}

}  // namespace cq::cli
