#include "eval/lm_eval_results.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace cq {

namespace {

using ojson = nlohmann::ordered_json;

const char* const kMmluCategories[] = {"humanities", "other", "social_sciences", "stem"};

bool is_mmlu_category(const std::string& name) {
  for (const char* category : kMmluCategories)
    if (name == std::string("mmlu_") + category) return true;
  return false;
}

ojson stderr_json(double value) { return std::isnan(value) ? ojson("N/A") : ojson(value); }

// One results entry: alias, then each metric and its standard error ("N/A" where lm-eval
// has none: perplexity without bootstrap, a single document).
ojson metric_entry(const std::string& alias, const std::vector<const MetricRow*>& rows, bool alias_last) {
  ojson entry = ojson::object();
  if (!alias_last) entry["alias"] = alias;
  for (const MetricRow* row : rows) {
    entry[row->metric + ",none"] = row->value;
    entry[row->metric + "_stderr,none"] = stderr_json(row->stderr_value);
  }
  if (alias_last) entry["alias"] = alias;
  return entry;
}

ojson higher_is_better(const std::vector<const MetricRow*>& rows) {
  ojson out = ojson::object();
  for (const MetricRow* row : rows) out[row->metric] = row->metric != "perplexity";
  return out;
}

std::string pretty_subject(std::string subject) {
  std::replace(subject.begin(), subject.end(), '_', ' ');
  return subject;
}

}  // namespace

ojson lm_eval_task_config(const std::string& leaf, int64_t num_fewshot) {
  ojson config = ojson::object();
  config["task"] = leaf;
  const bool mmlu = leaf.rfind("mmlu_", 0) == 0;
  const bool arc = leaf == "arc_easy" || leaf == "arc_challenge";
  ojson metrics = ojson::array();
  const auto metric = [&](const char* name, const char* aggregation, bool higher) {
    metrics.push_back({{"metric", name}, {"aggregation", aggregation}, {"higher_is_better", higher}});
  };
  double version = 1.0;
  if (leaf == "lambada_openai") {
    config["tag"] = {"lambada"};
    config["dataset_path"] = "EleutherAI/lambada_openai";
    config["dataset_name"] = "default";
    config["test_split"] = "test";
    config["output_type"] = "loglikelihood";
    config["doc_to_text"] = "{{text.split(' ')[:-1]|join(' ')}}";
    config["doc_to_target"] = "{{' '+text.split(' ')[-1]}}";
    metric("perplexity", "perplexity", false);
    metric("acc", "mean", true);
  } else if (arc) {
    config["tag"] = {"ai2_arc"};
    config["dataset_path"] = "allenai/ai2_arc";
    config["dataset_name"] = leaf == "arc_easy" ? "ARC-Easy" : "ARC-Challenge";
    config["training_split"] = "train";
    config["validation_split"] = "validation";
    config["test_split"] = "test";
    config["output_type"] = "multiple_choice";
    config["doc_to_text"] = "Question: {{question}}\nAnswer:";
    config["doc_to_target"] = "{{choices.label.index(answerKey)}}";
    config["doc_to_choice"] = "{{choices.text}}";
    metric("acc", "mean", true);
    metric("acc_norm", "mean", true);
  } else if (leaf == "piqa") {
    config["dataset_path"] = "baber/piqa";
    config["training_split"] = "train";
    config["validation_split"] = "validation";
    config["output_type"] = "multiple_choice";
    config["doc_to_text"] = "Question: {{goal}}\nAnswer:";
    config["doc_to_target"] = "label";
    config["doc_to_choice"] = "{{[sol1, sol2]}}";
    metric("acc", "mean", true);
    metric("acc_norm", "mean", true);
  } else if (leaf == "hellaswag") {
    config["tag"] = {"multiple_choice"};
    config["dataset_path"] = "hellaswag";
    config["training_split"] = "train";
    config["validation_split"] = "validation";
    config["output_type"] = "multiple_choice";
    config["process_docs"] = "utils.process_docs";
    config["doc_to_text"] = "{{query}}";
    config["doc_to_target"] = "{{label}}";
    config["doc_to_choice"] = "choices";
    metric("acc", "mean", true);
    metric("acc_norm", "mean", true);
  } else if (leaf == "boolq") {
    config["tag"] = {"super-glue-lm-eval-v1"};
    config["dataset_path"] = "super_glue";
    config["dataset_name"] = "boolq";
    config["training_split"] = "train";
    config["validation_split"] = "validation";
    config["output_type"] = "multiple_choice";
    config["doc_to_text"] = "{{passage}}\nQuestion: {{question}}?\nAnswer:";
    config["doc_to_target"] = "label";
    config["doc_to_choice"] = {"no", "yes"};
    metric("acc", "mean", true);
    version = 2.0;
  } else if (mmlu) {
    const std::string subject = leaf.substr(5);
    config["task_alias"] = subject;
    config["tag"] = "mmlu_" + mmlu_category(subject) + "_tasks";
    config["dataset_path"] = "cais/mmlu";
    config["dataset_name"] = subject;
    config["test_split"] = "test";
    config["fewshot_split"] = "dev";
    config["output_type"] = "multiple_choice";
    config["doc_to_text"] =
        "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:";
    config["doc_to_target"] = "answer";
    config["doc_to_choice"] = {"A", "B", "C", "D"};
    config["description"] = mmlu_description(subject);
    metric("acc", "mean", true);
  }
  if (!config.contains("description")) config["description"] = "";
  config["target_delimiter"] = " ";
  config["fewshot_delimiter"] = "\n\n";
  config["fewshot_config"] = {{"sampler", mmlu ? "first_n" : "default"}};
  config["num_fewshot"] = num_fewshot;
  config["metric_list"] = metrics;
  config["repeats"] = 1;
  config["should_decontaminate"] = false;
  config["metadata"] = {{"version", version}};
  return config;
}

