// Every GEMM path against the plain scalar references, bit for bit, on random inputs
// including edge sizes (K not a multiple of the vector width, M = 1, odd N, N = 1).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/gemm_dispatch.h"
#include "kernels/gemm_f32.h"
#include "kernels/gemm_int4.h"
#include "kernels/gemm_int8.h"
#include "util/error.h"

namespace cq::kernels {
namespace {

std::vector<int8_t> random_codes(size_t count, int lo, int hi, std::mt19937& rng) {
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<int8_t> out(count);
  for (auto& x : out) x = static_cast<int8_t>(dist(rng));
  return out;
}

std::vector<float> random_floats(size_t count, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> out(count);
  for (auto& x : out) x = dist(rng);
  return out;
}

// Bit-exact comparison of the first `cols` entries of each of `rows` rows (row stride ld);
// reports the first few mismatches.
void expect_bitwise_equal(const std::vector<float>& expected, const std::vector<float>& actual, int64_t rows,
                          int64_t cols, int64_t ld, const std::string& what) {
  int reported = 0;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      const float e = expected[i * ld + j], a = actual[i * ld + j];
      if (std::bit_cast<uint32_t>(e) != std::bit_cast<uint32_t>(a) && reported++ < 5) {
        ADD_FAILURE() << what << ": C[" << i << "][" << j << "] expected " << e << " got " << a;
      }
    }
  }
}

std::vector<GemmPath> supported_simd_and_scalar_paths() {
  std::vector<GemmPath> paths;
  for (GemmPath path : {GemmPath::Avx512Vnni, GemmPath::Avx2, GemmPath::Scalar}) {
    if (gemm_path_supported(path)) paths.push_back(path);
  }
  return paths;
}

struct Shape {
  int64_t m, n, k;
};

const std::vector<Shape> kEdgeShapes = {
    {1, 1, 1},    {1, 1, 3},    {1, 3, 63},    {1, 64, 65},  {1, 65, 172}, {2, 17, 4},   {5, 130, 63},
    {6, 64, 64},  {7, 1, 172},  {13, 129, 65}, {1, 200, 8},  {3, 33, 1},   {19, 70, 33}, {1, 4096, 96},
    {1, 190, 172},  // M = 1 over 3 panels (decode groups of 4 panels, partial)
};

// ------------------------------------------------------------------------------------------------
// INT8

void check_int8(const Shape& s, bool with_bias, bool padded_strides, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t lda = s.k + (padded_strides ? 5 : 0);
  const int64_t ldb = s.k + (padded_strides ? 3 : 0);
  const int64_t ldc = s.n + (padded_strides ? 7 : 0);
  const auto a = random_codes(static_cast<size_t>(s.m * lda), -127, 127, rng);
  const auto b = random_codes(static_cast<size_t>(s.n * ldb), -128, 127, rng);
  const auto row_scales = random_floats(static_cast<size_t>(s.m), 1e-3f, 0.1f, rng);
  const auto col_scales = random_floats(static_cast<size_t>(s.n), 1e-3f, 0.1f, rng);
  const auto bias = random_floats(static_cast<size_t>(s.n), -2.f, 2.f, rng);
  const float* bias_ptr = with_bias ? bias.data() : nullptr;

  std::vector<float> expected(static_cast<size_t>(s.m * ldc), -1.f);
  gemm_int8_reference(a.data(), s.m, lda, row_scales.data(), b.data(), s.n, s.k, ldb, col_scales.data(), bias_ptr,
                      expected.data(), ldc);
  const PackedInt8Weights w = pack_int8_weights(b.data(), s.n, s.k, ldb, /*keep_row_major=*/true);
  std::vector<GemmPath> paths = supported_simd_and_scalar_paths();
  if (!padded_strides) paths.push_back(GemmPath::OneDnn);  // oneDNN path uses contiguous B/C scratch
  for (GemmPath path : paths) {
    std::vector<float> actual(static_cast<size_t>(s.m * ldc), -1.f);  // padding must stay untouched
    gemm_int8(a.data(), s.m, lda, row_scales.data(), w, col_scales.data(), bias_ptr, actual.data(), ldc, path);
    expect_bitwise_equal(expected, actual, s.m, ldc, ldc,
                         std::string("int8 ") + to_string(path) + " M=" + std::to_string(s.m) +
                             " N=" + std::to_string(s.n) + " K=" + std::to_string(s.k));
  }
}

TEST(KernelsInt8Gemm, EveryPathMatchesScalarReferenceOnEdgeShapes) {
  uint32_t seed = 1;
  for (const Shape& s : kEdgeShapes) {
    for (bool with_bias : {false, true}) check_int8(s, with_bias, false, seed++);
  }
}

