#include "util/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "util/error.h"
#include "util/interrupt.h"
#include "util/parallel.h"

namespace cq {

void write_file_atomically(const std::filesystem::path& path, std::string_view contents) {
  if (!parallel::writes_outputs()) return;  // in an MPI job, rank 0 writes every output
  std::filesystem::path temporary = path;
  temporary += fmt::format(".tmp.{}", ::getpid());
  const PendingTemporary pending(temporary);  // removed if the run is interrupted
  std::FILE* file = std::fopen(temporary.c_str(), "wb");
  // Name the user's path, not the temporary beside it.
  if (!file) {
    const std::filesystem::path folder = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    fail("{}: cannot create a file in {}: {}", path.string(), folder.string(), std::strerror(errno));
  }
  const bool written = std::fwrite(contents.data(), 1, contents.size(), file) == contents.size();
  const bool flushed = std::fflush(file) == 0 && ::fsync(::fileno(file)) == 0;
  const bool closed = std::fclose(file) == 0;
  if (!written || !flushed || !closed) {
    std::remove(temporary.c_str());
    fail("{}: write failed: {}", path.string(), std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(temporary, path, ec);
  if (ec) {
    std::remove(temporary.c_str());
    fail("{}: cannot rename into place: {}", path.string(), ec.message());
  }
}

}  // namespace cq
