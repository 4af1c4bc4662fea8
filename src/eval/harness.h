#pragma once
// Runs a task through the log-likelihood engine and aggregates lm-eval's metrics
// (docs/EVAL.md §0.4): acc, acc_norm (per character), lambada's greedy acc and per-document
// perplexity, MMLU per subject / category / size-weighted overall. Standard errors as
// lm-eval: sample std / sqrt(n) for means, pooled over subtasks for MMLU groups; none for
// perplexity (lm-eval bootstraps it).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/loglikelihood.h"
#include "eval/task.h"

namespace cq {

struct MetricRow {
  std::string task;    // e.g. "hellaswag", "mmlu", "mmlu_stem", "mmlu_abstract_algebra"
  std::string metric;  // acc | acc_norm | perplexity
  double value = 0;
  double stderr_value = NAN;  // NaN: not reported
  int64_t docs = 0;
  int64_t correct = -1;  // for accuracies: number of documents counted as correct
};

struct DocScore {
  std::vector<RequestScore> requests;  // one per choice (one for loglikelihood tasks)
};

struct TaskResult {
  std::string task;
  int64_t docs = 0;
  std::vector<MetricRow> metrics;  // headline rows first; MMLU: overall, categories, subjects
  std::vector<DocScore> scores;
  double seconds = 0;
  EngineStats stats;
};

// Index of the largest value, the lowest index on ties (numpy argmax).
int64_t first_argmax(const std::vector<double>& values);
double mean_stderr(const std::vector<double>& values);  // sample std (n-1) / sqrt(n)
double pooled_stderr(const std::vector<double>& stderrs, const std::vector<int64_t>& sizes);

// Scores every document (a progress bar per task when show_progress).
TaskResult run_task(LoglikelihoodEngine& engine, const Task& task, bool show_progress = true);
// Metrics from given scores (run_task calls it; tests use it on reference scores).
std::vector<MetricRow> task_metrics(const Task& task, const std::vector<DocScore>& scores);

// lm-eval's results table: | Tasks | Metric | Value | Stderr | (MMLU subjects with all_subjects).
std::string format_results_table(const std::vector<TaskResult>& results, bool all_subjects = false);
nlohmann::json results_json(const TaskResult& result, bool with_requests);

// The paper's zero-shot table (FP32 vs W8A8 per-token vs W8A8 CrossQuant, ...): one row per
// configuration, one column per task with its headline metric, and their average.
struct ComparisonRow {
  std::string configuration;        // as named, e.g. "w8a8-per-token"
  std::string description;          // QuantConfig::describe()
  std::vector<TaskResult> results;  // one per task, the same tasks in the same order in every row
};

// The metric a task's column shows: acc_norm for hellaswag and arc_challenge (as quantization
// papers quote them), acc otherwise (lambada_openai: greedy acc; mmlu: overall acc).
std::string headline_metric(const std::string& task);
double headline_value(const TaskResult& result);
double comparison_average(const ComparisonRow& row);  // mean of the row's task columns
// | Configuration | Setting | <task> <metric> ... | Average |, values in percent.
std::string format_comparison_table(const std::vector<ComparisonRow>& rows);
// {"tasks": [{task, metric}], "rows": [{configuration, description, values {task: v}, average}]}
nlohmann::json comparison_json(const std::vector<ComparisonRow>& rows);

}  // namespace cq
