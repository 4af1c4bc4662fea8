#include "quant/quant_common.h"

#include <omp.h>

#include <algorithm>

#include "util/error.h"

namespace cq::quant_detail {

float symmetric_qmax(int bits, std::string_view method) {
  if (bits < 2 || bits > 8) fail("quantizer {}: bit width {} is not supported (2..8)", method, bits);
  return static_cast<float>((1 << (bits - 1)) - 1);
}

void check_view(const MatrixView& x, std::string_view method) {
  if (x.rows < 0 || x.cols < 0) fail("quantizer {}: negative matrix size {} x {}", method, x.rows, x.cols);
  if (x.rows > 0 && x.stride < x.cols)
    fail("quantizer {}: row stride {} is below the column count {}", method, x.stride, x.cols);
  if (x.rows > 0 && x.cols > 0 && x.data == nullptr) fail("quantizer {}: matrix data is null", method);
}

void fail_nonfinite(std::string_view method, int64_t row) {
  fail("quantizer {}: input row {} holds NaN or Inf", method, row);
}

RowBlock rows_of_this_thread(int64_t rows) {
  const int64_t threads = omp_get_num_threads();
  const int64_t thread = omp_get_thread_num();
  const int64_t base = rows / threads;
  const int64_t extra = rows % threads;  // the first `extra` threads take one more row
  RowBlock block;
  block.begin = thread * base + std::min(thread, extra);
  block.end = block.begin + base + (thread < extra ? 1 : 0);
  return block;
}

ColumnRowRelation count_column_row_relation(const std::vector<float>& row_absmax,
                                            std::span<const float> column_absmax, double alpha) {
  const auto columns = static_cast<int64_t>(column_absmax.size());
  ColumnRowRelation relation;
  // A few rows (decoding: one token): count directly, O(rows·cols), rather than sort.
  if (row_absmax.size() <= 16) {
    for (const float row_max : row_absmax) {
      int64_t at_least = 0;
      for (const float column_max : column_absmax) at_least += column_max >= row_max ? 1 : 0;
      relation.column_max_ge_row_max += at_least;
      if (alpha < 1.0 && row_max > 0.f) relation.bound_below_per_token += columns - at_least;
    }
    return relation;
  }
  std::vector<float> sorted_columns(column_absmax.begin(), column_absmax.end());
  std::sort(sorted_columns.begin(), sorted_columns.end());
  for (const float row_max : row_absmax) {
    const auto below = static_cast<int64_t>(
        std::lower_bound(sorted_columns.begin(), sorted_columns.end(), row_max) - sorted_columns.begin());
    relation.column_max_ge_row_max += columns - below;
    if (alpha < 1.0 && row_max > 0.f) relation.bound_below_per_token += below;
  }
  return relation;
}

void add_stats(KernelStats* stats, const MatrixView& x, const quant_kernels::RowCounts& counts,
               int64_t exact_zeros, const ColumnRowRelation& relation) {
  KernelStats call;
  call.elements = x.rows * x.cols;
  call.kernel = counts.kernel;
  call.exact_zeros = exact_zeros;
  call.column_max_ge_row_max = relation.column_max_ge_row_max;
  call.bound_below_per_token = relation.bound_below_per_token;
  call.clipped = counts.clipped;
  stats->merge(call);
}

}  // namespace cq::quant_detail
