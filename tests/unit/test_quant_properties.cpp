// Hand-computed cases and properties of the quantizers (SPEC.md; definitions in
// docs/QUANTIZERS.md). The golden comparison with PyTorch is in test_quant_golden.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "quant/crossquant.h"
#include "quant/quantizer.h"
#include "util/error.h"

namespace {

struct Matrix {
  std::vector<float> values;
  int64_t rows = 0;
  int64_t cols = 0;
  cq::MatrixView view() { return {values.data(), rows, cols, cols}; }
};

cq::QuantizerSpec make_spec(const char* method, int bits, double alpha = 0.15) {
  cq::QuantizerSpec spec;
  spec.method = method;
  spec.bits = bits;
  spec.alpha = alpha;
  return spec;
}

// Activations whose rows hold outliers: a few channels 20-100x larger (the LLM pattern the
// paper targets), one all-zero row and one all-zero column.
Matrix activations_with_outliers(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> outlier_gain(20.f, 100.f);
  Matrix x{std::vector<float>(static_cast<size_t>(rows * cols)), rows, cols};
  for (float& value : x.values) value = normal(generator);
  for (const int64_t column : {int64_t{1}, cols / 2, cols - 2}) {
    const float gain = outlier_gain(generator);
    for (int64_t i = 0; i < rows; ++i) x.values[static_cast<size_t>(i * cols + column)] *= gain;
  }
  for (int64_t j = 0; j < cols; ++j) x.values[static_cast<size_t>(2 * cols + j)] = 0.f;
  for (int64_t i = 0; i < rows; ++i) x.values[static_cast<size_t>(i * cols + 3)] = 0.f;
  return x;
}

const Matrix kFigure3{{0.09f, 43.4f, -0.1f, 1.4f, 1.2f,  //
                       0.15f, 58.7f, 0.5f, 0.07f, 2.7f,  //
                       -0.2f, 68.3f, 1.1f, 0.02f, 3.2f,  //
                       0.01f, 54.8f, 0.2f, 0.5f, 1.5f},
                      4,
                      5};

std::vector<int> codes_of(const cq::QuantizedMatrix& quantized) {
  return {quantized.codes.begin(), quantized.codes.end()};
}

TEST(QuantFigure3, PerTokenCodesAndKernel) {
  Matrix x = kFigure3;
  cq::KernelStats stats;
  const auto quantized = cq::make_quantizer(make_spec("per-token", 8))->quantize(x.view(), &stats);
  EXPECT_EQ(codes_of(quantized), (std::vector<int>{0, 127, 0, 4, 4, 0, 127, 1, 0, 6,  //
                                                   0, 127, 2, 0, 6, 0, 127, 0, 1, 3}));
  EXPECT_EQ(stats.kernel, 8);
  EXPECT_EQ(stats.elements, 20);
}

TEST(QuantFigure3, CrossQuantCodesAndKernel) {
  Matrix x = kFigure3;
  cq::KernelStats stats;
  const auto quantized = cq::make_quantizer(make_spec("crossquant", 8, 0.15))->quantize(x.view(), &stats);
  // SPEC.md: the paper's figure prints 0 for X[3][0]; the formula gives 3.
  EXPECT_EQ(codes_of(quantized), (std::vector<int>{26, 86, -7, 76, 32, 41, 112, 32, 4, 69,  //
                                                   -53, 127, 68, 1, 80, 3, 105, 13, 26, 39}));
  EXPECT_EQ(stats.kernel, 0);
  // Table 1 columns: column 1's max 68.3 is >= every t_i (4 elements), and c_j < t_i elsewhere.
  EXPECT_EQ(stats.column_max_ge_row_max, 4);
  EXPECT_EQ(stats.bound_below_per_token, 16);
}

TEST(QuantProperties, CrossQuantAlphaOneIsPerTokenExactly) {
  for (int bits = 2; bits <= 8; ++bits) {
    Matrix per_token_output = activations_with_outliers(33, 100, 7);
    Matrix crossquant_output = per_token_output;
    cq::KernelStats per_token_stats;
    cq::KernelStats crossquant_stats;
    cq::make_quantizer(make_spec("per-token", bits))->fake_quantize(per_token_output.view(), &per_token_stats);
    cq::make_quantizer(make_spec("crossquant", bits, 1.0))->fake_quantize(crossquant_output.view(), &crossquant_stats);
    for (size_t k = 0; k < per_token_output.values.size(); ++k)
      ASSERT_EQ(std::bit_cast<uint32_t>(per_token_output.values[k]), std::bit_cast<uint32_t>(crossquant_output.values[k]))
          << "bits " << bits << " element " << k;
    EXPECT_EQ(per_token_stats.kernel, crossquant_stats.kernel);
    EXPECT_EQ(per_token_stats.column_max_ge_row_max, crossquant_stats.column_max_ge_row_max);
    EXPECT_EQ(crossquant_stats.bound_below_per_token, 0);
  }
}

TEST(QuantProperties, CodesNeverExceedQmax) {
  for (const char* method : {"per-tensor", "per-token", "group", "crossquant"}) {
    for (int bits = 2; bits <= 8; ++bits) {
      for (const double alpha : {0.0, 0.15, 0.5, 0.85, 1.0}) {
        Matrix x = activations_with_outliers(17, 70, static_cast<uint32_t>(bits));
        cq::QuantizerSpec spec = make_spec(method, bits, alpha);
        spec.group_size = 32;
        cq::KernelStats stats;
        const auto quantized = cq::make_quantizer(spec)->quantize(x.view(), &stats);
        const int qmax = (1 << (bits - 1)) - 1;
        for (const int16_t code : quantized.codes) ASSERT_LE(std::abs(code), qmax) << method << " bits " << bits;
        EXPECT_EQ(stats.clipped, 0) << method << ": dynamic scales never clip";
      }
    }
  }
}

TEST(QuantProperties, ZeroRowsAndColumnsGiveZerosNeverNaN) {
  for (const char* method : {"per-tensor", "per-token", "group", "crossquant", "remove-kernel"}) {
    for (const double alpha : {0.0, 0.15, 1.0}) {
      Matrix x = activations_with_outliers(9, 40, 3);
      cq::QuantizerSpec spec = make_spec(method, 4, alpha);
      spec.group_size = 16;
      cq::make_quantizer(spec)->fake_quantize(x.view(), nullptr);
      for (const float value : x.values) ASSERT_TRUE(std::isfinite(value)) << method;
      for (int64_t j = 0; j < x.cols; ++j) EXPECT_EQ(x.values[static_cast<size_t>(2 * x.cols + j)], 0.f) << method;
      for (int64_t i = 0; i < x.rows; ++i) EXPECT_EQ(x.values[static_cast<size_t>(i * x.cols + 3)], 0.f) << method;
    }
  }
  // An all-zero matrix, including the single-element and empty cases.
  for (const int64_t size : {int64_t{0}, int64_t{1}, int64_t{37}}) {
    Matrix zeros{std::vector<float>(static_cast<size_t>(size * size), 0.f), size, size};
    cq::KernelStats stats;
    cq::make_quantizer(make_spec("crossquant", 8, 0.0))->fake_quantize(zeros.view(), &stats);
    for (const float value : zeros.values) EXPECT_EQ(value, 0.f);
    EXPECT_EQ(stats.kernel, size * size);
    EXPECT_EQ(stats.exact_zeros, size * size);
  }
}

// Paper §4.2: where c_j < t_i (case I), B̃_ij < B_ij, so an element CrossQuant sends to zero
// is in the per-token kernel too. Where c_j >= t_i (case II: here the outlier columns) that
// need not hold, which at 2 and 3 bits can outweigh case I; from 4 bits (the paper's A4/A8)
// the whole kernel is smaller on matrices whose rows hold outliers.
TEST(QuantProperties, CrossQuantKernelNotAbovePerTokenWhenRowsHoldOutliers) {
  for (int bits = 2; bits <= 8; ++bits) {
    for (const double alpha : {0.0, 0.15, 0.45, 0.75}) {
      Matrix x = activations_with_outliers(64, 256, 11);
      cq::KernelStats per_token_stats;
      cq::KernelStats crossquant_stats;
      const auto per_token = cq::make_quantizer(make_spec("per-token", bits))->quantize(x.view(), &per_token_stats);
      const auto crossquant = cq::make_quantizer(make_spec("crossquant", bits, alpha))->quantize(x.view(), &crossquant_stats);
      std::vector<float> row_absmax(static_cast<size_t>(x.rows), 0.f);
      std::vector<float> column_absmax(static_cast<size_t>(x.cols), 0.f);
      for (int64_t i = 0; i < x.rows; ++i)
        for (int64_t j = 0; j < x.cols; ++j) {
          const float magnitude = std::fabs(x.values[static_cast<size_t>(i * x.cols + j)]);
          row_absmax[static_cast<size_t>(i)] = std::max(row_absmax[static_cast<size_t>(i)], magnitude);
          column_absmax[static_cast<size_t>(j)] = std::max(column_absmax[static_cast<size_t>(j)], magnitude);
        }
      for (int64_t i = 0; i < x.rows; ++i)
        for (int64_t j = 0; j < x.cols; ++j) {
          const auto element = static_cast<size_t>(i * x.cols + j);
          if (column_absmax[static_cast<size_t>(j)] < row_absmax[static_cast<size_t>(i)] && crossquant.codes[element] == 0) {
            ASSERT_EQ(per_token.codes[element], 0) << "bits " << bits << " alpha " << alpha << " (" << i << ", " << j << ")";
          }
        }
      if (bits >= 4) {
        EXPECT_LE(crossquant_stats.kernel, per_token_stats.kernel) << "bits " << bits << " alpha " << alpha;
      }
    }
  }
}

TEST(QuantProperties, NonFiniteInputThrows) {
  for (const char* method : {"per-tensor", "per-token", "per-channel", "group", "crossquant", "remove-kernel"}) {
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()}) {
      Matrix x = activations_with_outliers(300, 200, 5);  // large enough for the parallel path
      x.values[static_cast<size_t>(123 * x.cols + 7)] = bad;
      const auto quantizer = cq::make_quantizer(make_spec(method, 8));
      try {
        quantizer->fake_quantize(x.view(), nullptr);
        ADD_FAILURE() << method << " accepted " << bad;
      } catch (const cq::Error& error) {
        EXPECT_NE(std::string(error.what()).find("NaN or Inf"), std::string::npos) << error.what();
        EXPECT_NE(std::string(error.what()).find("row 123"), std::string::npos) << error.what();
      }
      if (std::string(method) != "remove-kernel") {
        EXPECT_THROW(quantizer->quantize(x.view(), nullptr), cq::Error) << method;
      }
    }
  }
}

