#pragma once
// Pieces shared by the quantizer implementations (internal to src/quant/): validation,
// the parallel row loops, and the Table 1 counts.
#include <algorithm>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "quant/quantizer.h"
#include "quant/row_kernels.h"

namespace cq::quant_detail {

// qmax = 2^(N-1) - 1 for N in 2..8 (SPEC.md); throws cq::Error otherwise.
float symmetric_qmax(int bits, std::string_view method);

// Throws cq::Error for a view with negative sizes, a stride below cols, or null data.
void check_view(const MatrixView& x, std::string_view method);

// Guards the zero rows / columns of SPEC.md: a zero max means every value it bounds is 0,
// so any non-zero divisor gives code 0; 1 keeps 0/0 = NaN out.
inline float nonzero_divisor(float divisor) { return divisor > 0.f ? divisor : 1.f; }

// Big enough that OpenMP's fork/join is worth it.
inline bool worth_parallel(const MatrixView& x) { return x.rows > 1 && x.rows * x.cols >= (int64_t{1} << 15); }

[[noreturn]] void fail_nonfinite(std::string_view method, int64_t row);

// The contiguous block of rows the calling OpenMP thread owns (equal shares, as
// schedule(static) gives), so that each thread's per-thread column maxima cover whole rows.
struct RowBlock {
  int64_t begin = 0;
  int64_t end = 0;
};
RowBlock rows_of_this_thread(int64_t rows);

struct RowPass {
  std::vector<float> row_absmax;     // t_i
  std::vector<float> column_absmax;  // c_j (empty unless requested)
  quant_kernels::RowCounts counts;   // summed over what after_scan returned
  int64_t exact_zeros = 0;
};

// One parallel pass over the rows in groups of up to Group consecutive rows (of one thread's
// block): scan each row of the group (t_i, finiteness, and c_j when asked), then call
// after_scan(begin, count, t) with t the group's row maxima while the rows are still in cache
// (per-token quantizes them there; CrossQuant with known c quantizes rows in pairs).
// Throws cq::Error naming the first row with NaN/Inf; groups before it may already have been
// processed by after_scan, its own group is not. after_scan must not throw.
template <int64_t Group, typename AfterScan>
RowPass scan_row_groups(const MatrixView& x, bool want_column_absmax, std::string_view method,
                        AfterScan&& after_scan) {
  RowPass pass;
  pass.row_absmax.assign(static_cast<size_t>(x.rows), 0.f);
  if (want_column_absmax) pass.column_absmax.assign(static_cast<size_t>(x.cols), 0.f);
  int64_t first_nonfinite_row = x.rows;
  int64_t kernel = 0;
  int64_t clipped = 0;
  int64_t exact_zeros = 0;
#pragma omp parallel if (worth_parallel(x)) reduction(+ : kernel, clipped, exact_zeros) \
    reduction(min : first_nonfinite_row)
  {
    std::vector<float> local_column_absmax(want_column_absmax ? static_cast<size_t>(x.cols) : 0, 0.f);
    const RowBlock block = rows_of_this_thread(x.rows);
    for (int64_t begin = block.begin; begin < block.end; begin += Group) {
      const int64_t count = std::min(Group, block.end - begin);
      bool finite = true;
      for (int64_t i = begin; i < begin + count; ++i) {
        const quant_kernels::RowScan scan = quant_kernels::scan_row(
            x.row(i), x.cols, want_column_absmax ? local_column_absmax.data() : nullptr);
        if (!scan.finite) {
          first_nonfinite_row = std::min(first_nonfinite_row, i);
          finite = false;
          continue;
        }
        pass.row_absmax[static_cast<size_t>(i)] = scan.absmax;
        exact_zeros += scan.exact_zeros;
      }
      if (!finite) continue;
      const quant_kernels::RowCounts counts = after_scan(begin, count, pass.row_absmax.data() + begin);
      kernel += counts.kernel;
      clipped += counts.clipped;
    }
    if (want_column_absmax) {
#pragma omp critical(cq_quant_column_merge)
      for (size_t j = 0; j < local_column_absmax.size(); ++j)
        pass.column_absmax[j] = std::max(pass.column_absmax[j], local_column_absmax[j]);
    }
  }
  if (first_nonfinite_row < x.rows) fail_nonfinite(method, first_nonfinite_row);
  pass.counts.kernel = kernel;
  pass.counts.clipped = clipped;
  pass.exact_zeros = exact_zeros;
  return pass;
}

// scan_row_groups one row at a time: after_scan(i, t_i).
template <typename AfterScan>
RowPass scan_rows(const MatrixView& x, bool want_column_absmax, std::string_view method, AfterScan&& after_scan) {
  return scan_row_groups<1>(x, want_column_absmax, method,
                            [&](int64_t i, int64_t, const float* row_absmax) { return after_scan(i, *row_absmax); });
}

// Parallel loop over rows summing what quantize_row(i) returns. quantize_row must not throw.
template <typename QuantizeRow>
quant_kernels::RowCounts for_each_row(const MatrixView& x, QuantizeRow&& quantize_row) {
  int64_t kernel = 0;
  int64_t clipped = 0;
#pragma omp parallel for schedule(static) if (worth_parallel(x)) reduction(+ : kernel, clipped)
  for (int64_t i = 0; i < x.rows; ++i) {
    const quant_kernels::RowCounts counts = quantize_row(i);
    kernel += counts.kernel;
    clipped += counts.clipped;
  }
  return {kernel, clipped};
}

// Like for_each_row, but in groups of up to Group rows, quantize_group(begin, count), and
// each thread walks the rows of its scan_rows block last to first: after a scan pass the
// most recently read rows are the ones still in cache (a 2048 x 4096 window is as large as
// the L3), so the second pass starts where the first left off.
template <int64_t Group, typename QuantizeGroup>
quant_kernels::RowCounts for_each_row_group_after_scan(const MatrixView& x, QuantizeGroup&& quantize_group) {
  int64_t kernel = 0;
  int64_t clipped = 0;
#pragma omp parallel if (worth_parallel(x)) reduction(+ : kernel, clipped)
  {
    const RowBlock block = rows_of_this_thread(x.rows);
    for (int64_t end = block.end; end > block.begin;) {
      const int64_t begin = std::max(block.begin, end - Group);
      const quant_kernels::RowCounts counts = quantize_group(begin, end - begin);
      kernel += counts.kernel;
      clipped += counts.clipped;
      end = begin;
    }
  }
  return {kernel, clipped};
}

// Table 1 of the paper over all (i, j): c_j >= t_i, and B̃_ij < B_ij. B̃ < B means
// t^α c^(1−α) < t, which for t > 0 and α < 1 is exactly c < t (paper §4.2, case I); the
// count is taken in that exact form so float rounding of the powers never decides it.
// For α = 1 (per-token) B̃ = B and nothing is counted.
struct ColumnRowRelation {
  int64_t column_max_ge_row_max = 0;
  int64_t bound_below_per_token = 0;
};
ColumnRowRelation count_column_row_relation(const std::vector<float>& row_absmax,
                                            std::span<const float> column_absmax, double alpha);

// Adds one call's counts to *stats.
void add_stats(KernelStats* stats, const MatrixView& x, const quant_kernels::RowCounts& counts,
               int64_t exact_zeros, const ColumnRowRelation& relation);

}  // namespace cq::quant_detail
