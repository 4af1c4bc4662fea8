// piqa (EVAL.md §3): "Question: {goal}\nAnswer:", choices sol1 / sol2; labels from
// valid-labels.lst aligned by line, or a "label" field (HF export).
#include <fmt/format.h>

#include <sstream>

#include "eval/eval_data.h"
#include "eval/task.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq {

std::vector<EvalDoc> load_piqa(const std::filesystem::path& file, const std::filesystem::path& labels_file,
                               int64_t limit) {
  const std::vector<JsonRecord> records = read_jsonl(file, limit);
  std::vector<int64_t> labels;
  if (!labels_file.empty()) {
    std::istringstream stream(read_text_file(labels_file));
    std::string line;
    int64_t number = 0;
    while (std::getline(stream, line) && labels.size() < records.size()) {
      ++number;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line != "0" && line != "1") fail_record(labels_file, number, fmt::format("label '{}' is not 0 or 1", line));
      labels.push_back(line == "1");
    }
    if (labels.size() < records.size())
      fail("{}: {} labels for {} documents of {}", labels_file.string(), labels.size(), records.size(), file.string());
  }
  std::vector<EvalDoc> docs;
  for (size_t i = 0; i < records.size(); ++i) {
    const JsonRecord& record = records[i];
    EvalDoc doc;
    doc.context = "Question: " + json_string(record, file, "goal") + "\nAnswer:";
    doc.choices = {json_string(record, file, "sol1"), json_string(record, file, "sol2")};
    if (labels_file.empty()) {
      const nlohmann::json& label = json_field(record, file, "label");
      if (!label.is_number_integer() || (label.get<int64_t>() != 0 && label.get<int64_t>() != 1))
        fail_record(file, record.line, "'label' is not 0 or 1 (and no valid-labels.lst next to the file)");
      doc.gold = label.get<int64_t>();
    } else {
      doc.gold = labels[i];
    }
    doc.identity = record.value.dump() + (labels_file.empty() ? "" : fmt::format(" label={}", doc.gold));
    docs.push_back(std::move(doc));
  }
  return docs;
}

}  // namespace cq
