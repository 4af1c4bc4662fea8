#pragma once
// Column maxima max_i |y_ij| gathered by the kernel that writes y, a few rows at a time, while
// those rows are still in cache (or in registers). Dynamic CrossQuant needs c_j = max_i |X_ij| over a window of rows before
// it can quantize any of them; taken here, it saves the quantizer a whole pass over the
// matrix (docs/PERFORMANCE.md, "Activation quantization cost").
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

namespace cq::kernels {

// column_absmax[j] = max(column_absmax[j], |x_ij|) for j < n over `rows` rows of x that start
// `stride` elements apart. Magnitudes compare as their bit patterns, so NaN (above every
// finite value) propagates instead of vanishing.
void update_column_absmax(const float* x, int64_t rows, int64_t n, int64_t stride, float* column_absmax);

// Rows a producer writes together: one read-modify-write of the column maxima per group
// instead of per row (and the norms load their weights once per group).
inline constexpr int64_t kGatherRowGroup = 4;

// Runs produce_group(begin, end, gather) over the rows [0, rows) of a rows × cols output, on
// the OpenMP threads when `parallel`, each thread taking one contiguous block of rows in
// groups of at most kGatherRowGroup rows that never straddle a window. produce_group writes
// those rows and, when `gather` is non-null, raises gather[j] to max |y_ij| over them (a
// bit-pattern max, as update_column_absmax). When column_absmax is non-null it receives, per
// window w (rows [window_bounds[w], window_bounds[w + 1]), window_bounds[0] = 0, the last
// bound = rows), column_absmax[w · cols + j] = max over the window's rows of |y_ij|: each
// thread gathers into its own copy and merges once per window it touched. Without
// column_absmax, gather is null.
template <typename ProduceGroup>
void produce_row_groups(int64_t rows, int64_t cols, bool parallel, std::span<const int64_t> window_bounds,
                        float* column_absmax, ProduceGroup&& produce_group) {
  if (column_absmax == nullptr) {
    const int64_t groups = (rows + kGatherRowGroup - 1) / kGatherRowGroup;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t g = 0; g < groups; ++g)
      produce_group(g * kGatherRowGroup, std::min(rows, (g + 1) * kGatherRowGroup), static_cast<float*>(nullptr));
    return;
  }
  const auto windows = static_cast<int64_t>(window_bounds.size()) - 1;
  std::fill(column_absmax, column_absmax + windows * cols, 0.f);
#pragma omp parallel if (parallel)
  {
    const int64_t threads = omp_get_num_threads();
    const int64_t thread = omp_get_thread_num();
    const int64_t begin = rows * thread / threads;
    const int64_t end = rows * (thread + 1) / threads;
    std::vector<float> local(static_cast<size_t>(cols), 0.f);
    int64_t window = 0;
    while (window + 1 < windows && window_bounds[static_cast<size_t>(window + 1)] <= begin) ++window;
    auto merge = [&] {
#pragma omp critical(cq_kernels_column_absmax_merge)
      update_column_absmax(local.data(), 1, cols, cols, column_absmax + window * cols);
      std::fill(local.begin(), local.end(), 0.f);
    };
    for (int64_t i = begin; i < end;) {
      if (i >= window_bounds[static_cast<size_t>(window + 1)]) {
        merge();
        while (i >= window_bounds[static_cast<size_t>(window + 1)]) ++window;
      }
      const int64_t group_end =
          std::min({end, i + kGatherRowGroup, window_bounds[static_cast<size_t>(window + 1)]});
      produce_group(i, group_end, local.data());
      i = group_end;
    }
    if (begin < end) merge();
  }
}

// produce_row_groups for a producer that writes one row at a time (produce_row(i) writes row
// i of y): the rows of each group are gathered right after they are written.
template <typename ProduceRow>
void produce_rows(float* y, int64_t rows, int64_t cols, bool parallel, std::span<const int64_t> window_bounds,
                  float* column_absmax, ProduceRow&& produce_row) {
  produce_row_groups(rows, cols, parallel, window_bounds, column_absmax,
                     [&](int64_t begin, int64_t end, float* gather) {
                       for (int64_t i = begin; i < end; ++i) produce_row(i);
                       if (gather != nullptr) update_column_absmax(y + begin * cols, end - begin, cols, cols, gather);
                     });
}

}  // namespace cq::kernels
