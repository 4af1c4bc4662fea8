#pragma once
// Interrupted runs (SIGINT, SIGTERM, SIGHUP): the handler removes the temporaries of outputs
// being written (registered by PendingTemporary, see atomic_file.cpp and write_safetensors),
// prints one clear line and dies of the same signal (exit status 128 + signal), so nothing
// partial is ever left under a final name nor beside it.
#include <filesystem>

namespace cq {

// Installs the handler for SIGINT, SIGTERM and SIGHUP (idempotent).
void install_interrupt_handler();

// Registers `path` as a temporary to delete if the process is interrupted while this object
// lives. At most 64 at a time (further ones are simply not tracked); paths over 4 KB are not tracked.
class PendingTemporary {
 public:
  explicit PendingTemporary(const std::filesystem::path& path);
  ~PendingTemporary();
  PendingTemporary(const PendingTemporary&) = delete;
  PendingTemporary& operator=(const PendingTemporary&) = delete;

 private:
  int slot_ = -1;
};

}  // namespace cq
