#include "kernels/hadamard.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <numbers>

#include <fmt/format.h>

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
// innermost loop runs over contiguous floats (vectorised by the compiler).
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

}  // namespace

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
  // Element index = i_p · m + i_m, so H = H_p ⊗ M: each run of m floats times M (one
  // product over all rows), then butterflies between the p runs of a row.
  if (m_ > 1) {
    std::vector<float> product(static_cast<size_t>(rows * n_));
    matmul_abt(data, m_, dense_factor_t_.data(), m_, product.data(), m_, rows * p_, m_, m_);
    std::memcpy(data, product.data(), product.size() * sizeof(float));
  }
#pragma omp parallel for schedule(static) if (rows * n_ > (int64_t{1} << 15))
  for (int64_t r = 0; r < rows; ++r) {
    float* row = data + r * n_;
    walsh_hadamard_chunks(row, p_, m_);
    if (m_ == 1) {
      const float scale = 1.f / std::sqrt(static_cast<float>(n_));
      for (int64_t t = 0; t < n_; ++t) row[t] *= scale;
    }
  }
}

std::vector<float> HadamardTransform::dense() const {
  std::vector<float> identity(static_cast<size_t>(n_ * n_), 0.f);
  for (int64_t i = 0; i < n_; ++i) identity[static_cast<size_t>(i * n_ + i)] = 1.f;
  apply(identity.data(), n_);  // row i of I·Ĥ is row i of Ĥ
  return identity;
}

}  // namespace cq::kernels
