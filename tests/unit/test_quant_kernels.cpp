// Every AVX-512 row kernel against its scalar reference, bit for bit, over lengths that cover
// full vectors and every tail length, with zeros, ties and values beyond the scale.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "kernels/kernel_dispatch.h"
#include "quant/row_kernels.h"
#include "test_support.h"

namespace {

namespace kernels = cq::quant_kernels;

std::vector<float> test_row(int64_t n, uint32_t seed) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.f, 2.f);
  std::vector<float> row(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    row[static_cast<size_t>(j)] = normal(generator);
    if (j % 7 == 0) row[static_cast<size_t>(j)] = 0.f;
    if (j % 11 == 0) row[static_cast<size_t>(j)] = static_cast<float>(j % 5) + 0.5f;  // exact .5 ties at divisor 1
    if (j % 13 == 0) row[static_cast<size_t>(j)] *= 200.f;                             // beyond qmax: clipped
  }
  return row;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t k = 0; k < a.size(); ++k)
    if (std::bit_cast<uint32_t>(a[k]) != std::bit_cast<uint32_t>(b[k])) return false;
  return true;
}

void expect_same_counts(const kernels::RowCounts& a, const kernels::RowCounts& b) {
  EXPECT_EQ(a.kernel, b.kernel);
  EXPECT_EQ(a.clipped, b.clipped);
}

// The AVX-512 kernels are compiled in every build; they can only run on a CPU that has it.
#define SKIP_WITHOUT_AVX512()                                                 \
  if (!cq::kernels::cpu_has_avx512()) GTEST_SKIP() << "this CPU lacks AVX-512: the scalar kernels are the only path"

// The unqualified kernels follow the process-wide kernel path (kernels/kernel_dispatch.h):
// forced scalar, they are the scalar reference; forced AVX-512, the AVX-512 versions.
TEST(QuantKernels, DispatchFollowsTheKernelPath) {
  const std::vector<float> row = {0.3f, -0.7f, 2.5f};
  const float divisor = 0.5f;
  std::vector<int16_t> codes(row.size());
  {
    cq::test::ScopedKernelPath scalar_path(cq::kernels::KernelPath::Scalar);
    EXPECT_FALSE(cq::kernels::avx512_kernels());
    kernels::avx512::quantize_row_codes(row.data(), 3, divisor, 127.f, codes.data());
    EXPECT_EQ(codes, (std::vector<int16_t>{1, -1, 5}));
  }
  SKIP_WITHOUT_AVX512();
  cq::test::ScopedKernelPath avx512_path(cq::kernels::KernelPath::Avx512);
  EXPECT_TRUE(cq::kernels::avx512_kernels());
  kernels::avx512::quantize_row_codes(row.data(), 3, divisor, 127.f, codes.data());
  EXPECT_EQ(codes, (std::vector<int16_t>{1, -1, 5}));
}

