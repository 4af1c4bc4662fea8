#include "eval/task.h"

#include <fmt/format.h>

#include <algorithm>

#include "eval/eval_data.h"
#include "util/error.h"

namespace cq {

namespace fs = std::filesystem;

namespace {

// The few-shot split's file: the first of `names` that exists (never a fallback: the only
// *.jsonl of the folder is the evaluated split).
fs::path find_fewshot_file(const fs::path& dir, const std::string& task, int64_t num_fewshot,
                           std::initializer_list<const char*> names) {
  std::string tried;
  for (const char* name : names) {
    if (fs::exists(dir / name)) return dir / name;
    tried += (tried.empty() ? "" : " or ") + (dir / name).string();
  }
  fail("--num-fewshot {}: {} needs its few-shot split (train): {} not found", num_fewshot, task, tried);
}

void keep_first(std::vector<EvalDoc>& docs, int64_t limit) {
  if (limit > 0 && static_cast<int64_t>(docs.size()) > limit) docs.resize(static_cast<size_t>(limit));
}

// piqa's original release pairs X.jsonl with X-labels.lst; the HF export has a "label" field.
fs::path piqa_labels_for(const fs::path& file) {
  const std::string name = file.filename().string();
  const std::string stem = name.substr(0, name.size() - std::string(".jsonl").size());
  const auto dot = stem.find('.');
  const fs::path labels = file.parent_path() / (dot == std::string::npos ? stem + "-labels.lst"
                                                                         : stem.substr(0, dot) + "-labels" + stem.substr(dot) + ".lst");
  return fs::exists(labels) ? labels : fs::path();
}

}  // namespace

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = {"lambada_openai", "arc_easy", "arc_challenge", "piqa",
                                                 "hellaswag",      "boolq",    "mmlu"};
  return names;
}

Task load_task(const std::string& name, const fs::path& data_dir, int64_t limit, int64_t num_fewshot) {
  Task task;
  task.name = name;
  if (std::find(task_names().begin(), task_names().end(), name) == task_names().end()) {
    std::string known;
    for (const auto& n : task_names()) known += (known.empty() ? "" : ", ") + n;
    fail("unknown task '{}' (known: {})", name, known);
  }
  const fs::path dir = data_dir / name;
  if (!fs::is_directory(dir)) fail("{}: no such directory (task {} reads its files there)", dir.string(), name);
  if (name == "mmlu") {
    task.num_fewshot = num_fewshot < 0 ? 5 : num_fewshot;
    task.sources = {dir};
    task.docs = load_mmlu(dir, limit, task.num_fewshot, &task.original_docs);
    if (task.num_fewshot > 0) task.fewshot_sources = {dir};
    if (task.docs.empty()) fail("{}: no documents", dir.string());
    return task;
  }
  task.num_fewshot = std::max<int64_t>(num_fewshot, 0);
  // Every document is read (lm-eval's n-samples counts the whole split); --limit keeps the first.
  std::vector<EvalDoc> pool;
  fs::path pool_source;
  // lm-eval draws one more example than asked when the task's fewshot_split equals its
  // test_split: both unset (None) for piqa, hellaswag and boolq, not for ARC (test_split
  // "test") nor lambada_openai (no training split: its test docs are the few-shot pool).
  bool draw_one_more = false;
  const bool fewshot = task.num_fewshot > 0;
  if (name == "lambada_openai") {
    task.kind = TaskKind::Loglikelihood;
    task.sources = {find_data_file(dir, {"lambada_test.jsonl", "lambada_test.first100.jsonl", "test.jsonl"})};
    task.docs = load_lambada(task.sources[0], 0);
    if (fewshot) pool = task.docs, pool_source = task.sources[0];
  } else if (name == "arc_easy" || name == "arc_challenge") {
    task.reports_acc_norm = true;
    const bool easy = name == "arc_easy";
    task.sources = {easy ? find_data_file(dir, {"ARC-Easy-Test.jsonl", "ARC-Easy-Test.first100.jsonl", "test.jsonl"})
                         : find_data_file(dir, {"ARC-Challenge-Test.jsonl", "ARC-Challenge-Test.first100.jsonl",
                                                "test.jsonl"})};
    task.docs = load_arc(task.sources[0], 0);
    if (fewshot) {
      pool_source = find_fewshot_file(dir, name, task.num_fewshot,
                                      {easy ? "ARC-Easy-Train.jsonl" : "ARC-Challenge-Train.jsonl", "train.jsonl"});
      pool = load_arc(pool_source, 0);
    }
  } else if (name == "piqa") {
    task.reports_acc_norm = true;
    const fs::path file = find_data_file(dir, {"valid.jsonl", "valid.first100.jsonl", "validation.jsonl"});
    const fs::path labels = file.filename().string().rfind("valid.", 0) == 0 ? piqa_labels_for(file) : fs::path();
    task.sources = {file};
    if (!labels.empty()) task.sources.push_back(labels);
    task.docs = load_piqa(file, labels, 0);
    if (fewshot) {
      draw_one_more = true;
      pool_source = find_fewshot_file(dir, name, task.num_fewshot, {"train.jsonl"});
      pool = load_piqa(pool_source, piqa_labels_for(pool_source), 0);
    }
  } else if (name == "hellaswag") {
    task.reports_acc_norm = true;
    task.sources = {find_data_file(dir, {"hellaswag_val.jsonl", "hellaswag_val.first100.jsonl", "validation.jsonl"})};
    task.docs = load_hellaswag(task.sources[0], 0);
    if (fewshot) {
      draw_one_more = true;
      pool_source = find_fewshot_file(dir, name, task.num_fewshot, {"hellaswag_train.jsonl", "train.jsonl"});
      pool = load_hellaswag(pool_source, 0);
    }
  } else if (name == "boolq") {
    task.sources = {find_data_file(dir, {"val.jsonl", "val.first100.jsonl", "validation.jsonl"})};
    task.docs = load_boolq(task.sources[0], 0);
    if (fewshot) {
      draw_one_more = true;
      pool_source = find_fewshot_file(dir, name, task.num_fewshot, {"train.jsonl"});
      pool = load_boolq(pool_source, 0);
    }
  }
  if (task.docs.empty()) fail("{}: no documents", task.sources[0].string());
  task.original_docs[name] = static_cast<int64_t>(task.docs.size());
  keep_first(task.docs, limit);
  if (fewshot) {
    task.fewshot_sources = {pool_source};
    add_fewshot_examples(task.docs, pool, task.num_fewshot, draw_one_more, pool_source);
  }
  return task;
}

}  // namespace cq