TEST(KernelsInt8Gemm, StridedOperandsLeavePaddingUntouched) {
  uint32_t seed = 100;
  for (const Shape& s : kEdgeShapes) check_int8(s, true, true, seed++);
}

TEST(KernelsInt8Gemm, ManyRowsFewChannelsSplitsRowsAcrossThreads) {
  check_int8({50, 3, 65}, true, false, 7);
  check_int8({97, 64, 20}, false, false, 8);
  check_int8({64, 300, 256}, true, false, 9);  // several panels, full 6-row tiles
}

TEST(KernelsInt8Gemm, ExtremeCodesDoNotOverflowOrSaturate) {
  // All-extreme operands: the VNNI path sees 255·127 products and the largest compensation;
  // a vpmaddubsw-style int16 pair sum would saturate here.
  const int64_t m = 3, n = 66, k = 4099;
  for (int8_t a_value : {int8_t{127}, int8_t{-127}}) {
    for (int8_t b_value : {int8_t{127}, int8_t{-128}}) {
      std::vector<int8_t> a(static_cast<size_t>(m * k), a_value), b(static_cast<size_t>(n * k), b_value);
      std::vector<float> row_scales(m, 1.0f), col_scales(n, 1.0f);
      std::vector<float> expected(static_cast<size_t>(m * n));
      gemm_int8_reference(a.data(), m, k, row_scales.data(), b.data(), n, k, k, col_scales.data(), nullptr,
                          expected.data(), n);
      EXPECT_EQ(expected[0], static_cast<float>(int64_t{a_value} * b_value * k));
      const PackedInt8Weights w = pack_int8_weights(b.data(), n, k, k, true);
      std::vector<GemmPath> paths = supported_simd_and_scalar_paths();
      paths.push_back(GemmPath::OneDnn);
      for (GemmPath path : paths) {
        std::vector<float> actual(static_cast<size_t>(m * n));
        gemm_int8(a.data(), m, k, row_scales.data(), w, col_scales.data(), nullptr, actual.data(), n, path);
        expect_bitwise_equal(expected, actual, m, n, n, std::string("extreme ") + to_string(path));
      }
    }
  }
}

TEST(KernelsInt8Gemm, ReferenceIsTheDequantizedProduct) {
  std::mt19937 rng(11);
  const int64_t m = 4, n = 9, k = 37;
  const auto a = random_codes(m * k, -127, 127, rng);
  const auto b = random_codes(n * k, -128, 127, rng);
  const auto rs = random_floats(m, 0.01f, 0.1f, rng), cs = random_floats(n, 0.01f, 0.1f, rng);
  const auto bias = random_floats(n, -1.f, 1.f, rng);
  std::vector<float> c(m * n);
  gemm_int8_reference(a.data(), m, k, rs.data(), b.data(), n, k, k, cs.data(), bias.data(), c.data(), n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double expected = bias[j];
      for (int64_t kk = 0; kk < k; ++kk) expected += (double(rs[i]) * a[i * k + kk]) * (double(cs[j]) * b[j * k + kk]);
      EXPECT_NEAR(c[i * n + j], expected, 1e-5 * (1.0 + std::fabs(expected)));
    }
  }
}

TEST(KernelsInt8Gemm, PackRejectsTooLargeK) {
  std::vector<int8_t> b(65537, 1);
  EXPECT_THROW(pack_int8_weights(b.data(), 1, 65537, 65537), Error);
  EXPECT_NO_THROW(pack_int8_weights(b.data(), 1, 65536, 65536));
}

TEST(KernelsInt8Gemm, OneDnnPathNeedsRowMajorCopy) {
  std::vector<int8_t> a(8, 1), b(8, 1);
  std::vector<float> ones(2, 1.0f), c(1);
  const PackedInt8Weights w = pack_int8_weights(b.data(), 1, 8, 8, /*keep_row_major=*/false);
  EXPECT_THROW(gemm_int8(a.data(), 1, 8, ones.data(), w, ones.data(), nullptr, c.data(), 1, GemmPath::OneDnn), Error);
}

// ------------------------------------------------------------------------------------------------
// INT4

