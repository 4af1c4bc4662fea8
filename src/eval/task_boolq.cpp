// boolq (EVAL.md §5): "{passage}\nQuestion: {question}?\nAnswer:", choices "no" / "yes".
#include "eval/eval_data.h"
#include "eval/task.h"

namespace cq {

int64_t boolq_label(const nlohmann::json& label) {
  if (label.is_boolean()) return label.get<bool>() ? 1 : 0;
  if (label.is_number_integer() && (label.get<int64_t>() == 0 || label.get<int64_t>() == 1)) return label.get<int64_t>();
  if (label.is_string()) {
    const std::string text = label.get<std::string>();
    if (text == "true" || text == "True") return 1;
    if (text == "false" || text == "False") return 0;
  }
  return -1;
}

std::vector<EvalDoc> load_boolq(const std::filesystem::path& file, int64_t limit) {
  std::vector<EvalDoc> docs;
  for (const JsonRecord& record : read_jsonl(file, limit)) {
    EvalDoc doc;
    doc.context = json_string(record, file, "passage") + "\nQuestion: " + json_string(record, file, "question") + "?\nAnswer:";
    doc.choices = {"no", "yes"};
    doc.gold = boolq_label(json_field(record, file, "label"));
    if (doc.gold < 0) fail_record(file, record.line, "'label' is not true/false (or 0/1)");
    doc.identity = record.value.dump();
    docs.push_back(std::move(doc));
  }
  return docs;
}

}  // namespace cq
