#pragma once
// The quantization kernel (SPEC.md): elements that quantize to zero, plus the paper's
// Table 1 columns. Every method reports through this one struct.
#include <cstdint>

namespace cq {

struct KernelStats {
  int64_t elements = 0;
  int64_t kernel = 0;                 // Q(x_ij) == 0 (includes exact zeros)
  int64_t exact_zeros = 0;            // x_ij == 0
  int64_t column_max_ge_row_max = 0;  // c_j >= t_i
  int64_t bound_below_per_token = 0;  // B̃_ij < B_ij (CrossQuant zero bound below per-token's)
  int64_t clipped = 0;                // |round(x/Δ)| > qmax, clamped to ±qmax (static scales only)

  void merge(const KernelStats& other) {
    elements += other.elements;
    kernel += other.kernel;
    exact_zeros += other.exact_zeros;
    column_max_ge_row_max += other.column_max_ge_row_max;
    bound_below_per_token += other.bound_below_per_token;
    clipped += other.clipped;
  }
  static double share(int64_t count, int64_t total) {
    return total > 0 ? static_cast<double>(count) / static_cast<double>(total) : 0.0;
  }
  double kernel_fraction() const { return share(kernel, elements); }
};

}  // namespace cq
