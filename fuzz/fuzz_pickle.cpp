// Fuzz target: the restricted unpickler (io/pickle_reader). Input: the pickle's bytes (what
// a torch.save archive holds as <name>/data.pkl). An accepted pickle is walked from its root
// through every container (bounded by the reader's depth limit, with a step budget since a
// list may contain itself).
#include <cstdint>

#include "fuzz_common.h"
#include "io/pickle_reader.h"

namespace cq::fuzz {
inline void walk_pickle(const PickleReader& reader, size_t index, int depth, int64_t& budget) {
  if (depth > kMaxPickleDepth + 1 || --budget < 0) return;
  const PickleValue& value = reader.value(index);
  for (size_t item : value.items) walk_pickle(reader, item, depth + 1, budget);
  if (value.kind == PickleKind::Tensor) (void)reader.value(value.tensor.storage).storage.numel;
}
}  // namespace cq::fuzz

CQ_FUZZ_TARGET(pickle) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(input.data()), input.size());
  expect_only_cq_errors([&] {
    PickleReader reader(bytes, "fuzz.pkl");
    int64_t budget = 1'000'000;
    walk_pickle(reader, reader.root(), 0, budget);
  });
}
