// hellaswag (EVAL.md §4): lm-eval's utils.preprocess and _process_doc, byte for byte.
#include <fmt/format.h>

#include <cctype>

#include "eval/eval_data.h"
#include "eval/task.h"

namespace cq {

namespace {

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(text, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
  }
  out.append(text, pos, std::string::npos);
  text = std::move(out);
}

}  // namespace

std::string hellaswag_preprocess(const std::string& input) {
  std::string text = python_strip(input);
  replace_all(text, " [title]", ". ");
  // re.sub("\\[.*?\\]", "", text): '.' does not match '\n'; the shortest '[...]' from each '['.
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    if (text[pos] == '[') {
      size_t end = pos + 1;
      while (end < text.size() && text[end] != ']' && text[end] != '\n') ++end;
      if (end < text.size() && text[end] == ']') {
        pos = end + 1;
        continue;
      }
    }
    out.push_back(text[pos++]);
  }
  replace_all(out, "  ", " ");  // one pass, as str.replace
  return out;
}

std::string hellaswag_query(const std::string& activity_label, const std::string& ctx_a, const std::string& ctx_b) {
  return hellaswag_preprocess(activity_label + ": " + ctx_a + " " + python_capitalize(ctx_b));
}

std::vector<EvalDoc> load_hellaswag(const std::filesystem::path& file, int64_t limit) {
  std::vector<EvalDoc> docs;
  for (const JsonRecord& record : read_jsonl(file, limit)) {
    EvalDoc doc;
    doc.context = hellaswag_query(json_string(record, file, "activity_label"), json_string(record, file, "ctx_a"),
                                  json_string(record, file, "ctx_b"));
    const nlohmann::json& endings = json_field(record, file, "endings");
    if (!endings.is_array() || endings.empty()) fail_record(file, record.line, "'endings' is not a list");
    for (const auto& ending : endings) doc.choices.push_back(hellaswag_preprocess(json_string(ending, record, file, "endings[]")));
    // Original files store label as a number, the HF export as a string ("3").
    const nlohmann::json& label = json_field(record, file, "label");
    int64_t gold = -1;
    if (label.is_number_integer()) gold = label.get<int64_t>();
    if (label.is_string() && label.get<std::string>().size() == 1 && std::isdigit(static_cast<unsigned char>(label.get<std::string>()[0])))
      gold = label.get<std::string>()[0] - '0';
    if (gold < 0 || gold >= static_cast<int64_t>(doc.choices.size()))
      fail_record(file, record.line, fmt::format("'label' {} is not an index of the {} endings", label.dump(), doc.choices.size()));
    doc.gold = gold;
    doc.identity = record.value.dump();
    docs.push_back(std::move(doc));
  }
  return docs;
}

}  // namespace cq
