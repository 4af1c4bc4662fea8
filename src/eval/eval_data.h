#pragma once
// Reading the evaluation sets' original files: JSONL and CSV records with their line
// numbers (a malformed record stops the run naming file and line), and the few Python
// string operations the task templates rely on (str.strip/rstrip, str.capitalize).
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace cq {

struct JsonRecord {
  nlohmann::json value;
  int64_t line = 0;  // 1-based line of the record in its file
};

// Parses every non-blank line of a JSONL file (at most `limit` records; <= 0: all). The file
// is streamed: a line longer than kMaxJsonlLineBytes is refused without reading it whole.
std::vector<JsonRecord> read_jsonl(const std::filesystem::path& path, int64_t limit = 0);
// The same on a stream; `source` names it in messages.
std::vector<JsonRecord> read_jsonl(std::istream& in, const std::filesystem::path& source, int64_t limit = 0);

// Field accessors that fail with "FILE: line N: ..." when the field is missing or mistyped.
const nlohmann::json& json_field(const JsonRecord& record, const std::filesystem::path& file, std::string_view key);
std::string json_string(const JsonRecord& record, const std::filesystem::path& file, std::string_view key);
std::string json_string(const nlohmann::json& value, const JsonRecord& record, const std::filesystem::path& file,
                        std::string_view what);
[[noreturn]] void fail_record(const std::filesystem::path& file, int64_t line, const std::string& what);

struct CsvRow {
  std::vector<std::string> fields;
  int64_t line = 0;  // line where the record starts
};

// RFC 4180 CSV (Python's csv.reader defaults): ',' separators, '"' quoting with '""' as an
// escaped quote, newlines kept inside quoted fields, records end at \n or \r\n.
std::vector<CsvRow> parse_csv(std::string_view text, const std::filesystem::path& file);

// Python's str.isspace() for one code point, and str.strip()/rstrip() on UTF-8 text.
bool python_isspace(char32_t code_point);
std::string python_strip(std::string_view text);
std::string python_rstrip(std::string_view text);
// Python's str.capitalize(): first character upper case, every other one lower case.
// Case mapping covers ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic.
std::string python_capitalize(std::string_view text);
// Number of Unicode code points (Python's len(str)) of UTF-8 text.
int64_t python_length(std::string_view text);

// The data file of a task inside `dir`: the first existing name among `candidates`, else the
// only *.jsonl file there; fails naming the directory and the names tried.
std::filesystem::path find_data_file(const std::filesystem::path& dir, std::initializer_list<const char*> candidates);

}  // namespace cq
