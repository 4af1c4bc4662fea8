// `cq eval`: lm-evaluation-harness v0.4.x zero-shot tasks and MMLU 5-shot (docs/EVAL.md),
// optionally quantized; with --compare, several configurations in one table (the paper's
// zero-shot table layout).
#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/output_paths.h"
#include "cli/run_options.h"
#include "ptq/apply_quantization.h"
#include "ptq/quantized_checkpoint.h"
#include "eval/harness.h"
#include "eval/lm_eval_results.h"
#include "eval/loglikelihood.h"
#include "eval/share_context.h"
#include "eval/task.h"
#include "model/transformer.h"
#include "quant/method_table.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace cq::cli {

namespace {

std::vector<std::string> split_list(const std::string& list, const char* flag) {
  std::vector<std::string> names;
  std::stringstream stream(list);
  std::string name;
  while (std::getline(stream, name, ','))
    if (!name.empty()) names.push_back(name);
  if (names.empty()) fail("{}: nothing named", flag);
  return names;
}

// A --compare name as quantization flags: "fp32", or <scheme>-<activation> such as
// w8a8-per-token, w8a8-crossquant, w4a8-g128-crossquant.
std::vector<std::string> comparison_flags(const std::string& name) {
  if (name == "fp32") return {"--scheme", "w16a16"};
  for (const QuantMethod& method : quant_methods()) {
    if (!method.quantizes_activations) continue;
    const std::string activation(method.name);
    const std::string suffix = "-" + activation;
    if (name.size() > suffix.size() && name.ends_with(suffix))
      return {"--scheme", name.substr(0, name.size() - suffix.size()), "--act-quant", activation};
  }
  fail("--compare: '{}' is not fp32 or <scheme>-<activation> (e.g. w8a8-per-token, w8a8-crossquant)", name);
}

struct EvalOptions {
  std::string model, tasks, data_dir, json, compare;
  int64_t limit = 0, max_length = 0;
  int64_t num_fewshot = -1;  // -1: each task's default (0; MMLU 5)
  std::string scoring = "packed";
  int64_t packed_tokens = LoglikelihoodOptions{}.packed_tokens;
  bool add_bos = false, all_subjects = false, requests = false;
  QuantOptions quant;
};

struct ConfigurationRun {
  ConfigurationRun(std::string configuration, QuantConfig config) : name(std::move(configuration)), quant(std::move(config)) {}
  std::string name;
  QuantConfig quant;
  LoglikelihoodOptions engine;
  std::vector<TaskResult> results;
};

// Loads the model afresh (memory-mapped: cheap), quantizes it as `run.quant` says and scores
// every task, printing lm-eval's table.
void run_configuration(const EvalOptions& options, const std::vector<Task>& tasks, const Tokenizer& tokenizer,
                       ConfigurationRun& run) {
  Transformer model = load_model(options.model);
  // The setting that runs: on a quantized checkpoint, the stored one (activation flags may override it).
  run.quant = apply_quantization(model, run.quant, options.quant.calibration_tokens(tokenizer)).applied;
  run.engine.add_bos = options.add_bos;
  run.engine.max_length = options.max_length;
  run.engine.mode = options.scoring == "packed" ? ScoringMode::Packed : ScoringMode::PerRequest;
  run.engine.packed_tokens = options.packed_tokens;
  run.engine.share_context = activations_are_per_row(run.quant);
  LoglikelihoodEngine engine(model, tokenizer, run.engine);
  run.engine = engine.options();
  for (const Task& task : tasks) run.results.push_back(run_task(engine, task));
  fmt::print("{} | {} | add_bos={} | max_length={}{}{}\n", options.model, run.quant.describe(), options.add_bos,
             run.engine.max_length, options.limit > 0 ? fmt::format(" | limit={}", options.limit) : "",
             options.num_fewshot >= 0 ? fmt::format(" | num_fewshot={}", options.num_fewshot) : "");
  fmt::print("{}", format_results_table(run.results, options.all_subjects));
  for (const auto& result : run.results)
    fmt::print(stderr, "{}: {} docs, {} requests, {} forward passes, {:.1f} s ({:.1f} requests/s)\n", result.task,
               result.docs, result.stats.requests, result.stats.forward_calls, result.seconds,
               static_cast<double>(result.stats.requests) / std::max(result.seconds, 1e-9));
}

// One configuration's results as lm-evaluation-harness v0.4 writes them (docs/EVAL.md "JSON").
nlohmann::ordered_json lm_eval_json(const EvalOptions& options, const ConfigurationRun& run,
                                    const std::vector<Task>& tasks) {
  const LoglikelihoodOptions& engine = run.engine;
  nlohmann::ordered_json config = {
      {"model", "crossquant"},
      {"model_args", fmt::format("pretrained={},add_bos={},max_length={},scoring={}", options.model, options.add_bos,
                                 engine.max_length, options.scoring)},
      {"model_name", options.model},
      {"batch_size", nullptr},
      {"batch_sizes", nlohmann::ordered_json::array()},
      {"device", "cpu"},
      {"use_cache", nullptr},
      {"limit", options.limit > 0 ? nlohmann::ordered_json(options.limit) : nlohmann::ordered_json(nullptr)},
      {"bootstrap_iters", nullptr},  // perplexity's stderr is not bootstrapped: "N/A"
      {"gen_kwargs", nullptr},
      {"random_seed", nullptr},
      {"numpy_seed", nullptr},
      {"torch_seed", nullptr},
      {"fewshot_seed", 1234}};
  nlohmann::ordered_json crossquant = {{"protocol", "lm-evaluation-harness v0.4.x"},
                                       {"model", options.model},
                                       {"data_dir", options.data_dir}};
  if (!run.name.empty()) crossquant["configuration"] = run.name;
  crossquant["description"] = run.quant.describe();
  crossquant["quantization"] = nlohmann::ordered_json(run.quant.to_json());
  crossquant["engine"] = {{"add_bos", options.add_bos},
                          {"max_length", engine.max_length},
                          {"limit", options.limit},
                          {"scoring", options.scoring},
                          {"packed_tokens", engine.packed_tokens},
                          {"share_context", engine.share_context}};
  return lm_eval_results(run.results, tasks, std::move(config), std::move(crossquant), options.requests);
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto options = std::make_shared<EvalOptions>();
  auto* command = app.add_subcommand("eval", "zero-shot / few-shot accuracy as lm-evaluation-harness v0.4.x scores it");
  command->add_option("--model", options->model, "Hugging Face model directory")->required();
  command->add_option("--tasks", options->tasks,
                      "comma-separated: lambada_openai,arc_easy,arc_challenge,piqa,hellaswag,boolq,mmlu")
      ->required();
  command->add_option("--data-dir", options->data_dir, "directory with one folder per task (original files or HF JSONL)")
      ->required();
  command->add_option("--limit", options->limit, "evaluate the first N documents of each task (MMLU: of each subject)")
      ->check(positive_count());
  command->add_option("--num-fewshot", options->num_fewshot,
                      "few-shot examples per context, drawn as lm-eval v0.4 draws them (seed 1234) from each task's "
                      "few-shot split (docs/EVAL.md); default 0, MMLU 5 (the first dev rows)");
  command->add_flag("--add-bos", options->add_bos, "prepend BOS to every encoding (newer lm-eval; default: v0.4.x, none)");
  command->add_option("--max-length", options->max_length, "window in tokens (default: the model's max positions)")
      ->check(positive_count());
  command->add_option("--scoring", options->scoring,
                      "packed: questions packed into forward passes, each context run once (tree attention); "
                      "per-request: one full forward per request")
      ->check(CLI::IsMember({"packed", "per-request"}))
      ->capture_default_str();
  command->add_option("--packed-tokens", options->packed_tokens, "packed: token positions per forward pass")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("--compare", options->compare,
                      "configurations to run one after the other and report as one table (rows: configurations, "
                      "columns: tasks and their average): fp32 and <scheme>-<activation>, e.g. "
                      "fp32,w8a8-per-token,w8a8-crossquant; the other quantization flags apply to every quantized row");
  command->add_flag("--all-subjects", options->all_subjects, "list every MMLU subject in the table");
  command->add_option("--json", options->json, "write metrics and configuration as JSON ('-' for stdout)");
  command->add_flag("--requests", options->requests, "include every request's log-likelihood in the JSON");
  add_quant_options(*command, options->quant);
  add_run_options(*command);
  command->callback([options, command] {
    std::vector<ConfigurationRun> runs;
    if (options->compare.empty()) {
      runs.emplace_back("", options->quant.resolve());
    } else {
      for (const char* flag : {"--scheme", "--act-quant"})
        if (command->get_option(flag)->count()) fail("eval: {} is set by each --compare configuration; drop it", flag);
      const std::vector<std::string> base = given_quant_arguments(*command, {});
      // Resolve every configuration before the first run, so a bad name fails fast.
      for (const std::string& name : split_list(options->compare, "--compare")) {
        std::vector<std::string> arguments = comparison_flags(name);
        if (name != "fp32") arguments.insert(arguments.begin(), base.begin(), base.end());
        runs.emplace_back(name, resolve_configuration(arguments, "--compare " + name));
      }
      std::vector<QuantConfig> quantized;  // the rows the other flags apply to
      for (const auto& run : runs)
        if (run.name != "fp32") quantized.push_back(run.quant);
      require_flags_take_effect_somewhere(options->quant.given_flags(), quantized);
    }
    check_output_file("--json", options->json);
    const std::vector<std::string> task_list = split_list(options->tasks, "--tasks");
    if (command->get_option("--num-fewshot")->count()) {
      if (options->num_fewshot < 0) fail("--num-fewshot {} is negative", options->num_fewshot);
      bool changes = false;
      for (const auto& name : task_list) changes |= options->num_fewshot != (name == "mmlu" ? 5 : 0);
      if (!changes)
        fail("--num-fewshot {} changes nothing: it is the default of every task in --tasks (0; mmlu 5)",
             options->num_fewshot);
    }
    std::vector<Task> tasks;
    for (const auto& name : task_list)
      tasks.push_back(load_task(name, options->data_dir, options->limit, options->num_fewshot));
    const auto tokenizer = load_tokenizer(options->model);
    for (size_t i = 0; i < runs.size(); ++i) {
      if (runs.size() > 1 && !quiet()) fmt::print(stderr, "[{}/{}] {}: {}\n", i + 1, runs.size(), runs[i].name, runs[i].quant.describe());
      run_configuration(*options, tasks, *tokenizer, runs[i]);
    }
    std::vector<ComparisonRow> comparison;
    if (runs.size() > 1 || !options->compare.empty()) {
      for (const auto& run : runs) comparison.push_back({run.name, run.quant.describe(), run.results});
      fmt::print("\n{}", format_comparison_table(comparison));
    }
    if (options->json.empty()) return;
    nlohmann::ordered_json json;
    if (comparison.empty()) {
      json = lm_eval_json(*options, runs.front(), tasks);
    } else {
      // The table, then one complete lm-eval results object per configuration.
      json["comparison"] = nlohmann::ordered_json(comparison_json(comparison));
      json["configurations"] = nlohmann::ordered_json::array();
      for (const auto& run : runs) json["configurations"].push_back(lm_eval_json(*options, run, tasks));
    }
    write_output(options->json, json.dump(2) + "\n");
  });
}

}  // namespace cq::cli
