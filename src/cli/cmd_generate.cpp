// `cq generate`: greedy (temperature 0) or sampled continuation with a KV cache.
#include <fmt/format.h>

#include <cmath>
#include <random>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/run_options.h"
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
    const int64_t vocab = model.config().vocab_size;
    const int64_t capacity = std::min<int64_t>(static_cast<int64_t>(tokens.size()) + options->new_tokens,
                                               model.config().positions == PositionKind::Learned
                                                   ? model.config().max_position_embeddings
                                                   : std::numeric_limits<int32_t>::max());
    KVCache cache = model.make_cache(1, capacity);
    std::vector<float> logits(static_cast<size_t>(vocab));
    std::mt19937_64 random(options->seed);
    std::vector<int32_t> generated;
    std::vector<int32_t> step = tokens;
    while (static_cast<int64_t>(generated.size()) < options->new_tokens && cache.length + static_cast<int64_t>(step.size()) <= capacity) {
      model.forward(step, 1, static_cast<int64_t>(step.size()), logits, &cache, true);
      int32_t next = 0;
      if (options->temperature == 0) {
        next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      } else {
        const float max_logit = *std::max_element(logits.begin(), logits.end());
        std::vector<double> weights(logits.size());
        for (size_t j = 0; j < logits.size(); ++j) weights[j] = std::exp((logits[j] - max_logit) / options->temperature);
        next = static_cast<int32_t>(std::discrete_distribution<size_t>(weights.begin(), weights.end())(random));
      }
      generated.push_back(next);
      if (next == tokenizer->eos_id()) break;
      step = {next};
    }
    fmt::print("{}{}\n", options->prompt, tokenizer->decode(generated, true));
    if (options->ids) fmt::print("ids: {}\n", fmt::join(generated, " "));
  });
}

}  // namespace cq::cli
