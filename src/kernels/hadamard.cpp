#include "kernels/hadamard.h"

#include "kernels/avx512.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <numbers>

#include <fmt/format.h>

#include "kernels/kernel_dispatch.h"
#include "kernels/matmul.h"
#include "util/error.h"

namespace cq::kernels {

namespace {

// The largest dense factor tried: it costs m multiply-adds per element.
constexpr int64_t kMaxDenseOrder = 1024;

// GF(q), q = p^k with k <= 3: elements are the integers 0..q-1 read as polynomials over GF(p)
// (base-p digits); products are reduced by a monic irreducible polynomial (for k <= 3, one
// without a root in GF(p) is irreducible).
class FiniteField {
 public:
  FiniteField(int64_t p, int k) : p_(p), k_(k) {
    q_ = 1;
    for (int i = 0; i < k; ++i) q_ *= p;
    if (k == 1) return;
    // x^k + c_{k-1} x^{k-1} + ... + c_0 with no root: the first one in counting order.
    for (int64_t code = 0; code < q_; ++code) {
      std::vector<int64_t> c(static_cast<size_t>(k));
      for (int i = 0, rest = static_cast<int>(code); i < k; ++i, rest /= static_cast<int>(p)) c[static_cast<size_t>(i)] = rest % p;
      bool has_root = false;
      for (int64_t x = 0; x < p && !has_root; ++x) {
        int64_t value = 1;  // Horner from the leading 1
        for (int i = k - 1; i >= 0; --i) value = (value * x + c[static_cast<size_t>(i)]) % p;
        has_root = value == 0;
      }
      if (!has_root) {
        modulus_ = c;
        return;
      }
    }
    fail("no irreducible polynomial of degree {} over GF({})", k, p);
  }
  int64_t size() const { return q_; }
  int64_t subtract(int64_t a, int64_t b) const {
    int64_t result = 0, place = 1;
    for (int i = 0; i < k_; ++i, a /= p_, b /= p_, place *= p_) result += ((a % p_ - b % p_ + p_) % p_) * place;
    return result;
  }
  int64_t multiply(int64_t a, int64_t b) const {
    std::vector<int64_t> x = digits(a), y = digits(b), product(static_cast<size_t>(2 * k_ - 1), 0);
    for (int i = 0; i < k_; ++i)
      for (int j = 0; j < k_; ++j) product[static_cast<size_t>(i + j)] += x[static_cast<size_t>(i)] * y[static_cast<size_t>(j)];
    // x^d = x^(d-k) · (−Σ c_i x^i) for d >= k, highest degree first.
    for (int d = 2 * k_ - 2; d >= k_; --d) {
      const int64_t top = product[static_cast<size_t>(d)] % p_;
      product[static_cast<size_t>(d)] = 0;
      for (int i = 0; i < k_; ++i) product[static_cast<size_t>(d - k_ + i)] += (p_ - modulus_[static_cast<size_t>(i)]) * top;
    }
    int64_t result = 0, place = 1;
    for (int i = 0; i < k_; ++i, place *= p_) result += (product[static_cast<size_t>(i)] % p_) * place;
    return result;
  }

