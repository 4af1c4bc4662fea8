#pragma once
// Python's `random.Random(seed)` (CPython 3: MT19937 seeded by init_by_array over the seed's
// 32-bit words, getrandbits-based _randbelow, and Random.sample's choice between a pool and a
// set of selected indices), so that lm-evaluation-harness's few-shot draws
// (`random.Random(1234).sample(docs, n)`) are reproduced exactly. Checked against
// /usr/bin/python3 by tests/reference/python_random_golden.py.
#include <array>
#include <cstdint>
#include <vector>

namespace cq {

class PythonRandom {
 public:
  explicit PythonRandom(uint64_t seed);  // random.Random(seed) for a non-negative int seed

  uint32_t next_uint32();           // genrand_uint32
  uint64_t getrandbits(int bits);   // 0 < bits <= 64
  uint64_t randbelow(uint64_t n);   // _randbelow_with_getrandbits, n > 0
  // Indices of random.sample(range(population), k) in selection order; k <= population.
  std::vector<int64_t> sample(int64_t population, int64_t k);

 private:
  void init_genrand(uint32_t seed);
  std::array<uint32_t, 624> state_{};
  int index_ = 625;
};

}  // namespace cq
