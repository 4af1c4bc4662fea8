// `cq eval`: lm-evaluation-harness v0.4.x zero-shot tasks and MMLU 5-shot (docs/EVAL.md),
// optionally quantized.
#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "cli/options.h"
#include "eval/harness.h"
#include "eval/loglikelihood.h"
#include "eval/task.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace cq::cli {

namespace {

std::vector<std::string> split_tasks(const std::string& list) {
  std::vector<std::string> names;
  std::stringstream stream(list);
  std::string name;
  while (std::getline(stream, name, ','))
    if (!name.empty()) names.push_back(name);
  if (names.empty()) fail("--tasks: no task named");
  return names;
}

// Activation quantizers whose scales depend on other tokens of the window (dynamic
// CrossQuant's column maxima, per-tensor, remove-kernel's threshold) would see the context
// and every choice together in a shared tree, so those settings pack each request as a
// sequence of its own: the same numbers as one forward per request.
bool activations_are_per_row(const QuantConfig& config) {
  return !config.quantizes_activations() || config.activation_method == "per-token" || config.static_columns ||
         config.static_tensor_scale;
}

}  // namespace

void add_eval_command(CLI::App& app) {
  struct Options {
    std::string model, tasks, data_dir, json;
    int64_t limit = 0, max_length = 0;
    std::string scoring = "packed";
    int64_t packed_tokens = LoglikelihoodOptions{}.packed_tokens;
    bool add_bos = false, all_subjects = false, requests = false;
    QuantOptions quant;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("eval", "zero-shot / few-shot accuracy as lm-evaluation-harness v0.4.x scores it");
  command->add_option("--model", options->model, "Hugging Face model directory")->required();
  command->add_option("--tasks", options->tasks,
                      "comma-separated: lambada_openai,arc_easy,arc_challenge,piqa,hellaswag,boolq,mmlu")
      ->required();
  command->add_option("--data-dir", options->data_dir, "directory with one folder per task (original files or HF JSONL)")
      ->required();
  command->add_option("--limit", options->limit, "evaluate the first N documents of each task (MMLU: of each subject)");
  command->add_flag("--add-bos", options->add_bos, "prepend BOS to every encoding (newer lm-eval; default: v0.4.x, none)");
  command->add_option("--max-length", options->max_length, "window in tokens (default: the model's max positions)");
  command->add_option("--scoring", options->scoring,
                      "packed: questions packed into forward passes, each context run once (tree attention); "
                      "per-request: one full forward per request")
      ->check(CLI::IsMember({"packed", "per-request"}))
      ->capture_default_str();
  command->add_option("--packed-tokens", options->packed_tokens, "packed: token positions per forward pass")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_flag("--all-subjects", options->all_subjects, "list every MMLU subject in the table");
  command->add_option("--json", options->json, "write metrics and configuration as JSON ('-' for stdout)");
  command->add_flag("--requests", options->requests, "include every request's log-likelihood in the JSON");
  add_quant_options(*command, options->quant);
  command->callback([options] {
    const QuantConfig quant = options->quant.resolve();
    const std::vector<std::string> names = split_tasks(options->tasks);
    std::vector<Task> tasks;
    for (const auto& name : names) tasks.push_back(load_task(name, options->data_dir, options->limit));
    Transformer model(options->model);
    const auto tokenizer = load_tokenizer(options->model);
    apply_quantization(model, quant, options->quant.calibration_tokens(*tokenizer));
    LoglikelihoodOptions engine_options;
    engine_options.add_bos = options->add_bos;
    engine_options.max_length = options->max_length;
    engine_options.mode = options->scoring == "packed" ? ScoringMode::Packed : ScoringMode::PerRequest;
    engine_options.packed_tokens = options->packed_tokens;
    engine_options.share_context = activations_are_per_row(quant);
    LoglikelihoodEngine engine(model, *tokenizer, engine_options);

    std::vector<TaskResult> results;
    for (const Task& task : tasks) results.push_back(run_task(engine, task));
    fmt::print("{} | {} | add_bos={} | max_length={}{}\n", options->model, quant.describe(), options->add_bos,
               engine.options().max_length, options->limit > 0 ? fmt::format(" | limit={}", options->limit) : "");
    fmt::print("{}", format_results_table(results, options->all_subjects));
    for (const auto& result : results)
      fmt::print(stderr, "{}: {} docs, {} requests, {} forward passes, {:.1f} s ({:.1f} requests/s)\n", result.task,
                 result.docs, result.stats.requests, result.stats.forward_calls, result.seconds,
                 static_cast<double>(result.stats.requests) / std::max(result.seconds, 1e-9));
    if (!options->json.empty()) {
      nlohmann::json json = {{"model", options->model},
                             {"data_dir", options->data_dir},
                             {"protocol", "lm-evaluation-harness v0.4.x"},
                             {"config",
                              {{"add_bos", options->add_bos},
                               {"max_length", engine.options().max_length},
                               {"limit", options->limit},
                               {"scoring", options->scoring},
                               {"packed_tokens", engine.options().packed_tokens},
                               {"share_context", engine.options().share_context},
                               {"num_fewshot", {{"mmlu", 5}}}}},
                             {"quantization", quant.to_json()}};
      nlohmann::json task_json = nlohmann::json::object();
      for (size_t i = 0; i < results.size(); ++i) {
        task_json[results[i].task] = results_json(results[i], options->requests);
        nlohmann::json sources = nlohmann::json::array();
        for (const auto& source : tasks[i].sources) sources.push_back(source.string());
        task_json[results[i].task]["sources"] = sources;
      }
      json["results"] = task_json;
      write_output(options->json, json.dump(2) + "\n");
    }
  });
}

}  // namespace cq::cli
