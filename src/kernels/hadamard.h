#pragma once
// Orthogonal Hadamard transforms of rows, x ↦ x·Ĥ with Ĥ = H/√n, for rotating a model's
// hidden states (QuaRot, arXiv 2404.00456; ptq/rotation.h). A size n = 2^a · m is the
// Kronecker product H = H_{2^a} ⊗ H_m of a Walsh–Hadamard transform (in place, O(n log n))
// and a small dense Hadamard matrix H_m from Paley's constructions (m − 1 or m/2 − 1 a prime
// power q ≤ p³: 12, 20, 28, 44, 344, ...) or Williamson's (172 = 4·43, from cyclotomic
// classes), applied as a matrix product over blocks of rows. Where no Hadamard matrix is
// known to this code for the size (86, 4·47, any odd size), the dense factor is the
// orthonormal Hartley matrix of n's odd part instead: still orthogonal (the model computes
// the same function), with entries up to √2 larger than a Hadamard matrix's
// (docs/QUANTIZERS.md, "Rotation"). The butterflies have an AVX-512 version
// (kernels/kernel_dispatch.h) that gives the same bits; the dense product is oneDNN's sgemm.
#include <cstdint>
#include <string>
#include <vector>

namespace cq::kernels {

class HadamardTransform {
 public:
  // Chooses the construction for rows of length n (n >= 1).
  explicit HadamardTransform(int64_t n);
  int64_t size() const { return n_; }
  int64_t power_of_two() const { return p_; }  // the Walsh–Hadamard factor 2^a
  int64_t dense_order() const { return m_; }   // the dense factor's order m (1: none)
  bool is_hadamard() const { return hadamard_; }  // false: the Hartley fallback
  // e.g. "Walsh-Hadamard 64", "Paley II (q=13) 28 x Walsh-Hadamard 512", "Hartley 43 (no Hadamard matrix of order 86 known here) x Walsh-Hadamard 2".
  const std::string& construction() const { return construction_; }
  // rows × n (row stride n), in place: each row x becomes x·Ĥ.
  void apply(float* data, int64_t rows) const;
  // Ĥ as a dense row-major n × n matrix (tests, references).
  std::vector<float> dense() const;

 private:
  int64_t n_ = 0, p_ = 1, m_ = 1;
  bool hadamard_ = true;
  std::string construction_;
  std::vector<float> dense_factor_t_;  // (M/√n)ᵀ row-major m × m (the 1/√n of the whole transform folded in)
};

// A ±1 Hadamard matrix of order m (row-major m × m, H·Hᵀ = m·I) from Sylvester's (m a power
// of two), Paley's or (172) Williamson's constructions; empty when none of them gives order m. `construction`
// receives its name.
std::vector<int8_t> known_hadamard_matrix(int64_t m, std::string* construction = nullptr);

}  // namespace cq::kernels
