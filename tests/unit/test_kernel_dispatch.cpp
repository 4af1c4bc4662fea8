// Run-time dispatch of the row and vector kernels (kernels/kernel_dispatch.h): the CPU check,
// the forced paths, and every dispatched kernel forced scalar against forced AVX-512 (bit for
// bit where both do the same arithmetic; within the stated tolerance where the order of
// operations differs). The row quantization kernels are compared one by one in
// test_quant_kernels.cpp; here they also run inside whole quantizers.
#include <gtest/gtest.h>

#include <bit>
#include <cstdio>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/column_absmax.h"
#include "kernels/gemm_f32.h"
#include "kernels/hadamard.h"
#include "kernels/kernel_dispatch.h"
#include "kernels/normalization.h"
#include "kernels/vector_math.h"
#include "quant/quantizer.h"
#include "test_support.h"
#include "util/error.h"

namespace cq {
namespace {

using kernels::KernelPath;
using test::ScopedKernelPath;

#define SKIP_WITHOUT_AVX512() \
  if (!kernels::cpu_has_avx512()) GTEST_SKIP() << "this CPU lacks AVX-512: the scalar kernels are the only path"

// Runs produce() once forced scalar and once forced AVX-512; returns {scalar, avx512}.
template <typename Produce>
auto on_both_paths(Produce&& produce) {
  auto on = [&](KernelPath path) {
    ScopedKernelPath forced(path);
    return produce();
  };
  auto scalar = on(KernelPath::Scalar);
  auto avx512 = on(KernelPath::Avx512);
  return std::pair{std::move(scalar), std::move(avx512)};
}

std::vector<uint32_t> bits_of(const std::vector<float>& values) {
  std::vector<uint32_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) bits[i] = std::bit_cast<uint32_t>(values[i]);
  return bits;
}

// The CPU flags the kernel reports (Linux), read independently of __builtin_cpu_supports.
std::set<std::string> proc_cpuinfo_flags() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::set<std::string> flags;
    for (std::string flag; words >> flag;) flags.insert(flag);
    return flags;
  }
  return {};
}

TEST(KernelDispatch, NamesRoundTripAndUnknownNamesAreErrors) {
  for (KernelPath path : {KernelPath::Auto, KernelPath::Avx512, KernelPath::Scalar})
    EXPECT_EQ(kernels::parse_kernel_path(kernels::to_string(path)), path);
  EXPECT_NE(test::error_of([] { kernels::parse_kernel_path("avx2"); }).find("unknown kernel path 'avx2'"),
            std::string::npos);
  EXPECT_TRUE(kernels::kernel_path_supported(KernelPath::Scalar));
  EXPECT_EQ(kernels::kernel_path_supported(KernelPath::Avx512), kernels::cpu_has_avx512());
}