 private:
  std::vector<int64_t> digits(int64_t a) const {
    std::vector<int64_t> d(static_cast<size_t>(k_));
    for (int i = 0; i < k_; ++i, a /= p_) d[static_cast<size_t>(i)] = a % p_;
    return d;
  }
  int64_t p_ = 2, q_ = 2;
  int k_ = 1;
  std::vector<int64_t> modulus_;  // c_0..c_{k-1}
};

// q = p^k with k <= 3 (p prime), else false.
bool prime_power(int64_t q, int64_t& p, int& k) {
  if (q < 2) return false;
  p = 2;
  while (p * p <= q && q % p != 0) ++p;
  if (q % p != 0) p = q;
  int64_t rest = q;
  k = 0;
  while (rest % p == 0) rest /= p, ++k;
  return rest == 1 && k <= 3;
}

// The Jacobsthal matrix Q_ij = χ(a_i − a_j) of GF(q), χ the quadratic character.
std::vector<int8_t> jacobsthal(int64_t q, int64_t p, int k) {
  const FiniteField field(p, k);
  std::vector<int8_t> is_square(static_cast<size_t>(q), -1);
  is_square[0] = 0;
  for (int64_t x = 1; x < q; ++x) is_square[static_cast<size_t>(field.multiply(x, x))] = 1;
  std::vector<int8_t> jacobsthal_matrix(static_cast<size_t>(q * q));
  for (int64_t i = 0; i < q; ++i)
    for (int64_t j = 0; j < q; ++j) jacobsthal_matrix[static_cast<size_t>(i * q + j)] = is_square[static_cast<size_t>(field.subtract(i, j))];
  return jacobsthal_matrix;
}

std::vector<int8_t> sylvester(int64_t m) {
  std::vector<int8_t> h(static_cast<size_t>(m * m));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j) h[static_cast<size_t>(i * m + j)] = (std::popcount(static_cast<uint64_t>(i & j)) % 2) ? -1 : 1;
  return h;
}

// Paley I: q ≡ 3 (mod 4), H = I + [[0, 1ᵀ], [−1, Q]] of order q + 1.
std::vector<int8_t> paley_one(int64_t q, int64_t p, int k) {
  const std::vector<int8_t> jq = jacobsthal(q, p, k);
  const int64_t m = q + 1;
  std::vector<int8_t> h(static_cast<size_t>(m * m));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j) {
      int value = i == 0 ? (j == 0 ? 0 : 1) : j == 0 ? -1 : jq[static_cast<size_t>((i - 1) * q + j - 1)];
      if (i == j) value += 1;
      h[static_cast<size_t>(i * m + j)] = static_cast<int8_t>(value);
    }
  return h;
}

// Paley II: q ≡ 1 (mod 4), S = [[0, 1ᵀ], [1, Q]]; each 0 of S becomes [[1, −1], [−1, −1]],
// each ±1 becomes ±[[1, 1], [1, −1]]: order 2(q + 1).
std::vector<int8_t> paley_two(int64_t q, int64_t p, int k) {
  const std::vector<int8_t> jq = jacobsthal(q, p, k);
  const int64_t s_order = q + 1, m = 2 * s_order;
  std::vector<int8_t> h(static_cast<size_t>(m * m));
  for (int64_t i = 0; i < s_order; ++i)
    for (int64_t j = 0; j < s_order; ++j) {
      const int s = i == 0 ? (j == 0 ? 0 : 1) : j == 0 ? 1 : jq[static_cast<size_t>((i - 1) * q + j - 1)];
      const int block[2][2] = {{s == 0 ? 1 : s, s == 0 ? -1 : s}, {s == 0 ? -1 : s, s == 0 ? -1 : -s}};
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b) h[static_cast<size_t>((2 * i + a) * m + 2 * j + b)] = static_cast<int8_t>(block[a][b]);
    }
  return h;
}

// Williamson's array of order 4n, from four symmetric ±1 circulant matrices of order n with
// A² + B² + C² + D² = 4n·I:
//   [[A, B, C, D], [−B, A, −D, C], [−C, D, A, −B], [−D, −C, B, A]].
// For n prime, first rows that are +1 at 0 and constant on each cyclotomic class of order e
// of GF(n) (class i = g^i·⟨g^e⟩, g the least primitive root; symmetric when −1 ∈ ⟨g^e⟩) make
// the search a small one over 2^e sign choices per matrix; a table row
// names, per matrix, the classes that are −1, as scripts/find_williamson.py prints them.
struct WilliamsonClasses {
  int64_t n;
  int classes;                   // e
  uint32_t negative_classes[4];  // bit i set: class i is −1 in A, B, C, D's first rows
};
constexpr WilliamsonClasses kWilliamsonClasses[] = {
    {43, 7, {0b0000111, 0b0011001, 0b0101100, 0b1001101}},  // order 172 = 4·43 (11008 = 172·64)
};

int64_t least_primitive_root(int64_t n) {
  for (int64_t g = 2; g < n; ++g) {
    int64_t power = g, order = 1;
    while (power != 1) power = power * g % n, ++order;
    if (order == n - 1) return g;
  }
  return 1;  // n = 2
}

