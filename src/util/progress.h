#pragma once
// A progress bar with an ETA on stderr, named by its job ("ppl", "kernel", a task name).
// Redrawn in place when stderr is a terminal; otherwise a few lines (start, every ~10 %,
// end) so logs stay readable. `--quiet` turns every bar off (set_quiet).
#include <chrono>
#include <cstdint>
#include <string>

namespace cq {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, std::string unit = "");
  ~ProgressBar();
  void advance(int64_t steps = 1);
  void finish();
  // One line of news (e.g. a loss) on stderr above the bar; nothing under --quiet.
  void note(const std::string& line);
  // Process-wide: no progress output from any bar (cq --quiet).
  static void set_quiet(bool quiet);

 private:
  void draw(bool final_draw);
  std::string label_, unit_;
  int64_t total_ = 0, done_ = 0;
  int last_decile_ = -1;
  bool terminal_ = false, finished_ = false, started_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace cq