TEST(QuantKernels, SimdEqualsScalar) {
  SKIP_WITHOUT_AVX512();
  for (int64_t n = 0; n <= 80; ++n) {
    SCOPED_TRACE(n);
    const std::vector<float> row = test_row(n, static_cast<uint32_t>(n + 1));
    std::vector<float> column_divisors(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) column_divisors[static_cast<size_t>(j)] = 0.25f + static_cast<float>(j % 9);

    std::vector<float> scalar_columns(static_cast<size_t>(n), 1.f);
    std::vector<float> simd_columns = scalar_columns;
    const kernels::RowScan scalar_scan = kernels::scalar::scan_row(row.data(), n, scalar_columns.data());
    const kernels::RowScan simd_scan = kernels::avx512::scan_row(row.data(), n, simd_columns.data());
    EXPECT_EQ(scalar_scan.absmax, simd_scan.absmax);
    EXPECT_EQ(scalar_scan.exact_zeros, simd_scan.exact_zeros);
    EXPECT_EQ(scalar_scan.finite, simd_scan.finite);
    EXPECT_EQ(scalar_columns, simd_columns);
    EXPECT_EQ(kernels::avx512::scan_row(row.data(), n, nullptr).absmax, scalar_scan.absmax);

    for (const float qmax : {1.f, 7.f, 127.f}) {
      for (const float divisor : {1.f, 0.37f, 3.f}) {
        std::vector<float> scalar_fake = row;
        std::vector<float> simd_fake = row;
        expect_same_counts(kernels::scalar::fake_quantize_row(scalar_fake.data(), n, divisor, qmax),
                           kernels::avx512::fake_quantize_row(simd_fake.data(), n, divisor, qmax));
        EXPECT_TRUE(same_bits(scalar_fake, simd_fake));

        std::vector<int16_t> scalar_codes(static_cast<size_t>(n), -99);
        std::vector<int16_t> simd_codes = scalar_codes;
        expect_same_counts(kernels::scalar::quantize_row_codes(row.data(), n, divisor, qmax, scalar_codes.data()),
                           kernels::avx512::quantize_row_codes(row.data(), n, divisor, qmax, simd_codes.data()));
        EXPECT_EQ(scalar_codes, simd_codes);

        const std::vector<float> column_reciprocals = kernels::reciprocals_for(column_divisors);
        for (const float* reciprocals : {column_reciprocals.data(), static_cast<const float*>(nullptr)}) {
          std::vector<float> scalar_cross = row;
          std::vector<float> simd_cross = row;
          expect_same_counts(kernels::scalar::fake_quantize_row_cross(scalar_cross.data(), n, divisor,
                                                                      column_divisors.data(), nullptr, qmax),
                             kernels::avx512::fake_quantize_row_cross(simd_cross.data(), n, divisor, column_divisors.data(),
                                                              reciprocals, qmax));
          EXPECT_TRUE(same_bits(scalar_cross, simd_cross));

          expect_same_counts(kernels::scalar::quantize_row_cross_codes(row.data(), n, divisor, column_divisors.data(),
                                                                       nullptr, qmax, scalar_codes.data()),
                             kernels::avx512::quantize_row_cross_codes(row.data(), n, divisor, column_divisors.data(),
                                                               reciprocals, qmax, simd_codes.data()));
          EXPECT_EQ(scalar_codes, simd_codes);
        }
      }
    }
  }
}

// The pair kernels (two rows in one sweep) against two calls of the scalar one-row kernel,
// with row divisors inside and outside the reciprocal fast path's range.
TEST(QuantKernels, PairKernelsEqualTwoScalarRows) {
  SKIP_WITHOUT_AVX512();
  for (int64_t n = 0; n <= 80; ++n) {
    SCOPED_TRACE(n);
    const std::vector<float> first = test_row(n, static_cast<uint32_t>(n + 100));
    const std::vector<float> second = test_row(n, static_cast<uint32_t>(n + 200));
    std::vector<float> column_divisors(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) column_divisors[static_cast<size_t>(j)] = 0.25f + static_cast<float>(j % 9);
    const std::vector<float> column_reciprocals = kernels::reciprocals_for(column_divisors);
    for (const float qmax : {7.f, 127.f}) {
      for (const auto& [divisor0, divisor1] : {std::pair{0.37f, 3.f}, std::pair{1.f, 0x1p-70f}}) {
        std::vector<float> scalar0 = first, scalar1 = second, simd0 = first, simd1 = second;
        kernels::RowCounts scalar_counts =
            kernels::scalar::fake_quantize_row_cross(scalar0.data(), n, divisor0, column_divisors.data(), nullptr, qmax);
        scalar_counts +=
            kernels::scalar::fake_quantize_row_cross(scalar1.data(), n, divisor1, column_divisors.data(), nullptr, qmax);
        expect_same_counts(scalar_counts,
                           kernels::avx512::fake_quantize_row_pair_cross(simd0.data(), simd1.data(), n, divisor0, divisor1,
                                                                 column_divisors.data(), column_reciprocals.data(), qmax));
        EXPECT_TRUE(same_bits(scalar0, simd0));
        EXPECT_TRUE(same_bits(scalar1, simd1));

        std::vector<int16_t> scalar_codes(2 * static_cast<size_t>(n), -99), simd_codes = scalar_codes;
        scalar_counts = kernels::scalar::quantize_row_cross_codes(first.data(), n, divisor0, column_divisors.data(),
                                                                  nullptr, qmax, scalar_codes.data());
        scalar_counts += kernels::scalar::quantize_row_cross_codes(second.data(), n, divisor1, column_divisors.data(),
                                                                   nullptr, qmax, scalar_codes.data() + n);
        expect_same_counts(scalar_counts, kernels::avx512::quantize_row_pair_cross_codes(
                                              first.data(), second.data(), n, divisor0, divisor1,
                                              column_divisors.data(), column_reciprocals.data(), qmax,
                                              simd_codes.data(), simd_codes.data() + n));
        EXPECT_EQ(scalar_codes, simd_codes);
      }
    }
  }
}

