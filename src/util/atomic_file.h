#pragma once
// Outputs are written to "<name>.tmp.<pid>" and renamed over the final name only when
// complete, so an interrupted run never leaves a half-written file under that name.
#include <filesystem>
#include <string_view>

namespace cq {

// Writes `contents` to `path` atomically; throws cq::Error naming the file on failure.
// In an MPI job only rank 0 writes (util/parallel.h); the other ranks return at once.
void write_file_atomically(const std::filesystem::path& path, std::string_view contents);

}  // namespace cq
