#pragma once
// Evaluation tasks as lm-evaluation-harness v0.4.x builds them (docs/EVAL.md): each task
// family reads its dataset's original files (or the Hugging Face `datasets` JSONL export)
// into documents holding the exact request strings; one file per family (task_*.cpp).
#include <cstdint>
#include <filesystem>
#include <map>
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
  std::string identity;              // the record as read: lm-eval drops a drawn few-shot doc equal to the evaluated one
};

enum class TaskKind { Loglikelihood, MultipleChoice };

struct Task {
  std::string name;
  TaskKind kind = TaskKind::MultipleChoice;
  bool reports_acc_norm = false;
  std::vector<std::filesystem::path> sources;  // files read
  std::vector<EvalDoc> docs;
  int64_t num_fewshot = 0;                              // examples in front of every context
  std::vector<std::filesystem::path> fewshot_sources;  // the few-shot split's files (none when 0-shot)
  // Documents in each evaluated split before --limit (lm-eval's n-samples "original"), per
  // leaf task: the task's name, or mmlu_<subject> for every MMLU subject.
  std::map<std::string, int64_t> original_docs;
};

// Tasks `cq eval --tasks` accepts.
const std::vector<std::string>& task_names();

// Loads `name` from data_dir/<name>/ (folder names as in $CQ_SHARED/data); `limit` > 0 keeps
// the first `limit` documents (MMLU: of each subject, as lm-eval's --limit does per subtask).
// num_fewshot < 0: the task's default (0; MMLU 5); otherwise lm-eval's --num_fewshot, drawn
// from the task's few-shot split as lm-eval's samplers draw them (task_fewshot.cpp).
Task load_task(const std::string& name, const std::filesystem::path& data_dir, int64_t limit = 0,
               int64_t num_fewshot = -1);

// lm-eval v0.4's default ContextSampler with fewshot_rnd = random.Random(seed): for each
// document in order, sample(pool, n + 1 if draw_one_more else n), drop a drawn document
// equal to the evaluated one (same identity), keep the first n, and prefix the context with
// `doc_to_text + " " + target + "\n\n"` per example. Fails when the pool is too small.
void add_fewshot_examples(std::vector<EvalDoc>& docs, const std::vector<EvalDoc>& pool, int64_t num_fewshot,
                          bool draw_one_more, const std::filesystem::path& pool_source, uint64_t seed = 1234);
// One labelled example: doc_to_text + target_delimiter + target + fewshot_delimiter.
std::string fewshot_example(const EvalDoc& doc);

// One loader per family; each accepts the original format and the HF JSONL export.
std::vector<EvalDoc> load_lambada(const std::filesystem::path& file, int64_t limit);
std::vector<EvalDoc> load_arc(const std::filesystem::path& file, int64_t limit);
// labels: valid-labels.lst of the original release; empty when the JSONL has a "label" field.
std::vector<EvalDoc> load_piqa(const std::filesystem::path& file, const std::filesystem::path& labels, int64_t limit);
std::vector<EvalDoc> load_hellaswag(const std::filesystem::path& file, int64_t limit);
std::vector<EvalDoc> load_boolq(const std::filesystem::path& file, int64_t limit);
// dir holds dev/<subject>_dev.csv and test/<subject>_test.csv, or dev.jsonl and test.jsonl
// (HF cais/mmlu export with a "subject" field).
// shots: the first `shots` dev rows of each subject (lm-eval's first_n sampler). test_sizes,
// when given, receives every subject's number of test rows before `limit`.
std::vector<EvalDoc> load_mmlu(const std::filesystem::path& dir, int64_t limit, int64_t shots = 5,
                               std::map<std::string, int64_t>* test_sizes = nullptr);

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
