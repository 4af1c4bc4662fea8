// `cq demo` (what `make run` runs): on a generated OPT model whose activations carry a few
// massive outlier channels, compares FP32, W8A8 per-token, W8A8 CrossQuant and CrossQuant after a
// Hadamard rotation (QuaRot-style, ptq/rotation.h): kernel
// proportion and agreement with the FP32 next-token distribution.
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/output_paths.h"
#include "cli/run_options.h"
#include "eval/agreement.h"
#include "model/synthetic.h"
#include "model/transformer.h"
#include "ptq/apply_quantization.h"
#include "quant/quant_config.h"

namespace cq::cli {

void add_demo_command(CLI::App& app) {
  struct Options {
    std::string dir = "build/demo-model", json;
    int64_t windows = 8, seqlen = 512;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("demo", "per-token vs CrossQuant on a generated model with outlier channels");
  command->add_option("--dir", options->dir, "where to write the generated model")->capture_default_str();
  command->add_option("--windows", options->windows, "sequences to evaluate")->check(positive_count())->capture_default_str();
  command->add_option("--seqlen", options->seqlen, "tokens per sequence")->check(positive_count())->capture_default_str();
  command->add_option("--json", options->json, "write the results as JSON");
  add_threads_option(*command);
  command->callback([options] {
    check_output_file("--json", options->json);
    if (!std::filesystem::exists(std::filesystem::path(options->dir) / "config.json")) {
      check_output_directory("--dir", options->dir);
      fmt::print(stderr, "generating the demo model (opt-outliers) in {}\n", options->dir);
      write_synthetic_model("opt-outliers", options->dir);
    }
    Transformer reference(options->dir);
    const std::vector<int32_t> tokens = random_tokens(reference.config().vocab_size, options->windows * options->seqlen, 2024);
    const std::vector<float> reference_logits = run_logits(reference, tokens, options->windows, options->seqlen);

    struct Setting {
      const char* label;
      QuantConfig config;
    };
    std::vector<Setting> settings(4);
    settings[0].label = "FP32";
    settings[1].label = "W8A8 per-token";
    settings[1].config.apply_scheme("w8a8");
    settings[1].config.activation_method = "per-token";
    settings[2].label = "W8A8 CrossQuant (α=0.15)";
    settings[2].config.apply_scheme("w8a8");
    settings[2].config.activation_method = "crossquant";
    settings[2].config.alpha = 0.15;
    settings[3].label = "W8A8 Hadamard + CrossQuant";  // QuaRot-style rotation, then CrossQuant (α=0.15)
    settings[3].config = settings[2].config;
    settings[3].config.rotation = "hadamard";

    fmt::print("demo model: {} (OPT, {} layers, hidden {}, outlier channels 40x-100x), {} sequences x {} tokens\n\n",
               options->dir, reference.config().num_layers, reference.config().hidden_size, options->windows, options->seqlen);
    fmt::print("{:<28} {:>10} {:>14} {:>12} {:>10}\n", "setting", "kernel %", "mean KL (nats)", "top-1 agree", "ppl");
    nlohmann::json results = nlohmann::json::array();
    for (const Setting& setting : settings) {
      Transformer model(options->dir);
      apply_quantization(model, setting.config);
      const std::vector<float> logits = run_logits(model, tokens, options->windows, options->seqlen);
      const Agreement agreement = compare_distributions(reference_logits, logits, model.config().vocab_size);
      const double ppl = perplexity_of_logits(logits, tokens, options->windows, options->seqlen, model.config().vocab_size);
      const double kernel = model.total_kernel_stats().kernel_fraction();
      fmt::print("{:<28} {:>10} {:>14.6f} {:>11.2f}% {:>10.3f}\n", setting.label,
                 setting.config.quantizes_activations() ? fmt::format("{:.2f}", 100 * kernel) : "-", agreement.mean_kl,
                 100 * agreement.top1_agreement, ppl);
      results.push_back({{"setting", setting.label}, {"quantization", setting.config.to_json()}, {"kernel_fraction", kernel},
                         {"mean_kl", agreement.mean_kl}, {"top1_agreement", agreement.top1_agreement},
                         {"positions", agreement.positions}, {"perplexity", ppl}});
    }
    fmt::print("\nkernel = share of linear-layer input activations quantized to zero (SPEC.md).\n");
    if (!options->json.empty()) write_output(options->json, nlohmann::json{{"results", results}}.dump(2) + "\n");
  });
}

}  // namespace cq::cli