void check_int4(const Shape& s, int64_t group_size, bool asymmetric, bool with_bias, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t lda = s.k + 2, ldq = s.k + 1, ldc = s.n + 3;
  const int64_t groups = group_size > 0 ? (s.k + group_size - 1) / group_size : 1;
  const auto a = random_codes(static_cast<size_t>(s.m * lda), -127, 127, rng);
  const auto codes = asymmetric ? random_codes(static_cast<size_t>(s.n * ldq), 0, 15, rng)
                                : random_codes(static_cast<size_t>(s.n * ldq), -8, 7, rng);
  const auto zeros = random_codes(static_cast<size_t>(s.n * groups), 0, 15, rng);
  const auto scales = random_floats(static_cast<size_t>(s.n * groups), 1e-3f, 0.1f, rng);
  const auto row_scales = random_floats(static_cast<size_t>(s.m), 1e-3f, 0.1f, rng);
  const auto bias = random_floats(static_cast<size_t>(s.n), -2.f, 2.f, rng);
  const int8_t* zeros_ptr = asymmetric ? zeros.data() : nullptr;
  const float* bias_ptr = with_bias ? bias.data() : nullptr;

  std::vector<float> expected(static_cast<size_t>(s.m * ldc), -1.f);
  gemm_int4_reference(a.data(), s.m, lda, row_scales.data(), codes.data(), s.n, s.k, ldq, scales.data(), group_size,
                      zeros_ptr, bias_ptr, expected.data(), ldc);
  const PackedInt4Weights w = pack_int4_weights(codes.data(), s.n, s.k, ldq, scales.data(), group_size, zeros_ptr);
  for (GemmPath path : supported_simd_and_scalar_paths()) {
    std::vector<float> actual(static_cast<size_t>(s.m * ldc), -1.f);
    gemm_int4(a.data(), s.m, lda, row_scales.data(), w, bias_ptr, actual.data(), ldc, path);
    expect_bitwise_equal(expected, actual, s.m, ldc, ldc,
                         std::string("int4 ") + to_string(path) + (asymmetric ? " asym" : " sym") +
                             " g=" + std::to_string(group_size) + " M=" + std::to_string(s.m) +
                             " N=" + std::to_string(s.n) + " K=" + std::to_string(s.k));
  }
}

TEST(KernelsInt4Gemm, EveryPathMatchesScalarReferenceOnEdgeShapes) {
  uint32_t seed = 200;
  for (const Shape& s : kEdgeShapes) {
    for (int64_t group_size : {int64_t{0}, int64_t{8}, int64_t{32}, int64_t{128}}) {
      for (bool asymmetric : {false, true}) {
        const bool with_bias = (seed & 1) != 0;
        check_int4(s, group_size, asymmetric, with_bias, seed++);
      }
    }
  }
}

TEST(KernelsInt4Gemm, DecodeShapesAndManyRows) {
  check_int4({1, 192, 512}, 128, false, true, 300);
  check_int4({1, 130, 4096}, 128, true, true, 301);
  check_int4({9, 64, 264}, 16, true, false, 302);
  check_int4({40, 5, 100}, 0, true, true, 303);  // one panel: rows split across threads
}

// The decode GEMV (4 panels at once, int32 sums per group): one group spanning K = 65536 with
// every product at its extreme gives the largest sums any input can make; 130 channels (3
// panels) run a narrower GEMV for the tail.
TEST(KernelsInt4Gemm, DecodeGemvAtExtremeCodesAndLongestGroup) {
  const int64_t n = 130, k = 65536;
  for (bool asymmetric : {false, true}) {
    std::vector<int8_t> a(static_cast<size_t>(k)), codes(static_cast<size_t>(n * k)), zeros(static_cast<size_t>(n), 0);
    for (int64_t kk = 0; kk < k; ++kk) a[kk] = kk >= k - 8 ? int8_t{-127} : int8_t{127};
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t kk = 0; kk < k; ++kk) {
        const bool high = j % 2 == 0 || kk % 5 == 0;
        codes[j * k + kk] = asymmetric ? (high ? int8_t{15} : int8_t{0}) : (high ? int8_t{-8} : int8_t{7});
      }
    }
    const std::vector<float> scales(static_cast<size_t>(n), 1e-4f), row_scale(1, 0.5f);
    std::vector<float> expected(static_cast<size_t>(n)), actual(static_cast<size_t>(n));
    const int8_t* zeros_ptr = asymmetric ? zeros.data() : nullptr;
    gemm_int4_reference(a.data(), 1, k, row_scale.data(), codes.data(), n, k, k, scales.data(), 0, zeros_ptr, nullptr,
                        expected.data(), n);
    const PackedInt4Weights w = pack_int4_weights(codes.data(), n, k, k, scales.data(), 0, zeros_ptr);
    for (GemmPath path : supported_simd_and_scalar_paths()) {
      std::fill(actual.begin(), actual.end(), -1.f);
      gemm_int4(a.data(), 1, k, row_scale.data(), w, nullptr, actual.data(), n, path);
      expect_bitwise_equal(expected, actual, 1, n, n, std::string("int4 extreme ") + to_string(path));
    }
  }
}

