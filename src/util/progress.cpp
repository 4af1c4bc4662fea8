#include "util/progress.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fmt/format.h>

#include "util/cancel.h"

namespace cq {

namespace {
std::atomic<bool> quiet_bars{false};

std::string format_seconds(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60) : fmt::format("{:02}:{:02}", s / 60, s % 60);
}
}  // namespace

ProgressBar::ProgressBar(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), terminal_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (!finished_ && terminal_ && started_) std::fputc('\n', stderr);
}

void ProgressBar::set_quiet(bool quiet) { quiet_bars = quiet; }

void ProgressBar::advance(int64_t steps) {
  check_cancelled();
  if (quiet_bars) {
    done_ += steps;
    return;
  }
  if (!terminal_ && !started_ && total_ > 0) {  // the start line of a log
    last_decile_ = static_cast<int>(done_ * 10 / total_);
    draw(false);
  }
  started_ = true;
  done_ += steps;
  const auto now = std::chrono::steady_clock::now();
  if (terminal_) {
    if (now - last_draw_ > std::chrono::milliseconds(100) || done_ >= total_) {
      last_draw_ = now;
      draw(false);
    }
  } else if (total_ > 0) {
    const int decile = static_cast<int>(done_ * 10 / total_);
    if (decile != last_decile_) {
      last_decile_ = decile;
      draw(false);
    }
  }
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (terminal_ && started_) std::fputc('\n', stderr);
}

void ProgressBar::note(const std::string& line) {
  if (quiet_bars) return;
  // On a terminal the bar's line is cleared, the note printed, and the bar drawn again below it.
  const bool redraw = terminal_ && started_ && !finished_;
  if (redraw) std::fputs("\r\033[K", stderr);
  std::fprintf(stderr, "%s\n", line.c_str());
  if (redraw) draw(false);
  std::fflush(stderr);
}

void ProgressBar::draw(bool) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double fraction = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
  const double eta = fraction > 0 ? elapsed / fraction - elapsed : 0.0;
  const int width = 30;
  const int filled = static_cast<int>(fraction * width);
  const std::string bar = std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(width - filled), '.');
  const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  const std::string line = fmt::format("{} [{}] {}/{} {:.1f} {}/s elapsed {} eta {}", label_, bar, done_, total_, rate,
                                       unit_.empty() ? "it" : unit_, format_seconds(elapsed), format_seconds(eta));
  if (terminal_) std::fprintf(stderr, "\r%s\033[K", line.c_str());
  else std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace cq