std::vector<int8_t> williamson(const WilliamsonClasses& table) {
  const int64_t n = table.n, m = 4 * n, g = least_primitive_root(n);
  std::vector<int> class_of(static_cast<size_t>(n), -1);  // class of each nonzero residue
  int64_t power = 1;
  for (int64_t exponent = 0; exponent < n - 1; ++exponent, power = power * g % n)
    class_of[static_cast<size_t>(power)] = static_cast<int>(exponent % table.classes);
  std::vector<int8_t> first_rows[4];
  for (int a = 0; a < 4; ++a) {
    first_rows[a].resize(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t)
      first_rows[a][static_cast<size_t>(t)] = t != 0 && (table.negative_classes[a] >> class_of[static_cast<size_t>(t)] & 1u) ? -1 : 1;
  }
  // Block (row, column) of the array: which matrix, and its sign.
  constexpr int kWhich[4][4] = {{0, 1, 2, 3}, {1, 0, 3, 2}, {2, 3, 0, 1}, {3, 2, 1, 0}};
  constexpr int kSign[4][4] = {{1, 1, 1, 1}, {-1, 1, -1, 1}, {-1, 1, 1, -1}, {-1, -1, 1, 1}};
  std::vector<int8_t> h(static_cast<size_t>(m * m));
  for (int bi = 0; bi < 4; ++bi)
    for (int bj = 0; bj < 4; ++bj)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j)  // circulant: entry (i, j) is the first row's (j − i) mod n
          h[static_cast<size_t>((bi * n + i) * m + bj * n + j)] =
              static_cast<int8_t>(kSign[bi][bj] * first_rows[kWhich[bi][bj]][static_cast<size_t>((j - i + n) % n)]);
  return h;
}

const WilliamsonClasses* williamson_table(int64_t m) {
  for (const WilliamsonClasses& table : kWilliamsonClasses)
    if (4 * table.n == m) return &table;
  return nullptr;
}

bool is_hadamard_matrix(const std::vector<int8_t>& h, int64_t m) {
  if (static_cast<int64_t>(h.size()) != m * m) return false;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = i; j < m; ++j) {
      int64_t dot = 0;
      for (int64_t t = 0; t < m; ++t) dot += h[static_cast<size_t>(i * m + t)] * h[static_cast<size_t>(j * m + t)];
      if (dot != (i == j ? m : 0)) return false;
    }
  return true;
}

// Walsh–Hadamard butterflies over `chunks` consecutive vectors of `width` floats each
// (chunks a power of two): vector j ↦ Σ_i H_chunks[i][j] · vector i, unnormalized. The
// innermost loop runs over contiguous floats. The portable version, and the definition.
void walsh_hadamard_chunks(float* x, int64_t chunks, int64_t width) {
  for (int64_t h = 1; h < chunks; h *= 2) {
    const int64_t run = h * width;
    for (int64_t i = 0; i < chunks; i += 2 * h) {
      float* __restrict a = x + i * width;
      float* __restrict b = a + run;
      for (int64_t t = 0; t < run; ++t) {
        const float u = a[t], v = b[t];
        a[t] = u + v;
        b[t] = u - v;
      }
    }
  }
}

// Rows per block of the dense product: a block and its scratch stay in L2 (256 KB each).
constexpr int64_t kBlockFloats = int64_t{1} << 16;

}  // namespace