TEST(KernelsInt4Gemm, ReferenceIsTheDequantizedProduct) {
  std::mt19937 rng(12);
  const int64_t m = 3, n = 5, k = 40, g = 16, groups = 3;
  const auto a = random_codes(m * k, -127, 127, rng);
  const auto q = random_codes(n * k, 0, 15, rng);
  const auto z = random_codes(n * groups, 0, 15, rng);
  const auto s = random_floats(n * groups, 0.01f, 0.1f, rng), rs = random_floats(m, 0.01f, 0.1f, rng);
  std::vector<float> c(m * n);
  gemm_int4_reference(a.data(), m, k, rs.data(), q.data(), n, k, k, s.data(), g, z.data(), nullptr, c.data(), n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double expected = 0;
      for (int64_t kk = 0; kk < k; ++kk) {
        const double weight = (q[j * k + kk] - z[j * groups + kk / g]) * double(s[j * groups + kk / g]);
        expected += double(rs[i]) * a[i * k + kk] * weight;
      }
      EXPECT_NEAR(c[i * n + j], expected, 1e-5 * (1.0 + std::fabs(expected)));
    }
  }
}

TEST(KernelsInt4Gemm, PackValidatesInputs) {
  std::vector<int8_t> codes(16, 3);
  std::vector<float> scales(2, 1.0f);
  EXPECT_THROW(pack_int4_weights(codes.data(), 1, 16, 16, scales.data(), 12), Error);  // not a multiple of 8
  codes[5] = 8;  // outside [-8, 7] for symmetric
  EXPECT_THROW(pack_int4_weights(codes.data(), 1, 16, 16, scales.data(), 8), Error);
  std::vector<int8_t> zeros = {16, 0};
  EXPECT_THROW(pack_int4_weights(codes.data(), 1, 16, 16, scales.data(), 8, zeros.data()), Error);
  zeros[0] = 15;
  EXPECT_NO_THROW(pack_int4_weights(codes.data(), 1, 16, 16, scales.data(), 8, zeros.data()));
}

TEST(KernelsInt4Gemm, OneDnnPathIsRejected) {
  std::vector<int8_t> a(8, 1), codes(8, 1);
  std::vector<float> ones(1, 1.0f), c(1);
  const PackedInt4Weights w = pack_int4_weights(codes.data(), 1, 8, 8, ones.data(), 0);
  EXPECT_THROW(gemm_int4(a.data(), 1, 8, ones.data(), w, nullptr, c.data(), 1, GemmPath::OneDnn), Error);
}

// ------------------------------------------------------------------------------------------------
// FP32 and dispatch

TEST(KernelsF32Gemm, MatchesDoublePrecisionProduct) {
  std::mt19937 rng(13);
  auto shapes = kEdgeShapes;  // plus decode-sized products large enough for both threads (M <= 4: own GEMV)
  shapes.insert(shapes.end(), {{4, 300, 1000}, {2, 1030, 257}, {3, 513, 512}});
  for (const Shape& s : shapes) {
    const int64_t lda = s.k + 1, ldc = s.n + 2;
    const auto a = random_floats(s.m * lda, -1.f, 1.f, rng), b = random_floats(s.n * s.k, -1.f, 1.f, rng);
    const auto bias = random_floats(s.n, -1.f, 1.f, rng);
    std::vector<float> c(s.m * ldc, 0.f);
    gemm_f32(a.data(), lda, b.data(), s.k, bias.data(), c.data(), ldc, s.m, s.n, s.k);
    for (int64_t i = 0; i < s.m; ++i) {
      for (int64_t j = 0; j < s.n; ++j) {
        double expected = bias[j];
        for (int64_t kk = 0; kk < s.k; ++kk) expected += double(a[i * lda + kk]) * b[j * s.k + kk];
        ASSERT_NEAR(c[i * ldc + j], expected, 1e-4 * (1.0 + std::sqrt(double(s.k))));
      }
    }
  }
}

TEST(KernelsDispatch, ParsesNamesAndHonoursOverride) {
  EXPECT_EQ(parse_gemm_path("vnni"), GemmPath::Avx512Vnni);
  EXPECT_EQ(parse_gemm_path("scalar"), GemmPath::Scalar);
  EXPECT_THROW(parse_gemm_path("avx9000"), Error);
  std::vector<int8_t> b(64, 1);
  const PackedInt8Weights w = pack_int8_weights(b.data(), 8, 8, 8);
  const GemmPath before = gemm_path();
  set_gemm_path(GemmPath::Scalar);
  EXPECT_EQ(resolve_int8_gemm_path(4, w), GemmPath::Scalar);
  EXPECT_EQ(resolve_int8_gemm_path(4, w, GemmPath::Avx2), GemmPath::Avx2);  // explicit argument wins
  set_gemm_path(GemmPath::Auto);
  EXPECT_NE(resolve_int8_gemm_path(4, w), GemmPath::Auto);
  set_gemm_path(before);
}

}  // namespace
}  // namespace cq::kernels
