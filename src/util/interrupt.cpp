#include "util/interrupt.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>

namespace cq {
namespace {

constexpr int kSlots = 64;
constexpr size_t kPathBytes = 4096;

struct Slot {
  std::atomic<bool> claimed{false};
  std::atomic<bool> ready{false};  // path is complete and the file may exist
  char path[kPathBytes];
};
Slot slots[kSlots];

void write_stderr(const char* text) {
  const ssize_t ignored = ::write(STDERR_FILENO, text, ::strlen(text));
  (void)ignored;
}

// Async-signal-safe: unlink, write, signal, raise only.
void on_signal(int signal_number) {
  for (Slot& slot : slots)
    if (slot.ready.load()) ::unlink(slot.path);
  const char* name = signal_number == SIGINT ? "SIGINT" : signal_number == SIGTERM ? "SIGTERM" : "SIGHUP";
  write_stderr("cq: interrupted by ");
  write_stderr(name);
  write_stderr("; partial outputs removed, nothing was written under the requested output names\n");
  ::signal(signal_number, SIG_DFL);
  ::raise(signal_number);
}

}  // namespace

void install_interrupt_handler() {
  struct sigaction action{};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  sigaddset(&action.sa_mask, SIGINT);
  sigaddset(&action.sa_mask, SIGTERM);
  sigaddset(&action.sa_mask, SIGHUP);
  action.sa_flags = SA_RESETHAND;
  for (int signal_number : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(signal_number, &action, nullptr);
}

PendingTemporary::PendingTemporary(const std::filesystem::path& path) {
  const std::string& text = path.native();
  if (text.size() >= kPathBytes) return;
  for (int i = 0; i < kSlots; ++i) {
    bool expected = false;
    if (slots[i].claimed.compare_exchange_strong(expected, true)) {
      ::memcpy(slots[i].path, text.c_str(), text.size() + 1);
      slots[i].ready.store(true);
      slot_ = i;
      return;
    }
  }
}

PendingTemporary::~PendingTemporary() {
  if (slot_ < 0) return;
  slots[slot_].ready.store(false);
  slots[slot_].claimed.store(false);
}

}  // namespace cq