CQ_AVX512_BEGIN
namespace {

// walsh_hadamard_chunks, 16 floats a step (the run's tail masked): the same additions, so
// the same bits.
void walsh_hadamard_chunks_avx512(float* x, int64_t chunks, int64_t width) {
  for (int64_t h = 1; h < chunks; h *= 2) {
    const int64_t run = h * width;
    const auto tail = static_cast<__mmask16>((1u << (run % 16)) - 1u);
    for (int64_t i = 0; i < chunks; i += 2 * h) {
      float* a = x + i * width;
      float* b = a + run;
      int64_t t = 0;
      for (; t + 16 <= run; t += 16) {
        const __m512 u = _mm512_loadu_ps(a + t), v = _mm512_loadu_ps(b + t);
        _mm512_storeu_ps(a + t, _mm512_add_ps(u, v));
        _mm512_storeu_ps(b + t, _mm512_sub_ps(u, v));
      }
      if (tail != 0) {
        const __m512 u = _mm512_maskz_loadu_ps(tail, a + t), v = _mm512_maskz_loadu_ps(tail, b + t);
        _mm512_mask_storeu_ps(a + t, tail, _mm512_add_ps(u, v));
        _mm512_mask_storeu_ps(b + t, tail, _mm512_sub_ps(u, v));
      }
    }
  }
}

// A power-of-two row (n >= 16) in place: the four levels inside each 16 floats in a register
// (lane t takes ±x[t] + x[t ^ h], minus where bit h of t is set: u + v and u − v exactly, as
// the portable loop), then the levels between the 16-float groups.
void walsh_hadamard_row_avx512(float* x, int64_t n) {
  const __m512i partner[4] = {
      _mm512_set_epi32(14, 15, 12, 13, 10, 11, 8, 9, 6, 7, 4, 5, 2, 3, 0, 1),
      _mm512_set_epi32(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2),
      _mm512_set_epi32(11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4),
      _mm512_set_epi32(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8)};
  const __m512 sign[4] = {
      _mm512_set_ps(-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1),
      _mm512_set_ps(-1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1),
      _mm512_set_ps(-1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1),
      _mm512_set_ps(-1, -1, -1, -1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 1, 1, 1)};
  for (int64_t g = 0; g < n; g += 16) {
    __m512 v = _mm512_loadu_ps(x + g);
    for (int level = 0; level < 4; ++level) v = _mm512_fmadd_ps(v, sign[level], _mm512_permutexvar_ps(partner[level], v));
    _mm512_storeu_ps(x + g, v);
  }
  walsh_hadamard_chunks_avx512(x, n / 16, 16);
}

}  // namespace
CQ_AVX512_END

std::vector<int8_t> known_hadamard_matrix(int64_t m, std::string* construction) {
  std::vector<int8_t> h;
  std::string name;
  int64_t p = 0;
  int k = 0;
  if (m >= 1 && (m & (m - 1)) == 0) {
    h = sylvester(m), name = fmt::format("Walsh-Hadamard {}", m);
  } else if (m % 4 == 0 && prime_power(m - 1, p, k) && (m - 1) % 4 == 3) {
    h = paley_one(m - 1, p, k), name = fmt::format("Paley I (q={}) {}", m - 1, m);
  } else if (m % 4 == 0 && prime_power(m / 2 - 1, p, k) && (m / 2 - 1) % 4 == 1) {
    h = paley_two(m / 2 - 1, p, k), name = fmt::format("Paley II (q={}) {}", m / 2 - 1, m);
  } else if (const WilliamsonClasses* table = williamson_table(m)) {
    h = williamson(*table), name = fmt::format("Williamson (cyclotomic, n={}) {}", table->n, m);
  } else {
    return {};
  }
  // The constructions are classical; a wrong field or sign here would break every rotation.
  if (!is_hadamard_matrix(h, m)) fail("internal error: the {} matrix is not a Hadamard matrix", name);
  if (construction) *construction = name;
  return h;
}

