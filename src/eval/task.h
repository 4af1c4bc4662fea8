#pragma once
// Evaluation tasks as lm-evaluation-harness v0.4.x builds them (docs/EVAL.md): each task
// family reads its dataset's original files (or the Hugging Face `datasets` JSONL export)
// into documents holding the exact request strings; one file per family (task_*.cpp).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cq {

struct EvalDoc {
  std::string context;               // doc_to_text (with few-shot examples for MMLU)
  std::vector<std::string> choices;  // raw doc_to_choice strings, without the " " delimiter
  int64_t gold = 0;
  std::string target;                // loglikelihood tasks: the continuation, e.g. " word"
  std::string subject;               // MMLU subject
};

enum class TaskKind { Loglikelihood, MultipleChoice };

struct Task {
  std::string name;
  TaskKind kind = TaskKind::MultipleChoice;
  bool reports_acc_norm = false;
  std::vector<std::filesystem::path> sources;  // files read
  std::vector<EvalDoc> docs;
};

// Tasks `cq eval --tasks` accepts.
const std::vector<std::string>& task_names();

// Loads `name` from data_dir/<name>/ (folder names as in $CQ_SHARED/data); `limit` > 0 keeps
// the first `limit` documents (MMLU: of each subject, as lm-eval's --limit does per subtask).
Task load_task(const std::string& name, const std::filesystem::path& data_dir, int64_t limit = 0);

// One loader per family; each accepts the original format and the HF JSONL export.
std::vector<EvalDoc> load_lambada(const std::filesystem::path& file, int64_t limit);
std::vector<EvalDoc> load_arc(const std::filesystem::path& file, int64_t limit);
// labels: valid-labels.lst of the original release; empty when the JSONL has a "label" field.
std::vector<EvalDoc> load_piqa(const std::filesystem::path& file, const std::filesystem::path& labels, int64_t limit);
std::vector<EvalDoc> load_hellaswag(const std::filesystem::path& file, int64_t limit);
std::vector<EvalDoc> load_boolq(const std::filesystem::path& file, int64_t limit);
// dir holds dev/<subject>_dev.csv and test/<subject>_test.csv, or dev.jsonl and test.jsonl
// (HF cais/mmlu export with a "subject" field).
std::vector<EvalDoc> load_mmlu(const std::filesystem::path& dir, int64_t limit);

// lambada: context = text up to the last ' ', target = ' ' + last word.
EvalDoc lambada_doc(const std::string& text);
// HellaSwag's preprocess() and the query of _process_doc.
std::string hellaswag_preprocess(const std::string& text);
std::string hellaswag_query(const std::string& activity_label, const std::string& ctx_a, const std::string& ctx_b);
// ARC: gold = index of answer_key within labels (never int(answer_key)); -1 if absent.
int64_t arc_gold_index(const std::vector<std::string>& labels, const std::string& answer_key);
// BoolQ label as stored: true/false, "true"/"false", 0/1; -1 when not recognised.
int64_t boolq_label(const nlohmann::json& label);
// MMLU pieces: doc_to_text, the subject description and the 5-shot context.
std::string mmlu_question(const std::string& question, const std::vector<std::string>& choices);
std::string mmlu_description(const std::string& subject);
const std::string& mmlu_category(const std::string& subject);  // stem | humanities | social_sciences | other

}  // namespace cq
