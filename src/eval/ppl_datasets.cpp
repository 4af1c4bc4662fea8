#include "eval/ppl_datasets.h"

#include "eval/eval_data.h"
#include "util/text_file.h"

namespace cq {

std::vector<std::string> wikitext_rows(std::string_view raw) {
  // Python text mode: "\r\n" and "\r" read as "\n", then one row per line.
  std::string text;
  text.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\r') {
      text.push_back('\n');
      if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
    } else {
      text.push_back(raw[i]);
    }
  }
  std::vector<std::string> rows;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    end = end == std::string::npos ? text.size() : end + 1;
    std::string row = text.substr(start, end - start);
    rows.push_back(python_strip(row).empty() ? std::string() : row);
    start = end;
  }
  return rows;
}

namespace {

std::string join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += separator;
    out += parts[i];
  }
  return out;
}

}  // namespace

std::string wikitext2_eval_string(const std::filesystem::path& file) {
  if (file.extension() == ".jsonl") {
    std::vector<std::string> rows;
    for (const JsonRecord& record : read_jsonl(file)) rows.push_back(json_string(record, file, "text"));
    return join(rows, "\n\n");
  }
  return join(wikitext_rows(read_text_file(file)), "\n\n");
}

std::string c4_eval_string(const std::filesystem::path& file, int64_t documents) {
  std::vector<std::string> texts;
  for (const JsonRecord& record : read_jsonl(file, documents)) texts.push_back(json_string(record, file, "text"));
  return join(texts, " ");
}

}  // namespace cq