TEST(QuantProperties, InvalidSpecsThrow) {
  for (const int bits : {0, 1, 9, 16}) EXPECT_THROW(cq::make_quantizer(make_spec("per-token", bits)), cq::Error);
  EXPECT_THROW(cq::make_quantizer(make_spec("crossquant", 8, -0.1)), cq::Error);
  EXPECT_THROW(cq::make_quantizer(make_spec("crossquant", 8, 1.5)), cq::Error);
  EXPECT_THROW(cq::make_quantizer(make_spec("crossquant", 8, std::nan(""))), cq::Error);
  EXPECT_THROW(cq::make_quantizer(make_spec("smoothquant", 8)), cq::Error);
  cq::QuantizerSpec group = make_spec("group", 4);
  group.group_size = 0;
  EXPECT_THROW(cq::make_quantizer(group), cq::Error);
  cq::QuantizerSpec asymmetric_per_token = make_spec("per-token", 4);
  asymmetric_per_token.asymmetric = true;
  EXPECT_THROW(cq::make_quantizer(asymmetric_per_token), cq::Error);
  cq::QuantizerSpec static_per_token = make_spec("per-token", 8);
  static_per_token.static_column_absmax = {1.f, 2.f};
  EXPECT_THROW(cq::make_quantizer(static_per_token), cq::Error);
  cq::QuantizerSpec bad_static = make_spec("crossquant", 8);
  bad_static.static_column_absmax = {1.f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_THROW(cq::make_quantizer(bad_static), cq::Error);
  cq::QuantizerSpec target = make_spec("remove-kernel", 8);
  target.kernel_target = 1.5;
  EXPECT_THROW(cq::make_quantizer(target), cq::Error);
}

TEST(QuantStaticCrossQuant, CalibratedColumnsMatchDynamicOnTheSameMatrix) {
  Matrix x = activations_with_outliers(40, 90, 21);
  std::vector<float> column_absmax;
  cq::CrossQuantQuantizer::accumulate_column_absmax(x.view(), column_absmax);
  cq::CrossQuantQuantizer static_quantizer(make_spec("crossquant", 8, 0.15));
  static_quantizer.set_static_column_absmax(column_absmax);
  EXPECT_TRUE(static_quantizer.is_static());
  Matrix dynamic_output = x;
  Matrix static_output = x;
  cq::KernelStats dynamic_stats;
  cq::KernelStats static_stats;
  cq::make_quantizer(make_spec("crossquant", 8, 0.15))->fake_quantize(dynamic_output.view(), &dynamic_stats);
  static_quantizer.fake_quantize(static_output.view(), &static_stats);
  EXPECT_EQ(dynamic_output.values, static_output.values);
  EXPECT_EQ(dynamic_stats.kernel, static_stats.kernel);
  EXPECT_EQ(static_stats.clipped, 0);
}

// The Table 1 counts are taken by sorting the column maxima for many rows and directly for
// a few (decoding): with static c, quantizing token by token must count what one call counts.
TEST(QuantStaticCrossQuant, TokenByTokenStatisticsEqualOneCall) {
  Matrix x = activations_with_outliers(40, 90, 33);
  std::vector<float> column_absmax;
  cq::CrossQuantQuantizer::accumulate_column_absmax(x.view(), column_absmax);
  for (float& value : column_absmax) value *= 0.7f;  // some tokens exceed c: c_j < t_i occurs
  cq::CrossQuantQuantizer quantizer(make_spec("crossquant", 8, 0.15));
  quantizer.set_static_column_absmax(column_absmax);
  cq::KernelStats whole, by_token;
  (void)quantizer.quantize(x.view(), &whole);
  for (int64_t i = 0; i < x.rows; ++i)
    (void)quantizer.quantize(cq::MatrixView{x.values.data() + i * x.cols, 1, x.cols, x.cols}, &by_token);
  EXPECT_GT(whole.column_max_ge_row_max, 0);
  EXPECT_GT(whole.bound_below_per_token, 0);
  EXPECT_EQ(by_token.column_max_ge_row_max, whole.column_max_ge_row_max);
  EXPECT_EQ(by_token.bound_below_per_token, whole.bound_below_per_token);
  EXPECT_EQ(by_token.kernel, whole.kernel);
  EXPECT_EQ(by_token.clipped, whole.clipped);
}

TEST(QuantStaticCrossQuant, ValuesBeyondCalibrationClipAndCount) {
  Matrix calibration = activations_with_outliers(40, 90, 21);
  std::vector<float> column_absmax;
  cq::CrossQuantQuantizer::accumulate_column_absmax(calibration.view(), column_absmax);
  cq::QuantizerSpec spec = make_spec("crossquant", 4, 0.15);
  spec.static_column_absmax = column_absmax;
  const auto quantizer = cq::make_quantizer(spec);
  Matrix x = calibration;
  for (float& value : x.values) value *= 3.f;  // every non-zero column now exceeds its c_j
  x.values[static_cast<size_t>(4 * x.cols + 3)] = 5.f;  // a value in a column calibrated as all zero
  cq::KernelStats stats;
  const auto quantized = quantizer->quantize(x.view(), &stats);
  EXPECT_GT(stats.clipped, 0);
  for (const int16_t code : quantized.codes) ASSERT_LE(std::abs(code), 7);
  cq::KernelStats fake_stats;
  quantizer->fake_quantize(x.view(), &fake_stats);
  for (const float value : x.values) ASSERT_TRUE(std::isfinite(value));
  EXPECT_EQ(fake_stats.clipped, stats.clipped);
  // The dequantization factors are what a folded integer GEMM needs.
  EXPECT_EQ(quantized.column_factors.size(), static_cast<size_t>(x.cols));
  EXPECT_EQ(quantized.row_scales.size(), static_cast<size_t>(x.rows));
  Matrix wrong_width{std::vector<float>(20, 1.f), 2, 10};
  EXPECT_THROW(quantizer->fake_quantize(wrong_width.view(), nullptr), cq::Error);
}

TEST(QuantProperties, StridedViewsTouchOnlyTheirColumns) {
  Matrix x = activations_with_outliers(20, 50, 9);
  const Matrix original = x;
  cq::MatrixView left{x.values.data(), x.rows, 30, x.cols};
  cq::make_quantizer(make_spec("crossquant", 4))->fake_quantize(left, nullptr);
  Matrix packed{std::vector<float>(20 * 30), 20, 30};
  for (int64_t i = 0; i < 20; ++i)
    for (int64_t j = 0; j < 30; ++j)
      packed.values[static_cast<size_t>(i * 30 + j)] = original.values[static_cast<size_t>(i * 50 + j)];
  cq::make_quantizer(make_spec("crossquant", 4))->fake_quantize(packed.view(), nullptr);
  for (int64_t i = 0; i < 20; ++i)
    for (int64_t j = 0; j < 50; ++j) {
      const float expected = j < 30 ? packed.values[static_cast<size_t>(i * 30 + j)]
                                    : original.values[static_cast<size_t>(i * 50 + j)];
      ASSERT_EQ(x.values[static_cast<size_t>(i * 50 + j)], expected) << i << ", " << j;
    }
}

TEST(QuantProperties, RemoveKernelZeroesExactlyThePerTokenKernel) {
  Matrix x = activations_with_outliers(30, 64, 13);
  Matrix removed = x;
  cq::KernelStats per_token_stats;
  cq::KernelStats removed_stats;
  const auto codes = cq::make_quantizer(make_spec("per-token", 8))->quantize(x.view(), &per_token_stats);
  cq::make_quantizer(make_spec("remove-kernel", 8))->fake_quantize(removed.view(), &removed_stats);
  for (size_t k = 0; k < x.values.size(); ++k)
    EXPECT_EQ(removed.values[k], codes.codes[k] == 0 ? 0.f : x.values[k]);
  EXPECT_EQ(removed_stats.kernel, per_token_stats.kernel);
}

TEST(QuantProperties, RemoveKernelTargetZeroesThatShare) {
  Matrix x = activations_with_outliers(30, 64, 13);
  cq::QuantizerSpec spec = make_spec("remove-kernel", 8);
  spec.kernel_target = 0.25;
  cq::KernelStats stats;
  cq::make_quantizer(spec)->fake_quantize(x.view(), &stats);
  EXPECT_EQ(stats.kernel, 30 * 64 / 4);  // the share includes the exact zeros, which sort first
}

}  // namespace