// The SIMD kernels round products with reciprocals and divide exactly only near .5 ties.
// Hammer that with values planted a few ulps around (k + 0.5) · divisor and divisors of
// every magnitude, including ones outside the fast path's range.
TEST(QuantKernels, ReciprocalFastPathEqualsDivisionNearTies) {
  SKIP_WITHOUT_AVX512();
  std::mt19937 generator(2024);
  std::uniform_real_distribution<float> unit(0.f, 1.f);
  std::uniform_int_distribution<int> half_integer(-130, 130);
  std::uniform_int_distribution<int> ulps(-6, 6);
  std::uniform_int_distribution<int> exponent(-70, 70);
  const int64_t n = 4099;
  std::vector<float> row(static_cast<size_t>(n));
  std::vector<float> column_divisors(static_cast<size_t>(n));
  std::vector<int16_t> scalar_codes(static_cast<size_t>(n));
  std::vector<int16_t> simd_codes(static_cast<size_t>(n));
  for (int trial = 0; trial < 60; ++trial) {
    const float row_divisor = std::ldexp(0.5f + unit(generator), trial < 50 ? exponent(generator) / 4 : exponent(generator));
    for (int64_t j = 0; j < n; ++j) {
      column_divisors[static_cast<size_t>(j)] = std::ldexp(0.5f + unit(generator), exponent(generator) / 8);
      // Near a tie of the divided quotient: ((k + 0.5) · row · column), nudged by a few ulps.
      float value = (static_cast<float>(half_integer(generator)) + 0.5f) * row_divisor * column_divisors[static_cast<size_t>(j)];
      const int steps = ulps(generator);
      for (int step = 0; step < std::abs(steps); ++step) value = std::nextafter(value, steps > 0 ? INFINITY : -INFINITY);
      row[static_cast<size_t>(j)] = value;
    }
    for (const float qmax : {7.f, 127.f}) {
      const std::vector<float> reciprocals = kernels::reciprocals_for(column_divisors);
      expect_same_counts(kernels::scalar::quantize_row_cross_codes(row.data(), n, row_divisor, column_divisors.data(),
                                                                   nullptr, qmax, scalar_codes.data()),
                         kernels::avx512::quantize_row_cross_codes(row.data(), n, row_divisor, column_divisors.data(),
                                                           reciprocals.data(), qmax, simd_codes.data()));
      ASSERT_EQ(scalar_codes, simd_codes) << "trial " << trial;
      // The uniform kernel near its own ties: divisor = row · column of the first column.
      const float divisor = row_divisor * column_divisors[0];
      expect_same_counts(kernels::scalar::quantize_row_codes(row.data(), n, divisor, qmax, scalar_codes.data()),
                         kernels::avx512::quantize_row_codes(row.data(), n, divisor, qmax, simd_codes.data()));
      ASSERT_EQ(scalar_codes, simd_codes) << "trial " << trial;
    }
  }
}

TEST(QuantKernels, ScanFlagsNonFiniteInEveryLane) {
  SKIP_WITHOUT_AVX512();
  for (int64_t n : {1, 15, 16, 17, 40}) {
    for (int64_t position = 0; position < n; ++position) {
      for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        std::vector<float> row(static_cast<size_t>(n), 1.f);
        row[static_cast<size_t>(position)] = bad;
        EXPECT_FALSE(kernels::avx512::scan_row(row.data(), n, nullptr).finite) << n << " " << position;
        EXPECT_FALSE(kernels::scalar::scan_row(row.data(), n, nullptr).finite) << n << " " << position;
      }
    }
  }
}

TEST(QuantKernels, RoundsHalfToEven) {
  SKIP_WITHOUT_AVX512();
  const std::vector<float> row = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.5f};
  for (const bool simd : {false, true}) {
    std::vector<int16_t> codes(row.size());
    const auto n = static_cast<int64_t>(row.size());
    if (simd)
      kernels::avx512::quantize_row_codes(row.data(), n, 1.f, 127.f, codes.data());
    else
      kernels::scalar::quantize_row_codes(row.data(), n, 1.f, 127.f, codes.data());
    EXPECT_EQ(codes, (std::vector<int16_t>{0, 2, 2, 0, -2, -2, 4}));
  }
}

}  // namespace
