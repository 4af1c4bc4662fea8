#include "model/position_limit.h"

#include <atomic>
#include <cstdio>

#include <fmt/format.h>

#include "util/error.h"

namespace cq {

void check_position_limit(const ModelConfig& config, const std::string& model, int64_t positions,
                          const std::string& request) {
  const int64_t limit = config.max_position_embeddings;
  if (positions <= limit) return;
  const std::string asked = request.empty() ? fmt::format("a sequence of {} positions", positions)
                                            : fmt::format("{} ({} positions)", request, positions);
  if (config.positions == PositionKind::Learned)
    fail("{}: {} exceeds max_position_embeddings {} (learned positions end there)", model, asked, limit);
  static std::atomic<bool> warned{false};
  if (warned.exchange(true)) return;
  std::fprintf(stderr,
               "cq: warning: %s: %s exceeds max_position_embeddings %lld; rotary positions are computed past it, "
               "but the model was not trained there (results may degrade)\n",
               model.c_str(), asked.c_str(), static_cast<long long>(limit));
  std::fflush(stderr);
}

}  // namespace cq
