#include "model/row_windows.h"

#include <algorithm>
#include <utility>

#include "util/error.h"

namespace cq {

RowWindows::RowWindows(int64_t rows, int64_t length) : bounds_{0} {
  if (length <= 0) length = std::max<int64_t>(rows, 1);
  for (int64_t start = 0; start < rows; start += length) bounds_.push_back(std::min(start + length, rows));
}

RowWindows::RowWindows(std::vector<int64_t> bounds) : bounds_(std::move(bounds)) {
  if (bounds_.empty() || bounds_.front() != 0) fail("internal error: row windows must start at row 0");
  for (size_t w = 1; w < bounds_.size(); ++w)
    if (bounds_[w] < bounds_[w - 1]) fail("internal error: row windows must be increasing");
}

int64_t RowWindows::max_size() const {
  int64_t largest = 0;
  for (int64_t w = 0; w < count(); ++w) largest = std::max(largest, size(w));
  return largest;
}

}  // namespace cq