HadamardTransform::HadamardTransform(int64_t n) : n_(n) {
  if (n < 1) fail("Hadamard transform of size {}", n);
  int64_t two_power = 1;
  while (n % (two_power * 2) == 0) two_power *= 2;
  std::vector<int8_t> small;
  std::string small_name;
  // The largest Walsh–Hadamard factor that leaves a known dense factor: the cheapest transform.
  for (int64_t p = two_power; p >= 1 && n / p <= kMaxDenseOrder; p /= 2) {
    if (n / p == 1) break;
    small = known_hadamard_matrix(n / p, &small_name);
    if (!small.empty()) {
      p_ = p, m_ = n / p;
      break;
    }
  }
  std::vector<double> dense_factor;  // M (orthogonal up to the scale of a Hadamard matrix), m × m
  if (n == two_power) {
    p_ = n, m_ = 1;
    construction_ = fmt::format("Walsh-Hadamard {}", n);
  } else if (!small.empty()) {
    dense_factor.assign(small.begin(), small.end());
    construction_ = p_ > 1 ? fmt::format("{} x Walsh-Hadamard {}", small_name, p_) : small_name;
  } else {
    // No Hadamard matrix of a size 2^b · odd known here: the orthonormal Hartley matrix
    // cas(2πjk/m)/√m of the odd part, times √m so it scales like a Hadamard matrix.
    hadamard_ = false;
    p_ = two_power, m_ = n / two_power;
    if (m_ > kMaxDenseOrder)
      fail("no Hadamard construction for size {} and its odd factor {} is above {} (too costly as a dense product)", n, m_,
           kMaxDenseOrder);
    dense_factor.resize(static_cast<size_t>(m_ * m_));
    for (int64_t j = 0; j < m_; ++j)
      for (int64_t k = 0; k < m_; ++k) {
        const double angle = 2 * std::numbers::pi * static_cast<double>((j * k) % m_) / static_cast<double>(m_);
        dense_factor[static_cast<size_t>(j * m_ + k)] = std::cos(angle) + std::sin(angle);
      }
    construction_ = fmt::format("Hartley {} (no Hadamard matrix of order {} known here){}", m_, n,
                                p_ > 1 ? fmt::format(" x Walsh-Hadamard {}", p_) : "");
  }
  if (m_ > 1) {
    const double scale = 1.0 / std::sqrt(static_cast<double>(n_));
    dense_factor_t_.resize(static_cast<size_t>(m_ * m_));
    for (int64_t i = 0; i < m_; ++i)
      for (int64_t j = 0; j < m_; ++j)
        dense_factor_t_[static_cast<size_t>(j * m_ + i)] = static_cast<float>(dense_factor[static_cast<size_t>(i * m_ + j)] * scale);
  }
}

void HadamardTransform::apply(float* data, int64_t rows) const {
  if (rows <= 0) return;
  const bool simd = avx512_kernels();
  if (m_ == 1) {  // Walsh–Hadamard alone: in place, row by row
    const float scale = 1.f / std::sqrt(static_cast<float>(n_));
#pragma omp parallel for schedule(static) if (rows * n_ > (int64_t{1} << 15))
    for (int64_t r = 0; r < rows; ++r) {
      float* row = data + r * n_;
      if (simd && n_ >= 16) walsh_hadamard_row_avx512(row, n_);
      else walsh_hadamard_chunks(row, n_, 1);
      for (int64_t t = 0; t < n_; ++t) row[t] *= scale;
    }
    return;
  }
  // Element index = i_p · m + i_m, so H = H_p ⊗ M. Blocks of rows, each through a per-thread
  // scratch that stays in L2: each run of m floats times M (one product over the block's
  // runs: (rows · p) × m by m × m), the butterflies between the p runs of a row, and back.
  const int64_t block_rows = std::clamp<int64_t>(kBlockFloats / n_, 1, rows);
  const int64_t blocks = (rows + block_rows - 1) / block_rows;
#pragma omp parallel for schedule(dynamic) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    thread_local std::vector<float> scratch;
    const int64_t first = b * block_rows, count = std::min(block_rows, rows - first);
    if (scratch.size() < static_cast<size_t>(count * n_)) scratch.resize(static_cast<size_t>(count * n_));
    float* block = data + first * n_;
    matmul_abt(block, m_, dense_factor_t_.data(), m_, scratch.data(), m_, count * p_, m_, m_);
    for (int64_t r = 0; r < count; ++r) {
      float* row = scratch.data() + r * n_;
      if (simd) walsh_hadamard_chunks_avx512(row, p_, m_);
      else walsh_hadamard_chunks(row, p_, m_);
    }
    std::memcpy(block, scratch.data(), static_cast<size_t>(count * n_) * sizeof(float));
  }
}

std::vector<float> HadamardTransform::dense() const {
  std::vector<float> identity(static_cast<size_t>(n_ * n_), 0.f);
  for (int64_t i = 0; i < n_; ++i) identity[static_cast<size_t>(i * n_ + i)] = 1.f;
  apply(identity.data(), n_);  // row i of I·Ĥ is row i of Ĥ
  return identity;
}

}  // namespace cq::kernels