// The check a portable build (CQ_NATIVE=OFF) relies on: automatic selection takes the AVX-512
// kernels exactly where /proc/cpuinfo lists what they use. `make test-portable` runs this.
TEST(KernelDispatch, AutoTakesAvx512ExactlyWhereTheCpuHasIt) {
  const std::set<std::string> flags = proc_cpuinfo_flags();
  if (flags.empty()) GTEST_SKIP() << "no /proc/cpuinfo";
  bool listed = true;
  for (const char* flag : {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"}) listed = listed && flags.count(flag);
  EXPECT_EQ(kernels::cpu_has_avx512(), listed);
  ScopedKernelPath automatic(KernelPath::Auto);
  EXPECT_EQ(kernels::avx512_kernels(), listed);
  EXPECT_STREQ(kernels::active_kernel_isa(), listed ? "avx512" : "scalar");
  std::printf("row and vector kernels: %s\n", kernels::active_kernel_isa());
}

TEST(KernelDispatch, ForcingAvx512WithoutTheCpuIsAnError) {
  if (kernels::cpu_has_avx512()) GTEST_SKIP() << "this CPU has AVX-512";
  EXPECT_NE(test::error_of([] { kernels::set_kernel_path(KernelPath::Avx512); }).find("AVX-512"), std::string::npos);
}

// The Hadamard butterflies are the same additions on both paths (the in-register levels take
// ±x + partner, exact for ±1), and the dense factor is oneDNN's on both (> 4 rows: not the
// AVX-512 GEMV): bit for bit.
TEST(KernelDispatch, HadamardTransformIsBitIdentical) {
  SKIP_WITHOUT_AVX512();
  for (const int64_t n : {16, 64, 4096, 768, 3072, 11008}) {
    const int64_t rows = 7;
    const std::vector<float> x = test::random_normal(rows * n, static_cast<uint32_t>(n), 1.f);
    const kernels::HadamardTransform transform(n);
    const auto [scalar, avx512] = on_both_paths([&] {
      std::vector<float> y = x;
      transform.apply(y.data(), rows);
      return y;
    });
    EXPECT_EQ(bits_of(scalar), bits_of(avx512)) << transform.construction();
  }
}

TEST(KernelDispatch, ColumnMaximaAreBitIdentical) {
  SKIP_WITHOUT_AVX512();
  for (const int64_t n : {1, 15, 16, 17, 33, 100}) {
    const int64_t rows = 5, stride = n + 3;
    std::vector<float> x = test::random_normal(rows * stride, static_cast<uint32_t>(n), 3.f);
    x[2] = std::numeric_limits<float>::quiet_NaN();  // NaN propagates on both paths
    x[static_cast<size_t>(stride + n - 1)] = -std::numeric_limits<float>::infinity();
    const auto [scalar, avx512] = on_both_paths([&] {
      std::vector<float> maxima(static_cast<size_t>(n), 0.5f);
      kernels::update_column_absmax(x.data(), rows, n, stride, maxima.data());
      return maxima;
    });
    EXPECT_EQ(bits_of(scalar), bits_of(avx512)) << n;
  }
}

// The norms' row statistics are the same C++ code on both paths; the AVX-512 version writes
// ((x − mean)·scale)·weight + bias with separate roundings, where the compiler may contract
// the portable loop's into one fma (-march=native). Tolerance: 2 units of float rounding of
// the product's and the bias' magnitudes; RMSNorm (weight·(x·scale), nothing to contract)
// must agree bit for bit. The column maxima are maxima of those outputs.
TEST(KernelDispatch, NormsAgreeWithinRounding) {
  SKIP_WITHOUT_AVX512();
  for (const int64_t n : {16, 37, 256}) {
    for (const int64_t rows : {1, 3, 4, 7}) {
      const std::vector<float> x = test::random_normal(rows * n, static_cast<uint32_t>(rows * n), 2.f);
      const std::vector<float> weight = test::random_normal(n, 5, 1.f), bias = test::random_normal(n, 6, 1.f);
      for (const bool layer_norm : {true, false}) {
        const auto [scalar, avx512] = on_both_paths([&] {
          std::vector<float> out(x.size()), maxima(static_cast<size_t>(n), 0.f);
          if (layer_norm) kernels::layer_norm_rows(x.data(), out.data(), rows, n, weight.data(), bias.data(), 1e-5, maxima.data());
          else kernels::rms_norm_rows(x.data(), out.data(), rows, n, weight.data(), 1e-6, maxima.data());
          out.insert(out.end(), maxima.begin(), maxima.end());
          return out;
        });
        if (!layer_norm) {
          EXPECT_EQ(bits_of(scalar), bits_of(avx512)) << "rms norm, " << rows << " x " << n;
          continue;
        }
        for (size_t k = 0; k < scalar.size(); ++k) {
          const size_t j = k % static_cast<size_t>(n);
          const double product = std::abs(static_cast<double>(scalar[k]) - bias[j]);
          EXPECT_NEAR(scalar[k], avx512[k], 0x1p-23 * (product + std::abs(bias[j])))
              << "layer norm, " << rows << " x " << n << ", element " << k;
        }
      }
    }
  }
}

// The AVX-512 exp is a polynomial (~2 ulp), the portable one std::exp: each is checked against
// the definition in test_vector_math.cpp; here against each other with the same bounds.
TEST(KernelDispatch, VectorMathAgreesWithinTheExpError) {
  SKIP_WITHOUT_AVX512();
  for (const int64_t n : {1, 15, 16, 17, 100, 1000}) {
    const std::vector<float> scores = test::random_normal(n, static_cast<uint32_t>(n), 6.f);
    const std::vector<float> up = test::random_normal(n, 7, 1.f);
    const auto [scalar, avx512] = on_both_paths([&] {
      std::vector<float> softmax = scores, silu(static_cast<size_t>(n));
      kernels::softmax_inplace(softmax.data(), n);
      kernels::silu_multiply(scores.data(), up.data(), silu.data(), n);
      return std::tuple{softmax, silu, kernels::sum_exp_shifted(scores.data(), n, 1.f)};
    });
    for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
      EXPECT_NEAR(std::get<0>(scalar)[i], std::get<0>(avx512)[i], 2e-6 * std::get<0>(scalar)[i] + 1e-30) << n;
      EXPECT_NEAR(std::get<1>(scalar)[i], std::get<1>(avx512)[i], 8e-7 * std::abs(std::get<1>(scalar)[i]) + 1e-30) << n;
    }
    EXPECT_NEAR(std::get<2>(scalar), std::get<2>(avx512), 4e-7 * std::get<2>(scalar)) << n;
  }
}

// M <= 4: the own AVX-512 GEMV against oneDNN's sgemm (the portable path); both sum K
// products in float in different orders: within K·2^-23 of Σ|a·b|.
TEST(KernelDispatch, SmallFp32GemmAgreesWithinSummationError) {
  SKIP_WITHOUT_AVX512();
  const int64_t n = 37, k = 131;
  const std::vector<float> b = test::random_normal(n * k, 11, 1.f), bias = test::random_normal(n, 12, 1.f);
  for (const int64_t m : {1, 2, 3, 4}) {
    const std::vector<float> a = test::random_normal(m * k, static_cast<uint32_t>(m), 1.f);
    const auto [scalar, avx512] = on_both_paths([&] {
      std::vector<float> c(static_cast<size_t>(m * n));
      kernels::gemm_f32(a.data(), b.data(), bias.data(), c.data(), m, n, k);
      return c;
    });
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double magnitude = std::abs(bias[static_cast<size_t>(j)]);
        for (int64_t kk = 0; kk < k; ++kk)
          magnitude += std::abs(static_cast<double>(a[static_cast<size_t>(i * k + kk)]) * b[static_cast<size_t>(j * k + kk)]);
        const auto at = static_cast<size_t>(i * n + j);
        EXPECT_NEAR(scalar[at], avx512[at], static_cast<double>(k) * 0x1p-23 * magnitude) << m << " " << i << " " << j;
      }
  }
}

