#include "util/text_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "util/error.h"

namespace cq {

namespace {

// "64 MiB", "1 GiB", "10.0 GiB", "512 bytes".
std::string describe_bytes(uint64_t bytes) {
  constexpr const char* kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) value /= 1024, ++unit;
  if (unit == 0) return fmt::format("{} bytes", bytes);
  return value == static_cast<double>(static_cast<uint64_t>(value)) ? fmt::format("{} {}", static_cast<uint64_t>(value), kUnits[unit])
                                                                    : fmt::format("{:.1f} {}", value, kUnits[unit]);
}

[[noreturn]] void fail_too_large(const std::filesystem::path& path, uint64_t bytes, int64_t max_bytes) {
  fail("{}: {} ({} bytes) is more than the {} accepted for this file (resource limits: docs/ROBUSTNESS.md)",
       path.string(), describe_bytes(bytes), bytes, describe_bytes(static_cast<uint64_t>(max_bytes)));
}

// A regular file larger than max_bytes is refused before anything is read.
void check_file_size(const std::filesystem::path& path, int64_t max_bytes) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (!ec && size > static_cast<uintmax_t>(max_bytes)) fail_too_large(path, size, max_bytes);
}

}  // namespace

std::ifstream open_input_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("{}: is a directory, expected a file", path.string());
  std::ifstream stream(path, std::ios::binary);
  if (!stream) fail("{}: cannot open: {}", path.string(), std::strerror(errno));
  return stream;
}

std::string read_text_file(const std::filesystem::path& path, int64_t max_bytes) {
  std::ifstream stream = open_input_file(path);
  check_file_size(path, max_bytes);
  std::string contents;
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (!ec) contents.reserve(size);
  // Bounded also when the size is unknown in advance (a pipe) or grows while being read.
  std::vector<char> buffer(1 << 16);
  while (stream.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || stream.gcount() > 0) {
    const auto count = static_cast<size_t>(stream.gcount());
    if (contents.size() + count > static_cast<uint64_t>(max_bytes)) fail_too_large(path, contents.size() + count, max_bytes);
    contents.append(buffer.data(), count);
  }
  if (stream.bad()) fail("{}: read error", path.string());
  return contents;
}

nlohmann::json read_json_file(const std::filesystem::path& path, int64_t max_bytes) {
  const std::string text = read_text_file(path, max_bytes);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number overflow
    fail("{}: malformed JSON ({})", path.string(), e.what());
  }
}

bool read_bounded_line(std::istream& in, std::string& line, int64_t max_bytes, const std::string& source,
                       int64_t line_number) {
  line.clear();
  std::streambuf* buffer = in.rdbuf();
  for (int ch = buffer->sbumpc(); ch != std::char_traits<char>::eof(); ch = buffer->sbumpc()) {
    if (ch == '\n') return true;
    if (static_cast<int64_t>(line.size()) >= max_bytes)
      fail("{}: line {} is longer than {}, the limit for one record (resource limits: docs/ROBUSTNESS.md)", source,
           line_number, describe_bytes(static_cast<uint64_t>(max_bytes)));
    line.push_back(static_cast<char>(ch));
  }
  in.setstate(std::ios::eofbit);
  return !line.empty();
}

}  // namespace cq
