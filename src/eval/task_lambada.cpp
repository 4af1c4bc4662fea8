// lambada_openai (EVAL.md §1): context = text before the last ' ', target = ' ' + last word.
#include "eval/eval_data.h"
#include "eval/task.h"

namespace cq {

EvalDoc lambada_doc(const std::string& text) {
  // Python's text.split(' ')[:-1] joined by ' ' is everything before the last ' '.
  EvalDoc doc;
  const size_t space = text.rfind(' ');
  const size_t word = space == std::string::npos ? 0 : space + 1;
  if (space != std::string::npos) doc.context = text.substr(0, space);
  doc.target.reserve(text.size() - word + 1);
  doc.target.push_back(' ');
  doc.target.append(text, word, std::string::npos);
  return doc;
}

std::vector<EvalDoc> load_lambada(const std::filesystem::path& file, int64_t limit) {
  std::vector<EvalDoc> docs;
  for (const JsonRecord& record : read_jsonl(file, limit)) {
    docs.push_back(lambada_doc(json_string(record, file, "text")));
    docs.back().identity = record.value.dump();
  }
  return docs;
}

}  // namespace cq
