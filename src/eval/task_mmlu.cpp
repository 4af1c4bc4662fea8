// mmlu 5-shot (EVAL.md §6): per subject, description + the first 5 dev rows (question,
// " " + answer letter, "\n\n") + the test question; choices " A" .. " D".
#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "eval/eval_data.h"
#include "eval/task.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq {

namespace fs = std::filesystem;

namespace {

struct MmluRow {
  std::string question;
  std::vector<std::string> choices;  // 4
  int64_t answer = 0;                // 0..3
};

int64_t answer_index(const std::string& letter) {
  if (letter.size() == 1 && letter[0] >= 'A' && letter[0] <= 'D') return letter[0] - 'A';
  return -1;
}

std::vector<MmluRow> read_mmlu_csv(const fs::path& file) {
  std::vector<MmluRow> rows;
  for (const CsvRow& row : parse_csv(read_text_file(file), file)) {
    if (row.fields.size() != 6)
      fail_record(file, row.line, fmt::format("{} CSV fields, expected 6 (question, A, B, C, D, answer)", row.fields.size()));
    MmluRow out;
    out.question = row.fields[0];
    out.choices.assign(row.fields.begin() + 1, row.fields.begin() + 5);
    out.answer = answer_index(row.fields[5]);
    if (out.answer < 0) fail_record(file, row.line, fmt::format("answer '{}' is not A, B, C or D", row.fields[5]));
    rows.push_back(std::move(out));
  }
  return rows;
}

// HF cais/mmlu export: {question, subject, choices[4], answer: 0..3}, all subjects in one file.
std::map<std::string, std::vector<MmluRow>> read_mmlu_jsonl(const fs::path& file) {
  std::map<std::string, std::vector<MmluRow>> subjects;
  for (const JsonRecord& record : read_jsonl(file)) {
    MmluRow row;
    row.question = json_string(record, file, "question");
    const nlohmann::json& choices = json_field(record, file, "choices");
    if (!choices.is_array() || choices.size() != 4) fail_record(file, record.line, "'choices' is not a list of 4");
    for (const auto& choice : choices) row.choices.push_back(json_string(choice, record, file, "choices[]"));
    const nlohmann::json& answer = json_field(record, file, "answer");
    row.answer = answer.is_number_integer() ? answer.get<int64_t>()
                 : answer.is_string()       ? answer_index(answer.get<std::string>())
                                            : -1;
    if (row.answer < 0 || row.answer > 3) fail_record(file, record.line, "'answer' is not 0..3 (or A..D)");
    subjects[json_string(record, file, "subject")].push_back(std::move(row));
  }
  return subjects;
}

}  // namespace

std::string mmlu_question(const std::string& question, const std::vector<std::string>& choices) {
  return fmt::format("{}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer:", python_strip(question), choices.at(0), choices.at(1),
                     choices.at(2), choices.at(3));
}

std::string mmlu_description(const std::string& subject) {
  std::string name = subject;
  std::replace(name.begin(), name.end(), '_', ' ');
  return "The following are multiple choice questions (with answers) about " + name + ".\n\n";
}

