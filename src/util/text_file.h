#pragma once
// Reading user files whole into memory, with an upper bound on their size so that a wrong or
// corrupt path (a 10 GB download where a config belongs, a JSONL file that is one 10 GB
// line) is refused early with a message naming the file, never read into memory first.
// The limits: util/limits.h.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <istream>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "util/limits.h"

namespace cq {

// Opens a file for reading, in binary; throws cq::Error naming it when it is a directory or
// cannot be opened.
std::ifstream open_input_file(const std::filesystem::path& path);

// Reads a whole file; throws cq::Error naming it when it cannot be read or holds more than
// max_bytes (checked before reading for a regular file, while reading for a pipe).
std::string read_text_file(const std::filesystem::path& path, int64_t max_bytes = kMaxTextFileBytes);

// Reads and parses a JSON file of at most max_bytes; throws cq::Error naming the file when
// it is missing, too large or not valid JSON (a UTF-8 BOM and CRLF line ends are accepted).
nlohmann::json read_json_file(const std::filesystem::path& path, int64_t max_bytes = kMaxConfigFileBytes);

// Reads the next line of `in` into `line` (without its '\n'); false at the end of the stream.
// A line longer than max_bytes is refused as soon as the limit is crossed (nothing more of it
// is read), naming `source` and the 1-based `line_number`.
bool read_bounded_line(std::istream& in, std::string& line, int64_t max_bytes, const std::string& source,
                       int64_t line_number);

}  // namespace cq
