#pragma once
// Outputs are written to "<name>.tmp.<pid>" and renamed over the final name only when
// complete, so an interrupted run never leaves a half-written file under that name.
#include <filesystem>
#include <string_view>

namespace cq {

// Writes `contents` to `path` atomically; throws cq::Error naming the file on failure.
void write_file_atomically(const std::filesystem::path& path, std::string_view contents);

}  // namespace cq
