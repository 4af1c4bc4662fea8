// `cq bench`: prompt-processing (prefill) and generation (decode, KV cache) tokens/s of a
// model under a quantization setting and engine (--engine int | fake). Token ids are
// synthetic (fixed pseudo-random ids), so no tokenizer is needed unless --calib is given.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <nlohmann/json.hpp>
#include <omp.h>

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

namespace {

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  struct Options {
    std::string model;
    int64_t prompt_tokens = 512;
    int64_t gen_tokens = 64;
    int repeats = 3;
    bool json = false;
    QuantOptions quant;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("bench", "prompt-processing and generation speed (tokens/s)");
  command->add_option("--model", options->model, "Hugging Face model directory")->required();
  auto* prompt_option = command->add_option("--prompt-tokens", options->prompt_tokens, "prompt length (one prefill forward)")
                            ->check(positive_count())
                            ->capture_default_str();
  auto* gen_option = command->add_option("--gen-tokens", options->gen_tokens, "tokens decoded one at a time after the prompt")
                         ->capture_default_str();
  command->add_option("--repeats", options->repeats, "runs; the median is reported")->check(positive_count())->capture_default_str();
  command->add_flag("--json", options->json, "print one JSON object");
  // Speed commands run the integer kernels by default where they compute the same model.
  options->quant.config.engine = "auto";
  add_quant_options(*command, options->quant);
  add_run_options(*command);
  command->callback([options, prompt_option, gen_option] {
    if (options->prompt_tokens < 1 || options->gen_tokens < 0 || options->repeats < 1)
      fail("--prompt-tokens must be >= 1, --gen-tokens >= 0, --repeats >= 1");
    const QuantConfig quant = options->quant.resolve();
    Transformer model = load_model(options->model);
    // Sizes the user did not give are fitted to the model's positions (the prompt first).
    const int64_t limit = model.config().max_position_embeddings;
    if (options->prompt_tokens + options->gen_tokens > limit) {
      const int64_t asked_prompt = options->prompt_tokens, asked_gen = options->gen_tokens;
      if (!prompt_option->count()) options->prompt_tokens = std::max<int64_t>(1, limit - options->gen_tokens);
      if (!gen_option->count()) options->gen_tokens = std::max<int64_t>(0, limit - options->prompt_tokens);
      if (options->prompt_tokens != asked_prompt || options->gen_tokens != asked_gen)
        fmt::print(stderr, "bench: {} prompt + {} generated tokens, fitted to the model's {} positions "
                   "(--prompt-tokens and --gen-tokens choose)\n", options->prompt_tokens, options->gen_tokens, limit);
    }
    check_position_limit(model.config(), options->model, options->prompt_tokens + options->gen_tokens,
                         fmt::format("--prompt-tokens {} + --gen-tokens {}", options->prompt_tokens, options->gen_tokens));
    std::vector<int32_t> calibration;
    if (!options->quant.calib.empty()) calibration = options->quant.calibration_tokens(*load_tokenizer(options->model));
    const auto setup_start = std::chrono::steady_clock::now();
    const QuantConfig applied = apply_quantization(model, quant, calibration).applied;
    const double setup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - setup_start).count();
    const ModelConfig& config = model.config();
    const int64_t total = options->prompt_tokens + options->gen_tokens;
    std::mt19937 random(1234);
    std::uniform_int_distribution<int32_t> id(3, static_cast<int32_t>(std::min<int64_t>(config.vocab_size - 1, 30000)));
    std::vector<int32_t> prompt(static_cast<size_t>(options->prompt_tokens));
    for (auto& t : prompt) t = id(random);
    std::vector<float> logits(static_cast<size_t>(config.vocab_size));
    std::vector<double> prefill_s, decode_s;
    for (int r = 0; r < options->repeats; ++r) {
      KVCache cache = model.make_cache(1, total);
      auto start = std::chrono::steady_clock::now();
      model.forward(prompt, 1, options->prompt_tokens, logits, &cache, true);
      prefill_s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      start = std::chrono::steady_clock::now();
      for (int64_t g = 0; g < options->gen_tokens; ++g) {
        const auto next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        const std::vector<int32_t> step{next};
        model.forward(step, 1, 1, logits, &cache, true);
      }
      decode_s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    const double prefill = median(prefill_s), decode = median(decode_s);
    const double pp_tps = static_cast<double>(options->prompt_tokens) / prefill;
    const double tg_tps = options->gen_tokens > 0 ? static_cast<double>(options->gen_tokens) / decode : 0.0;
    if (options->json) {
      nlohmann::json out = {{"model", options->model},          {"quantization", applied.to_json()},
                            {"engine", applied.engine},           {"prompt_tokens", options->prompt_tokens},
                            {"gen_tokens", options->gen_tokens}, {"repeats", options->repeats},
                            {"prefill_seconds", prefill},       {"prefill_tokens_per_second", pp_tps},
                            {"decode_seconds", decode},         {"decode_tokens_per_second", tg_tps},
                            {"setup_seconds", setup_s},         {"threads", omp_get_max_threads()}};
      fmt::print("{}\n", out.dump(2));
      return;
    }
    fmt::print("model {}\nsetting {} (engine {})\nsetup (quantize + pack) {:.3f} s\n", options->model, applied.describe(),
               applied.engine, setup_s);
    fmt::print("prompt processing: {} tokens in {:.4f} s = {:.1f} tokens/s (median of {})\n", options->prompt_tokens,
               prefill, pp_tps, options->repeats);
    if (options->gen_tokens > 0)
      fmt::print("generation:        {} tokens in {:.4f} s = {:.2f} tokens/s (median of {})\n", options->gen_tokens,
                 decode, tg_tps, options->repeats);
  });
}

}  // namespace cq::cli