// Column maxima c whose powers c^0.85 (CrossQuant's 1 − α at α = 0.15) lie within 2^-46 of
// a float rounding midpoint, found by a search over floats in [1, 100) with std::pow in double:
// the AVX-512 powers (libmvec) cannot settle these lanes and must fall back to std::pow.
constexpr float kPowerNearMidpoint[] = {0x1.7e93c2p+0f, 0x1.1a28acp+1f, 0x1.8cfd88p+1f, 0x1.f5be2cp+1f,
                                        0x1.85242p+2f,  0x1.ccbe78p+2f, 0x1.356ea4p+3f, 0x1.7f6d26p+4f};

// Whole quantizers (row kernels, column maxima, CrossQuant's column powers), each built on
// the path under test: codes, scales, fake-quantized values and kernel statistics bit for bit.
TEST(KernelDispatch, QuantizersAreBitIdentical) {
  SKIP_WITHOUT_AVX512();
  const int64_t rows = 9, cols = 203;  // 12 whole vectors of 16 and a tail of 11
  std::vector<float> x = test::random_normal(rows * cols, 21, 1.f);
  for (int64_t i = 0; i < rows; ++i) {
    x[static_cast<size_t>(i * cols + 5)] *= 60.f;                 // an outlier channel
    x[static_cast<size_t>(i * cols + (i * 37) % cols)] = 0.f;     // exact zeros, in vectors
    x[static_cast<size_t>(i * cols + cols - 1 - i % 3)] = -0.f;   // and in the tail
  }
  std::vector<float> static_column_absmax(static_cast<size_t>(cols));
  for (size_t j = 0; j < static_column_absmax.size(); ++j)
    static_column_absmax[j] = j % 5 == 0 ? kPowerNearMidpoint[j % 8] : 0.5f + static_cast<float>(j % 7);
  for (const char* method : {"per-tensor", "per-token", "per-channel", "group", "crossquant", "crossquant static"}) {
    for (const double alpha : {0.15, 0.5}) {
      QuantizerSpec spec;
      spec.method = std::string(method).substr(0, std::string(method).find(' '));
      spec.alpha = alpha;
      spec.group_size = 64;
      if (std::string(method) == "crossquant static") spec.static_column_absmax = static_column_absmax;
      const auto [scalar, avx512] = on_both_paths([&] {
        const auto quantizer = make_quantizer(spec);
        std::vector<float> fake = x;
        KernelStats fake_stats, code_stats;
        quantizer->fake_quantize({fake.data(), rows, cols, cols}, &fake_stats);
        QuantizedMatrix quantized = quantizer->quantize({x.data(), rows, cols, cols}, &code_stats);
        return std::tuple{fake, fake_stats, code_stats, quantized};
      });
      SCOPED_TRACE(std::string(method) + " alpha " + std::to_string(alpha));
      EXPECT_EQ(bits_of(std::get<0>(scalar)), bits_of(std::get<0>(avx512)));
      test::expect_same_stats(std::get<1>(scalar), std::get<1>(avx512));
      test::expect_same_stats(std::get<2>(scalar), std::get<2>(avx512));
      const QuantizedMatrix& a = std::get<3>(scalar);
      const QuantizedMatrix& b = std::get<3>(avx512);
      EXPECT_EQ(a.codes, b.codes);
      EXPECT_EQ(bits_of(a.row_scales), bits_of(b.row_scales));
      EXPECT_EQ(bits_of(a.column_factors), bits_of(b.column_factors));
      EXPECT_EQ(bits_of(a.group_scales), bits_of(b.group_scales));
      EXPECT_EQ(std::bit_cast<uint32_t>(a.tensor_scale), std::bit_cast<uint32_t>(b.tensor_scale));
    }
  }
}

}  // namespace
}  // namespace cq
