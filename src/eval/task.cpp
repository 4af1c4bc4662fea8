#include "eval/task.h"

#include <fmt/format.h>

#include <algorithm>

#include "eval/eval_data.h"
#include "util/error.h"

namespace cq {

namespace fs = std::filesystem;

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = {"lambada_openai", "arc_easy", "arc_challenge", "piqa",
                                                 "hellaswag",      "boolq",    "mmlu"};
  return names;
}

Task load_task(const std::string& name, const fs::path& data_dir, int64_t limit) {
  Task task;
  task.name = name;
  if (std::find(task_names().begin(), task_names().end(), name) == task_names().end()) {
    std::string known;
    for (const auto& n : task_names()) known += (known.empty() ? "" : ", ") + n;
    fail("unknown task '{}' (known: {})", name, known);
  }
  const fs::path dir = data_dir / name;
  if (!fs::is_directory(dir)) fail("{}: no such directory (task {} reads its files there)", dir.string(), name);
  if (name == "lambada_openai") {
    task.kind = TaskKind::Loglikelihood;
    task.sources = {find_data_file(dir, {"lambada_test.jsonl", "lambada_test.first100.jsonl", "test.jsonl"})};
    task.docs = load_lambada(task.sources[0], limit);
  } else if (name == "arc_easy" || name == "arc_challenge") {
    task.reports_acc_norm = true;
    task.sources = {name == "arc_easy"
                        ? find_data_file(dir, {"ARC-Easy-Test.jsonl", "ARC-Easy-Test.first100.jsonl", "test.jsonl"})
                        : find_data_file(dir, {"ARC-Challenge-Test.jsonl", "ARC-Challenge-Test.first100.jsonl",
                                               "test.jsonl"})};
    task.docs = load_arc(task.sources[0], limit);
  } else if (name == "piqa") {
    task.reports_acc_norm = true;
    const fs::path file = find_data_file(dir, {"valid.jsonl", "valid.first100.jsonl", "validation.jsonl"});
    // valid.jsonl pairs with valid-labels.lst (valid.first100.jsonl with valid-labels.first100.lst).
    fs::path labels;
    const std::string stem = file.filename().string();
    if (stem.rfind("valid.", 0) == 0) {
      labels = dir / ("valid-labels." + stem.substr(6, stem.size() - 6 - 6) + ".lst");
      if (stem == "valid.jsonl") labels = dir / "valid-labels.lst";
      if (!fs::exists(labels)) labels.clear();
    }
    task.sources = {file};
    if (!labels.empty()) task.sources.push_back(labels);
    task.docs = load_piqa(file, labels, limit);
  } else if (name == "hellaswag") {
    task.reports_acc_norm = true;
    task.sources = {find_data_file(dir, {"hellaswag_val.jsonl", "hellaswag_val.first100.jsonl", "validation.jsonl"})};
    task.docs = load_hellaswag(task.sources[0], limit);
  } else if (name == "boolq") {
    task.sources = {find_data_file(dir, {"val.jsonl", "val.first100.jsonl", "validation.jsonl"})};
    task.docs = load_boolq(task.sources[0], limit);
  } else if (name == "mmlu") {
    task.sources = {dir};
    task.docs = load_mmlu(dir, limit);
  } else {
    std::string known;
    for (const auto& n : task_names()) known += (known.empty() ? "" : ", ") + n;
    fail("unknown task '{}' (known: {})", name, known);
  }
  if (task.docs.empty()) fail("{}: no documents", task.sources[0].string());
  return task;
}

}  // namespace cq
