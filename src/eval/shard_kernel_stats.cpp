#include "eval/shard_kernel_stats.h"

#include <cstdint>

#include "util/parallel.h"

namespace cq {

namespace {
constexpr size_t kFields = 6;  // the counts of KernelStats
static_assert(sizeof(KernelStats) == kFields * sizeof(int64_t), "a new KernelStats count must be summed here too");

void add_fields(const KernelStats& s, int64_t sign, int64_t* out) {
  const int64_t fields[kFields] = {s.elements, s.kernel, s.exact_zeros, s.column_max_ge_row_max, s.bound_below_per_token, s.clipped};
  for (size_t f = 0; f < kFields; ++f) out[f] += sign * fields[f];
}
}  // namespace

void ShardedKernelStats::sum_over_ranks() {
  if (parallel::ranks() == 1) return;
  std::vector<KernelStats> stats = model_.kernel_stats();
  if (before_.size() != stats.size()) before_.resize(stats.size());
  std::vector<int64_t> increase(stats.size() * kFields, 0);
  for (size_t i = 0; i < stats.size(); ++i) {
    add_fields(stats[i], 1, &increase[i * kFields]);
    add_fields(before_[i], -1, &increase[i * kFields]);
  }
  parallel::sum(increase);
  for (size_t i = 0; i < stats.size(); ++i) {
    const int64_t* d = &increase[i * kFields];
    KernelStats total = before_[i];
    total.merge({d[0], d[1], d[2], d[3], d[4], d[5]});
    stats[i] = total;
  }
  model_.replace_kernel_stats(std::move(stats));
}

}  // namespace cq
