// arc_easy / arc_challenge (EVAL.md §2): "Question: {stem}\nAnswer:", choices " " + text,
// gold = index of answerKey among the labels (labels are A-E or 1-4).
#include <fmt/format.h>

#include "eval/eval_data.h"
#include "eval/task.h"

namespace cq {

int64_t arc_gold_index(const std::vector<std::string>& labels, const std::string& answer_key) {
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] == answer_key) return static_cast<int64_t>(i);
  return -1;
}

std::vector<EvalDoc> load_arc(const std::filesystem::path& file, int64_t limit) {
  std::vector<EvalDoc> docs;
  for (const JsonRecord& record : read_jsonl(file, limit)) {
    const nlohmann::json& question = json_field(record, file, "question");
    std::string stem;
    std::vector<std::string> texts, labels;
    if (question.is_object()) {  // original AI2 JSONL: question.stem, question.choices[{text,label}]
      stem = json_string(question.value("stem", nlohmann::json()), record, file, "question.stem");
      const auto choices = question.value("choices", nlohmann::json());
      if (!choices.is_array() || choices.empty()) fail_record(file, record.line, "'question.choices' is not a list");
      for (const auto& choice : choices) {
        if (!choice.is_object()) fail_record(file, record.line, "a choice is not an object");
        texts.push_back(json_string(choice.value("text", nlohmann::json()), record, file, "choices[].text"));
        labels.push_back(json_string(choice.value("label", nlohmann::json()), record, file, "choices[].label"));
      }
    } else {  // HF allenai/ai2_arc: question, choices{text[], label[]}
      stem = json_string(question, record, file, "question");
      const nlohmann::json& choices = json_field(record, file, "choices");
      const auto text = choices.is_object() ? choices.value("text", nlohmann::json()) : nlohmann::json();
      const auto label = choices.is_object() ? choices.value("label", nlohmann::json()) : nlohmann::json();
      if (!text.is_array() || !label.is_array() || text.size() != label.size() || text.empty())
        fail_record(file, record.line, "'choices' needs lists 'text' and 'label' of the same length");
      for (size_t i = 0; i < text.size(); ++i) {
        texts.push_back(json_string(text[i], record, file, "choices.text[]"));
        labels.push_back(json_string(label[i], record, file, "choices.label[]"));
      }
    }
    const std::string key = json_string(record, file, "answerKey");
    EvalDoc doc;
    doc.gold = arc_gold_index(labels, key);
    if (doc.gold < 0) fail_record(file, record.line, fmt::format("answerKey '{}' is not one of the labels", key));
    doc.context = "Question: " + stem + "\nAnswer:";
    doc.choices = std::move(texts);
    doc.identity = record.value.dump();
    docs.push_back(std::move(doc));
  }
  return docs;
}

}  // namespace cq
