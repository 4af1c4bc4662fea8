#pragma once
// The quantization windows of an activation matrix: consecutive row ranges whose tokens
// share window-wide statistics (a per-tensor scale, CrossQuant's column maxima c_j). One
// sequence is one window; a packed forward makes one window per tree (forward_packed).
#include <cstdint>
#include <span>
#include <vector>

namespace cq {

class RowWindows {
 public:
  RowWindows() : bounds_{0} {}
  RowWindows(int64_t rows, int64_t length);          // every `length` rows (the last may be shorter)
  explicit RowWindows(std::vector<int64_t> bounds);  // window w = rows [bounds[w], bounds[w + 1]), bounds[0] = 0
  int64_t rows() const { return bounds_.back(); }
  int64_t count() const { return static_cast<int64_t>(bounds_.size()) - 1; }
  int64_t begin(int64_t w) const { return bounds_[static_cast<size_t>(w)]; }
  int64_t size(int64_t w) const { return bounds_[static_cast<size_t>(w) + 1] - bounds_[static_cast<size_t>(w)]; }
  int64_t max_size() const;
  std::span<const int64_t> bounds() const { return bounds_; }

 private:
  std::vector<int64_t> bounds_;
};

}  // namespace cq
