#include "util/python_random.h"

#include <cmath>
#include <unordered_set>

#include "util/error.h"

namespace cq {

namespace {
constexpr int kN = 624, kM = 397;
constexpr uint32_t kMatrixA = 0x9908b0dfU, kUpperMask = 0x80000000U, kLowerMask = 0x7fffffffU;
}  // namespace

void PythonRandom::init_genrand(uint32_t seed) {
  state_[0] = seed;
  for (int i = 1; i < kN; ++i)
    state_[static_cast<size_t>(i)] =
        1812433253U * (state_[static_cast<size_t>(i - 1)] ^ (state_[static_cast<size_t>(i - 1)] >> 30)) +
        static_cast<uint32_t>(i);
  index_ = kN;
}

PythonRandom::PythonRandom(uint64_t seed) {
  // random_seed(): the absolute value of the int as little-endian 32-bit words (0 -> [0]).
  std::vector<uint32_t> key = {static_cast<uint32_t>(seed & 0xffffffffU)};
  if (seed >> 32) key.push_back(static_cast<uint32_t>(seed >> 32));
  init_genrand(19650218U);
  size_t i = 1, j = 0;
  for (size_t k = std::max<size_t>(kN, key.size()); k > 0; --k) {
    state_[i] = (state_[i] ^ ((state_[i - 1] ^ (state_[i - 1] >> 30)) * 1664525U)) + key[j] + static_cast<uint32_t>(j);
    ++i, ++j;
    if (i >= kN) state_[0] = state_[kN - 1], i = 1;
    if (j >= key.size()) j = 0;
  }
  for (size_t k = kN - 1; k > 0; --k) {
    state_[i] = (state_[i] ^ ((state_[i - 1] ^ (state_[i - 1] >> 30)) * 1566083941U)) - static_cast<uint32_t>(i);
    ++i;
    if (i >= kN) state_[0] = state_[kN - 1], i = 1;
  }
  state_[0] = 0x80000000U;
  index_ = kN;
}

uint32_t PythonRandom::next_uint32() {
  if (index_ >= kN) {
    for (int k = 0; k < kN; ++k) {
      const uint32_t y = (state_[static_cast<size_t>(k)] & kUpperMask) |
                         (state_[static_cast<size_t>((k + 1) % kN)] & kLowerMask);
      state_[static_cast<size_t>(k)] =
          state_[static_cast<size_t>((k + kM) % kN)] ^ (y >> 1) ^ ((y & 1U) ? kMatrixA : 0U);
    }
    index_ = 0;
  }
  uint32_t y = state_[static_cast<size_t>(index_++)];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680U;
  y ^= (y << 15) & 0xefc60000U;
  y ^= y >> 18;
  return y;
}

uint64_t PythonRandom::getrandbits(int bits) {
  if (bits <= 0 || bits > 64) fail("getrandbits: {} bits", bits);
  if (bits <= 32) return next_uint32() >> (32 - bits);
  // Words fill from the least significant end; the last one keeps its top bits.
  const uint64_t low = next_uint32();
  const uint64_t high = next_uint32() >> (64 - bits);
  return low | (high << 32);
}

uint64_t PythonRandom::randbelow(uint64_t n) {
  int bits = 0;
  for (uint64_t v = n; v; v >>= 1) ++bits;  // n.bit_length()
  uint64_t r = getrandbits(bits);
  while (r >= n) r = getrandbits(bits);
  return r;
}

std::vector<int64_t> PythonRandom::sample(int64_t population, int64_t k) {
  if (k < 0 || k > population) fail("Sample larger than population or is negative ({} of {})", k, population);
  std::vector<int64_t> result(static_cast<size_t>(k));
  int64_t setsize = 21;
  if (k > 5) setsize += static_cast<int64_t>(std::pow(4.0, std::ceil(std::log(static_cast<double>(k * 3)) / std::log(4.0))));
  if (population <= setsize) {
    std::vector<int64_t> pool(static_cast<size_t>(population));
    for (int64_t i = 0; i < population; ++i) pool[static_cast<size_t>(i)] = i;
    for (int64_t i = 0; i < k; ++i) {
      const auto j = static_cast<size_t>(randbelow(static_cast<uint64_t>(population - i)));
      result[static_cast<size_t>(i)] = pool[j];
      pool[j] = pool[static_cast<size_t>(population - i - 1)];
    }
  } else {
    std::unordered_set<int64_t> selected;
    for (int64_t i = 0; i < k; ++i) {
      auto j = static_cast<int64_t>(randbelow(static_cast<uint64_t>(population)));
      while (selected.count(j)) j = static_cast<int64_t>(randbelow(static_cast<uint64_t>(population)));
      selected.insert(j);
      result[static_cast<size_t>(i)] = j;
    }
  }
  return result;
}

}  // namespace cq
