#pragma once
// Kernel statistics of work shared by MPI ranks (util/parallel.h): each rank counts its
// share; the counts are integers, so their sum over the ranks equals one process's count.
#include <vector>

#include "model/transformer.h"

namespace cq {

// Taken before the shared work; sum_over_ranks() then adds every rank's increase since.
class ShardedKernelStats {
 public:
  explicit ShardedKernelStats(Transformer& model) : model_(model), before_(model.kernel_stats()) {}
  void sum_over_ranks();

 private:
  Transformer& model_;
  std::vector<KernelStats> before_;
};

}  // namespace cq
