#include "eval/eval_data.h"

#include <fmt/format.h>

#include "tokenizer/unicode.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq {

namespace fs = std::filesystem;

void fail_record(const fs::path& file, int64_t line, const std::string& what) {
  fail("{}: line {}: {}", file.string(), line, what);
}

std::vector<JsonRecord> read_jsonl(const fs::path& path, int64_t limit) {
  std::ifstream stream = open_input_file(path);
  return read_jsonl(stream, path, limit);
}

std::vector<JsonRecord> read_jsonl(std::istream& in, const fs::path& source, int64_t limit) {
  std::vector<JsonRecord> records;
  std::string row;
  for (int64_t line = 1; (limit <= 0 || static_cast<int64_t>(records.size()) < limit) &&
                         read_bounded_line(in, row, kMaxJsonlLineBytes, source.string(), line);
       ++line) {
    if (row.find_first_not_of(" \t\r") == std::string::npos) continue;
    JsonRecord record;
    record.line = line;
    try {
      record.value = nlohmann::json::parse(row);
    } catch (const nlohmann::json::exception& e) {  // parse errors, and numbers out of range
      fail_record(source, line, fmt::format("not a JSON record ({})", e.what()));
    }
    if (!record.value.is_object()) fail_record(source, line, "not a JSON object");
    records.push_back(std::move(record));
  }
  if (in.bad()) fail("{}: read error", source.string());
  return records;
}

const nlohmann::json& json_field(const JsonRecord& record, const fs::path& file, std::string_view key) {
  const auto it = record.value.find(key);
  if (it == record.value.end()) fail_record(file, record.line, fmt::format("missing field '{}'", key));
  return *it;
}

std::string json_string(const nlohmann::json& value, const JsonRecord& record, const fs::path& file,
                        std::string_view what) {
  if (!value.is_string()) fail_record(file, record.line, fmt::format("'{}' is not a string", what));
  return value.get<std::string>();
}

std::string json_string(const JsonRecord& record, const fs::path& file, std::string_view key) {
  return json_string(json_field(record, file, key), record, file, key);
}

std::vector<CsvRow> parse_csv(std::string_view text, const fs::path& file) {
  std::vector<CsvRow> rows;
  int64_t line = 1;
  size_t i = 0;
  while (i < text.size()) {
    CsvRow row;
    row.line = line;
    std::string field;
    bool record_done = false;
    while (!record_done) {
      field.clear();
      if (i < text.size() && text[i] == '"') {
        const int64_t quote_line = line;
        ++i;
        while (true) {
          if (i >= text.size()) fail_record(file, quote_line, "unterminated quoted CSV field");
          const char ch = text[i++];
          if (ch == '"') {
            if (i < text.size() && text[i] == '"') {
              field.push_back('"');
              ++i;
            } else {
              break;
            }
          } else {
            if (ch == '\n') ++line;
            field.push_back(ch);
          }
        }
        // Python's csv keeps characters after a closing quote in the field; so do we.
        while (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') field.push_back(text[i++]);
      } else {
        while (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') field.push_back(text[i++]);
      }
      row.fields.push_back(field);
      if (i < text.size() && text[i] == ',') {
        ++i;
        continue;
      }
      if (i < text.size() && text[i] == '\r') ++i;
      if (i < text.size() && text[i] == '\n') {
        ++i;
        ++line;
      }
      record_done = true;
    }
    if (!(row.fields.size() == 1 && row.fields[0].empty())) rows.push_back(std::move(row));
  }
  return rows;
}

bool python_isspace(char32_t cp) {
  return (cp >= 0x1C && cp <= 0x1F) || unicode::is_whitespace(cp);
}

namespace {

// Byte offsets of the first and one-past-last non-whitespace characters.
std::pair<size_t, size_t> content_span(std::string_view text) {
  size_t first = text.size(), last = 0, pos = 0;
  while (pos < text.size()) {
    const auto decoded = unicode::decode_utf8(text, pos);
    if (!python_isspace(decoded.code_point)) {
      if (first == text.size()) first = pos;
      last = pos + decoded.length;
    }
    pos += decoded.length;
  }
  return {first, last};
}

char32_t to_upper(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17F) {
    const bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (odd_upper ? (c % 2 == 0) : (c % 2 == 1)) return c - 1;
    return c;
  }
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}

char32_t to_lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c == 0x178) return 0xFF;
  if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17F) {
    const bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (odd_upper ? (c % 2 == 1) : (c % 2 == 0)) return c + 1;
    return c;
  }
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

}  // namespace

std::string python_strip(std::string_view text) {
  const auto [first, last] = content_span(text);
  return first >= last ? std::string() : std::string(text.substr(first, last - first));
}

std::string python_rstrip(std::string_view text) {
  const auto [first, last] = content_span(text);
  return first >= last ? std::string() : std::string(text.substr(0, last));
}

std::string python_capitalize(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  bool first = true;
  while (pos < text.size()) {
    const auto decoded = unicode::decode_utf8(text, pos);
    if (decoded.code_point == unicode::kReplacementChar && decoded.length == 1 &&
        static_cast<unsigned char>(text[pos]) >= 0x80) {
      out.push_back(text[pos]);  // invalid byte: kept as is
    } else {
      unicode::append_utf8(out, first ? to_upper(decoded.code_point) : to_lower(decoded.code_point));
    }
    first = false;
    pos += decoded.length;
  }
  return out;
}

int64_t python_length(std::string_view text) {
  int64_t count = 0;
  for (size_t pos = 0; pos < text.size(); ++count) pos += unicode::decode_utf8(text, pos).length;
  return count;
}

fs::path find_data_file(const fs::path& dir, std::initializer_list<const char*> candidates) {
  std::string tried;
  for (const char* name : candidates) {
    if (fs::is_regular_file(dir / name)) return dir / name;
    tried += tried.empty() ? name : fmt::format(", {}", name);
  }
  std::vector<fs::path> jsonl;
  std::error_code error;
  if (fs::is_directory(dir, error))
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.is_regular_file() && entry.path().extension() == ".jsonl") jsonl.push_back(entry.path());
  if (jsonl.size() == 1) return jsonl[0];
  fail("{}: no data file found (tried {}{})", dir.string(), tried,
       jsonl.empty() ? ", any *.jsonl" : "; several *.jsonl files, name one of the above");
}

}  // namespace cq