ojson lm_eval_results(const std::vector<TaskResult>& results, const std::vector<Task>& tasks, ojson config,
                      ojson crossquant, bool with_requests) {
  // lm-eval lists tasks sorted by name at each level of the group tree.
  std::vector<size_t> order(results.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return results[a].task < results[b].task; });

  ojson out = ojson::object();
  ojson table = ojson::object(), groups = ojson::object(), group_subtasks = ojson::object(), configs = ojson::object(),
        versions = ojson::object(), n_shot = ojson::object(), better = ojson::object(), n_samples = ojson::object();
  ojson extras = ojson::object();
  for (const size_t i : order) {
    const TaskResult& result = results[i];
    const Task& task = tasks[i];
    std::map<std::string, std::vector<const MetricRow*>> by_task;
    for (const MetricRow& row : result.metrics) by_task[row.task].push_back(&row);
    const auto leaf = [&](const std::string& name, const std::string& alias) {
      const auto& rows = by_task[name];
      table[name] = metric_entry(alias, rows, false);
      configs[name] = lm_eval_task_config(name, task.num_fewshot);
      versions[name] = name == "boolq" ? 2.0 : 1.0;
      n_shot[name] = task.num_fewshot;
      better[name] = higher_is_better(rows);
      const auto original = task.original_docs.find(name);
      n_samples[name] = {{"original", original == task.original_docs.end() ? rows.front()->docs : original->second},
                         {"effective", rows.front()->docs}};
    };
    if (result.task != "mmlu") {
      leaf(result.task, result.task);
      group_subtasks[result.task] = ojson::array();
    } else {
      // The group, its four categories (weight_by_size, pooled stderr), and their subjects.
      table["mmlu"] = metric_entry("mmlu", by_task["mmlu"], true);
      groups["mmlu"] = table["mmlu"];
      ojson categories = ojson::array();
      for (const char* category : kMmluCategories) {
        const std::string name = std::string("mmlu_") + category;
        if (!by_task.count(name)) continue;
        categories.push_back(name);
        table[name] = metric_entry(" - " + pretty_subject(category), by_task[name], false);
        groups[name] = table[name];
        ojson subjects = ojson::array();
        for (const auto& [subject_task, rows] : by_task) {
          if (subject_task.rfind("mmlu_", 0) != 0 || is_mmlu_category(subject_task)) continue;
          if (mmlu_category(subject_task.substr(5)) != category) continue;
          leaf(subject_task, "  - " + subject_task.substr(5));
          subjects.push_back(subject_task);
        }
        group_subtasks[name] = subjects;
        versions[name] = 2;
        better[name] = higher_is_better(by_task[name]);
      }
      group_subtasks["mmlu"] = categories;
      versions["mmlu"] = 2;
      better["mmlu"] = higher_is_better(by_task["mmlu"]);
    }
    ojson extra(results_json(result, with_requests));
    extra.erase("task");
    ojson sources = ojson::array(), fewshot_sources = ojson::array();
    for (const auto& source : task.sources) sources.push_back(source.string());
    for (const auto& source : task.fewshot_sources) fewshot_sources.push_back(source.string());
    extra["sources"] = sources;
    if (!fewshot_sources.empty()) extra["fewshot_sources"] = fewshot_sources;
    extras[result.task] = extra;
  }
  const auto sorted = [](const ojson& object) {
    ojson copy = ojson::object();
    std::vector<std::string> keys;
    for (auto it = object.begin(); it != object.end(); ++it) keys.push_back(it.key());
    std::sort(keys.begin(), keys.end());
    for (const auto& key : keys) copy[key] = object.at(key);
    return copy;
  };
  out["results"] = table;
  if (!groups.empty()) out["groups"] = groups;
  out["group_subtasks"] = group_subtasks;
  out["configs"] = sorted(configs);
  out["versions"] = sorted(versions);
  out["n-shot"] = sorted(n_shot);
  out["higher_is_better"] = sorted(better);
  out["n-samples"] = n_samples;
  out["config"] = std::move(config);
  crossquant["tasks"] = extras;
  out["crossquant"] = std::move(crossquant);
  return out;
}

}  // namespace cq
