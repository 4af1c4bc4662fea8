// `cq ppl`: perplexity under the protocol of SPEC.md, optionally quantized.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/output_paths.h"
#include "cli/run_options.h"
#include "ptq/apply_quantization.h"
#include "ptq/quantized_checkpoint.h"
#include "eval/perplexity.h"
#include "eval/ppl_datasets.h"
#include "model/position_limit.h"
#include "model/transformer.h"
#include "ptq/kernel_report.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq::cli {

void add_ppl_command(CLI::App& app) {
  struct Options {
    std::string model, text, json, dataset, data;
    int64_t seqlen = 0, max_windows = 0, batch = 1;
    QuantOptions quant;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("ppl", "perplexity of a text file (non-overlapping windows)");
  command->add_option("--model", options->model, "Hugging Face model directory")->required();
  auto* text_option = command->add_option("--text", options->text, "text file, tokenized as a whole");
  auto* dataset_option =
      command->add_option("--dataset", options->dataset,
                          "build the papers' evaluation string from --data: wikitext2 (wiki.test.raw or HF rows "
                          "JSONL, rows joined with \"\\n\\n\") | c4 (validation JSONL, first 1100 docs joined "
                          "with ' ', 256 windows)")
          ->check(CLI::IsMember({"wikitext2", "c4"}));
  auto* data_option = command->add_option("--data", options->data, "dataset file for --dataset");
  text_option->excludes(dataset_option);
  dataset_option->needs(data_option);
  data_option->needs(dataset_option);
  command->add_option("--seqlen", options->seqlen, "window length in tokens (default: min(2048, max positions))")
      ->check(positive_count());
  command->add_option("--max-windows", options->max_windows, "evaluate at most this many windows (default: all)")
      ->check(positive_count());
  command->add_option("--batch", options->batch, "windows per forward pass")->check(positive_count())->capture_default_str();
  command->add_option("--json", options->json, "write the result as JSON to this file ('-' for stdout)");
  add_quant_options(*command, options->quant);
  add_run_options(*command);
  command->callback([options, text_option, dataset_option] {
    if (!text_option->count() && !dataset_option->count()) fail("give --text FILE or --dataset wikitext2|c4 --data FILE");
    const QuantConfig quant = options->quant.resolve();
    check_output_file("--json", options->json);
    Transformer model = load_model(options->model);
    check_position_limit(model.config(), options->model, options->seqlen, fmt::format("--seqlen {}", options->seqlen));
    const auto tokenizer = load_tokenizer(options->model);
    const std::string text = options->dataset == "wikitext2" ? wikitext2_eval_string(options->data)
                             : options->dataset == "c4"      ? c4_eval_string(options->data)
                                                             : read_text_file(options->text);
    const std::vector<int32_t> tokens = tokenizer->encode(text, true);
    const QuantConfig applied = apply_quantization(model, quant, options->quant.calibration_tokens(*tokenizer)).applied;
    PerplexityOptions ppl_options;
    ppl_options.seqlen = options->seqlen > 0 ? options->seqlen : std::min<int64_t>(2048, model.config().max_position_embeddings);
    ppl_options.max_windows = options->max_windows;
    // c4-new: valenc[:, :256 * seqlen], i.e. at most 256 windows.
    if (options->dataset == "c4" && (ppl_options.max_windows <= 0 || ppl_options.max_windows > kC4Windows))
      ppl_options.max_windows = kC4Windows;
    ppl_options.batch = options->batch;
    const PerplexityResult result = evaluate_perplexity(model, tokens, ppl_options);
    const KernelStats kernel = model.total_kernel_stats();
    fmt::print("perplexity: {:.4f}\n", result.perplexity);
    fmt::print(stderr, "{} | {} windows x {} tokens | {:.0f} tokens/s{}\n", applied.describe(), result.windows,
               ppl_options.seqlen, static_cast<double>(result.windows * ppl_options.seqlen) / result.seconds,
               applied.quantizes_activations() ? fmt::format(" | kernel {:.3f} %", 100 * kernel.kernel_fraction()) : "");
    if (!options->json.empty()) {
      nlohmann::json json = {{"model", options->model},
                             {"text", options->text},
                             {"dataset", options->dataset},
                             {"data", options->data},
                             {"tokens", result.tokens_total},
                             {"seqlen", ppl_options.seqlen},
                             {"windows", result.windows},
                             {"perplexity", result.perplexity},
                             {"mean_nll", result.mean_nll},
                             {"window_nll", result.window_nll},
                             {"seconds", result.seconds},
                             {"quantization", applied.to_json()}};
      if (applied.quantizes_activations()) json["kernel"] = kernel_report_json(model);
      write_output(options->json, json.dump(2) + "\n");
    }
  });
}

}  // namespace cq::cli
