#pragma once
#include <filesystem>
#include <string>

namespace cq {
// Reads a whole file; throws cq::Error naming it when it cannot be read.
std::string read_text_file(const std::filesystem::path& path);
}  // namespace cq