// column_divisors computes c^(1−α) in vectors (libmvec's pow where the build has it); it
// must equal the definition, the double-precision std::pow rounded to float, bit for bit.
TEST(QuantProperties, ColumnDivisorsEqualDoublePowRoundedToFloat) {
  std::mt19937 generator(17);
  std::uniform_real_distribution<float> log2_magnitude(-40.f, 40.f);
  std::vector<float> column_absmax(100003);
  for (float& value : column_absmax) value = std::exp2(log2_magnitude(generator));
  column_absmax[0] = 0.f;
  column_absmax[1] = std::numeric_limits<float>::denorm_min();
  column_absmax[2] = std::numeric_limits<float>::max();
  column_absmax[3] = 1.f;
  for (const double alpha : {0.0, 0.15, 0.3, 0.5, 0.75, 0.99, 1.0}) {
    const cq::CrossQuantQuantizer quantizer(make_spec("crossquant", 8, alpha));
    const std::vector<float> divisors = quantizer.column_divisors(column_absmax);
    const auto exponent = static_cast<float>(1.0 - alpha);
    size_t mismatches = 0;
    for (size_t j = 0; j < column_absmax.size(); ++j) {
      float expected = exponent == 0.5f ? std::sqrt(column_absmax[j])
                                        : static_cast<float>(std::pow(static_cast<double>(column_absmax[j]),
                                                                      static_cast<double>(exponent)));
      if (!(expected > 0.f)) expected = 1.f;  // the zero guard (SPEC.md)
      if (std::bit_cast<uint32_t>(divisors[j]) != std::bit_cast<uint32_t>(expected) && mismatches++ < 5)
        ADD_FAILURE() << "alpha " << alpha << ", c = " << column_absmax[j] << ": " << divisors[j] << " != " << expected;
    }
    EXPECT_EQ(mismatches, 0u) << "alpha " << alpha;
  }
}
