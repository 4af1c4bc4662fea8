// `cq kernel`: the quantization kernel per linear layer and in total (the paper's Table 1
// columns), for one setting or several CrossQuant α in one run.
#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/output_paths.h"
#include "cli/run_options.h"
#include "ptq/apply_quantization.h"
#include "ptq/quantized_checkpoint.h"
#include "eval/perplexity.h"
#include "model/position_limit.h"
#include "model/transformer.h"
#include "ptq/kernel_report.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq::cli {

namespace {
std::vector<double> parse_alphas(const std::string& text) {
  std::vector<double> alphas;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    try {
      size_t used = 0;
      const double alpha = std::stod(item, &used);
      if (used != item.size() || !(alpha >= 0 && alpha <= 1)) throw std::invalid_argument(item);
      alphas.push_back(alpha);
    } catch (const std::exception&) {
      fail("--alphas: '{}' is not a number in [0, 1]", item);
    }
  }
  if (alphas.empty()) fail("--alphas is empty");
  return alphas;
}
}  // namespace

void add_kernel_command(CLI::App& app) {
  struct Options {
    std::string model, text, json, csv, alphas;
    int64_t seqlen = 0, max_windows = 0;
    QuantOptions quant;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("kernel", "measure the quantization kernel (share of activations rounded to zero)");
  command->add_option("--model", options->model, "Hugging Face model directory")->required();
  command->add_option("--text", options->text, "text file")->required();
  command->add_option("--seqlen", options->seqlen, "window length (default: min(2048, max positions))")->check(positive_count());
  command->add_option("--max-windows", options->max_windows, "at most this many windows (default: all)")->check(positive_count());
  command->add_option("--alphas", options->alphas, "compare several CrossQuant α, e.g. 0.15,0.45,0.75,1");
  command->add_option("--json", options->json, "write per-layer statistics as JSON");
  command->add_option("--csv", options->csv, "write per-layer statistics as CSV");
  add_quant_options(*command, options->quant);
  add_run_options(*command);
  command->callback([options] {
    QuantConfig base = options->quant.resolve(/*check_effects=*/false);
    if (!base.quantizes_activations()) base.activation_bits = 8;  // a kernel needs quantized activations
    const GivenFlags given = options->quant.given_flags();
    if (!options->alphas.empty())  // every row is CrossQuant at one α of the list
      for (const char* flag : {"--alpha", "--act-quant"})
        if (given.count(flag)) fail("{} has no effect with --alphas (each row is CrossQuant at one α of the list)", flag);
    require_flags_take_effect(given, base);
    check_output_file("--json", options->json);
    check_output_file("--csv", options->csv);
    std::vector<QuantConfig> configs;
    if (options->alphas.empty()) {
      configs.push_back(base);
    } else {
      for (double alpha : parse_alphas(options->alphas)) {
        QuantConfig c = base;
        c.activation_method = "crossquant";
        c.alpha = alpha;
        configs.push_back(c);
      }
    }
    const auto tokenizer = load_tokenizer(options->model);
    const std::vector<int32_t> tokens = tokenizer->encode(read_text_file(options->text), true);
    const std::vector<int32_t> calibration_tokens = options->quant.calibration_tokens(*tokenizer);
    nlohmann::json results = nlohmann::json::array();
    std::string csv = "setting,layer,elements,kernel,kernel_fraction,exact_zeros,column_max_ge_row_max_fraction,bound_below_per_token_fraction\n";
    std::string summary = fmt::format("{:<44} {:>9} {:>9} {:>9} {:>9} {:>10}\n", "setting", "kernel %", "zeros %",
                                      "c>=t %", "B~<B %", "ppl");
    for (const QuantConfig& config : configs) {
      Transformer model = load_model(options->model);
      check_position_limit(model.config(), options->model, options->seqlen, fmt::format("--seqlen {}", options->seqlen));
      const QuantConfig applied = apply_quantization(model, config, calibration_tokens).applied;
      PerplexityOptions ppl;
      ppl.seqlen = options->seqlen > 0 ? options->seqlen : std::min<int64_t>(2048, model.config().max_position_embeddings);
      ppl.max_windows = options->max_windows;
      ppl.progress_label = configs.size() > 1 ? fmt::format("kernel α={}", config.alpha) : "kernel";
      const PerplexityResult result = evaluate_perplexity(model, tokens, ppl);
      const KernelStats total = model.total_kernel_stats();
      if (configs.size() == 1) fmt::print("{}\n", kernel_report_table(model));
      summary += fmt::format("{:<44} {:>9.3f} {:>9.3f} {:>9.3f} {:>9.3f} {:>10.4f}\n", applied.describe(),
                             100 * total.kernel_fraction(), 100 * KernelStats::share(total.exact_zeros, total.elements),
                             100 * KernelStats::share(total.column_max_ge_row_max, total.elements),
                             100 * KernelStats::share(total.bound_below_per_token, total.elements), result.perplexity);
      nlohmann::json entry = kernel_report_json(model);
      entry["quantization"] = applied.to_json();
      entry["perplexity"] = result.perplexity;
      entry["windows"] = result.windows;
      entry["seqlen"] = ppl.seqlen;
      results.push_back(std::move(entry));
      csv += kernel_report_csv(model, applied.describe());
    }
    fmt::print("{}", summary);
    if (!options->json.empty())
      write_output(options->json, nlohmann::json{{"model", options->model}, {"text", options->text}, {"results", results}}.dump(2) + "\n");
    if (!options->csv.empty()) write_output(options->csv, csv);
  });
}

}  // namespace cq::cli
