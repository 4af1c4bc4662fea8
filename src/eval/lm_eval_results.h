#pragma once
// `cq eval --json` in lm-evaluation-harness v0.4's results layout (docs/EVAL.md "JSON"), so
// scripts and leaderboards that read lm-eval's results files read ours: results (per task
// and group: alias, "<metric>,none", "<metric>_stderr,none"), groups, group_subtasks,
// configs, versions, n-shot, higher_is_better, n-samples and config. What only cq knows
// (quantization, engine, data files, timings, per-request scores) is under "crossquant".
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/harness.h"
#include "eval/task.h"

namespace cq {

// tasks[i] is the task results[i] scored. `config` becomes the top-level "config" (lm-eval's
// model and run settings); `crossquant` is extended with per-task extras (docs, seconds,
// engine counts, files, and every request's scores when with_requests).
nlohmann::ordered_json lm_eval_results(const std::vector<TaskResult>& results, const std::vector<Task>& tasks,
                                       nlohmann::ordered_json config, nlohmann::ordered_json crossquant,
                                       bool with_requests);

// lm-eval's task configuration of a leaf task (a task name, or mmlu_<subject>) as its YAML
// defines it, with the few-shot count that ran.
nlohmann::ordered_json lm_eval_task_config(const std::string& leaf, int64_t num_fewshot);

}  // namespace cq
