// The vectorized exp-based kernels against their std::exp scalar definitions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/kernel_dispatch.h"
#include "kernels/vector_math.h"
#include "test_support.h"

namespace cq {
namespace {

std::vector<float> random_values(int64_t n, float spread, uint32_t seed) { return test::random_normal(n, seed, spread); }

// Sizes around the vector width (16) and large rows; scores spread like attention logits,
// including -inf-like gaps (-1e30) that must give exact zeros. Reference: the definition in
// double. Both kernel paths (kernels/kernel_dispatch.h): the AVX-512 one sums in 16 lanes,
// within 1e-6; the scalar one's sequential float sum is itself off by up to ~n·2^-24
// (measured 1.5e-6 at n = 4097), which its bound adds.
TEST(VectorMath, SoftmaxEqualsTheDefinition) {
  for (const kernels::KernelPath path : {kernels::KernelPath::Scalar, kernels::KernelPath::Avx512}) {
    if (!kernels::kernel_path_supported(path)) continue;
    test::ScopedKernelPath forced(path);
    for (const int64_t n : {1, 2, 15, 16, 17, 31, 33, 100, 1000, 4097}) {
      std::vector<float> row = random_values(n, 8.f, static_cast<uint32_t>(n));
      if (n > 3) row[2] = -1e30f;
      const float max_value = *std::max_element(row.begin(), row.end());
      std::vector<double> want(row.size());
      double sum = 0;
      for (size_t i = 0; i < row.size(); ++i) sum += want[i] = std::exp(static_cast<double>(row[i] - max_value));
      kernels::softmax_inplace(row.data(), n);
      const double relative =
          1e-6 + (path == kernels::KernelPath::Scalar ? static_cast<double>(n) * 0x1p-24 : 0.0);
      double total = 0;
      for (size_t i = 0; i < row.size(); ++i) {
        EXPECT_NEAR(row[i], want[i] / sum, relative * want[i] / sum + 1e-30)
            << kernels::to_string(path) << " n " << n << " i " << i;
        total += row[i];
      }
      EXPECT_NEAR(total, 1.0, 1e-5) << kernels::to_string(path) << " " << n;
      if (n > 3) {
        EXPECT_EQ(row[2], 0.f);
      }
    }
  }
}

TEST(VectorMath, SiluMultiplyEqualsStdExpDefinition) {
  for (const int64_t n : {1, 7, 16, 17, 1000}) {
    std::vector<float> gate = random_values(n, 6.f, 3), up = random_values(n, 1.f, 4);
    gate[0] = -120.f;  // exp(120) overflows: silu → -0
    if (n > 1) gate[1] = 95.f;
    std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
    kernels::scalar::silu_multiply(gate.data(), up.data(), want.data(), n);
    kernels::silu_multiply(gate.data(), up.data(), got.data(), n);
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_NEAR(got[i], want[i], 4e-7 * std::abs(want[i]) + 1e-30) << "n " << n << " i " << i;
  }
}

// Each term is exp of the float difference x - shift (as the perplexity protocol computes
// it), summed in double.
TEST(VectorMath, SumExpShiftedEqualsTheDefinition) {
  for (const int64_t n : {1, 16, 50, 512, 32000}) {
    const std::vector<float> logits = random_values(n, 5.f, 9);
    const float shift = *std::max_element(logits.begin(), logits.end());
    double want = 0;
    for (const float x : logits) want += std::exp(static_cast<double>(x - shift));
    EXPECT_NEAR(kernels::sum_exp_shifted(logits.data(), n, shift), want, 2e-7 * want) << n;
  }
}

}  // namespace
}  // namespace cq