const std::string& mmlu_category(const std::string& subject) {
  // lm_eval/tasks/mmlu/_generate_configs.py SUBJECTS
  static const std::map<std::string, std::string> categories = {
      {"abstract_algebra", "stem"}, {"anatomy", "stem"}, {"astronomy", "stem"}, {"business_ethics", "other"},
      {"clinical_knowledge", "other"}, {"college_biology", "stem"}, {"college_chemistry", "stem"},
      {"college_computer_science", "stem"}, {"college_mathematics", "stem"}, {"college_medicine", "other"},
      {"college_physics", "stem"}, {"computer_security", "stem"}, {"conceptual_physics", "stem"},
      {"econometrics", "social_sciences"}, {"electrical_engineering", "stem"}, {"elementary_mathematics", "stem"},
      {"formal_logic", "humanities"}, {"global_facts", "other"}, {"high_school_biology", "stem"},
      {"high_school_chemistry", "stem"}, {"high_school_computer_science", "stem"},
      {"high_school_european_history", "humanities"}, {"high_school_geography", "social_sciences"},
      {"high_school_government_and_politics", "social_sciences"}, {"high_school_macroeconomics", "social_sciences"},
      {"high_school_mathematics", "stem"}, {"high_school_microeconomics", "social_sciences"},
      {"high_school_physics", "stem"}, {"high_school_psychology", "social_sciences"},
      {"high_school_statistics", "stem"}, {"high_school_us_history", "humanities"},
      {"high_school_world_history", "humanities"}, {"human_aging", "other"}, {"human_sexuality", "social_sciences"},
      {"international_law", "humanities"}, {"jurisprudence", "humanities"}, {"logical_fallacies", "humanities"},
      {"machine_learning", "stem"}, {"management", "other"}, {"marketing", "other"}, {"medical_genetics", "other"},
      {"miscellaneous", "other"}, {"moral_disputes", "humanities"}, {"moral_scenarios", "humanities"},
      {"nutrition", "other"}, {"philosophy", "humanities"}, {"prehistory", "humanities"},
      {"professional_accounting", "other"}, {"professional_law", "humanities"}, {"professional_medicine", "other"},
      {"professional_psychology", "social_sciences"}, {"public_relations", "social_sciences"},
      {"security_studies", "social_sciences"}, {"sociology", "social_sciences"},
      {"us_foreign_policy", "social_sciences"}, {"virology", "other"}, {"world_religions", "humanities"}};
  static const std::string unknown = "other";
  const auto it = categories.find(subject);
  return it == categories.end() ? unknown : it->second;
}

std::vector<EvalDoc> load_mmlu(const fs::path& dir, int64_t limit, int64_t shots,
                               std::map<std::string, int64_t>* test_sizes) {
  std::map<std::string, std::vector<MmluRow>> dev, test;
  std::map<std::string, fs::path> dev_source;
  if (fs::is_directory(dir / "test")) {
    for (const auto& entry : fs::directory_iterator(dir / "test")) {
      const std::string name = entry.path().filename().string();
      const std::string suffix = "_test.csv";
      if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
      const std::string subject = name.substr(0, name.size() - suffix.size());
      const fs::path dev_file = dir / "dev" / (subject + "_dev.csv");
      if (!fs::exists(dev_file)) fail("{}: missing (the few-shot examples of {})", dev_file.string(), subject);
      test[subject] = read_mmlu_csv(entry.path());
      dev[subject] = read_mmlu_csv(dev_file);
      dev_source[subject] = dev_file;
    }
  } else {
    const fs::path test_file = find_data_file(dir, {"test.jsonl"});
    const fs::path dev_file = dir / "dev.jsonl";
    if (!fs::exists(dev_file)) fail("{}: missing (the few-shot split of {})", dev_file.string(), test_file.string());
    test = read_mmlu_jsonl(test_file);
    dev = read_mmlu_jsonl(dev_file);
    for (const auto& [subject, rows] : dev) dev_source[subject] = dev_file;
  }
  if (test.empty()) fail("{}: no MMLU test files (test/<subject>_test.csv or test.jsonl)", dir.string());
  std::vector<EvalDoc> docs;
  for (const auto& [subject, rows] : test) {  // subjects in alphabetical order, as lm-eval's group
    const auto& examples = dev[subject];
    if (static_cast<int64_t>(examples.size()) < shots)
      fail("{}: {} dev rows for {}, {} needed", dev_source[subject].string(), examples.size(), subject, shots);
    if (test_sizes) (*test_sizes)["mmlu_" + subject] = static_cast<int64_t>(rows.size());
    std::string prefix = mmlu_description(subject);
    for (size_t i = 0; i < static_cast<size_t>(shots); ++i)  // first_n sampler: the first rows in file order
      prefix += mmlu_question(examples[i].question, examples[i].choices) + " " +
                std::string(1, "ABCD"[examples[i].answer]) + "\n\n";
    const size_t count = limit > 0 ? std::min<size_t>(rows.size(), limit) : rows.size();
    for (size_t i = 0; i < count; ++i) {
      EvalDoc doc;
      doc.context = prefix + mmlu_question(rows[i].question, rows[i].choices);
      doc.choices = {"A", "B", "C", "D"};
      doc.gold = rows[i].answer;
      doc.subject = subject;
      docs.push_back(std::move(doc));
    }
  }
  return docs;
}

}  // namespace cq
