// Dynamic CrossQuant with its column maxima gathered by the kernel that writes the
// activations (kernels::produce_rows, CrossQuantQuantizer::*_with_column_absmax): the fused
// path must give what the two-pass quantizer gives, bit for bit, statistics included.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "kernels/column_absmax.h"
#include "kernels/normalization.h"
#include "model/transformer.h"
#include "quant/crossquant.h"
#include "quant/quantizer.h"
#include "test_support.h"
#include "util/error.h"

namespace cq {
namespace {

// Gaussian values with a few outlier columns and (from two rows on) an all-zero row 1.
std::vector<float> activations(int64_t rows, int64_t cols, uint32_t seed) {
  std::vector<float> x = test::random_normal(rows * cols, seed, 1.f);
  for (const int64_t column : {int64_t{0}, cols / 3, cols - 1})
    for (int64_t i = 0; i < rows; ++i) x[static_cast<size_t>(i * cols + column)] *= 40.f;
  if (rows > 1)
    for (int64_t j = 0; j < cols; ++j) x[static_cast<size_t>(cols + j)] = 0.f;
  return x;
}

// max_i |x_ij| per window, the definition.
std::vector<float> column_absmax_of(const std::vector<float>& x, int64_t cols, const std::vector<int64_t>& bounds) {
  std::vector<float> expected((bounds.size() - 1) * static_cast<size_t>(cols), 0.f);
  for (size_t w = 0; w + 1 < bounds.size(); ++w)
    for (int64_t i = bounds[w]; i < bounds[w + 1]; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        float& slot = expected[w * static_cast<size_t>(cols) + static_cast<size_t>(j)];
        slot = std::max(slot, std::fabs(x[static_cast<size_t>(i * cols + j)]));
      }
  return expected;
}

// Windows that start and end inside the threads' row blocks, a one-row window, a tail.
TEST(ColumnGather, ProduceRowsGathersEachWindowsColumnMaxima) {
  const int64_t rows = 301, cols = 133;  // odd widths exercise the SIMD tail
  const std::vector<float> source = activations(rows, cols, 7);
  for (const std::vector<int64_t>& bounds :
       {std::vector<int64_t>{0, rows}, std::vector<int64_t>{0, 1, 150, 151, 152, 290, rows}}) {
    for (const bool parallel : {false, true}) {
      std::vector<float> y(source.size(), -1.f);
      std::vector<float> gathered((bounds.size() - 1) * cols, 123.f);  // overwritten, not accumulated
      kernels::produce_rows(y.data(), rows, cols, parallel, bounds, gathered.data(), [&](int64_t i) {
        for (int64_t j = 0; j < cols; ++j) y[static_cast<size_t>(i * cols + j)] = -source[static_cast<size_t>(i * cols + j)];
      });
      for (size_t k = 0; k < y.size(); ++k) ASSERT_EQ(y[k], -source[k]);
      EXPECT_EQ(gathered, column_absmax_of(source, cols, bounds)) << "parallel " << parallel;
    }
  }
}

TEST(ColumnGather, NaNReachesTheColumnMaximum) {
  std::vector<float> row(37, 1.f), column_absmax(37, 0.f);
  row[20] = std::numeric_limits<float>::quiet_NaN();
  row[36] = -std::numeric_limits<float>::infinity();
  kernels::update_column_absmax(row.data(), 1, 37, 37, column_absmax.data());
  EXPECT_TRUE(std::isnan(column_absmax[20]));
  EXPECT_EQ(column_absmax[36], std::numeric_limits<float>::infinity());
  EXPECT_EQ(column_absmax[0], 1.f);
}

TEST(ColumnGather, GivenColumnMaximaEqualTheTwoPassQuantizer) {
  const int64_t rows = 64, cols = 700;  // large enough for the parallel row loops
  const std::vector<float> input = activations(rows, cols, 11);
  const std::vector<float> column_absmax = column_absmax_of(input, cols, {0, rows});
  for (const int bits : {8, 4, 2}) {
    for (const double alpha : {0.0, 0.15, 0.5, 1.0}) {
      QuantizerSpec spec;
      spec.method = "crossquant";
      spec.bits = bits;
      spec.alpha = alpha;
      const CrossQuantQuantizer quantizer(spec);
      std::vector<float> two_pass = input, one_pass = input;
      KernelStats two_pass_stats, one_pass_stats;
      quantizer.fake_quantize(MatrixView{two_pass.data(), rows, cols, cols}, &two_pass_stats);
      quantizer.fake_quantize_with_column_absmax(MatrixView{one_pass.data(), rows, cols, cols}, column_absmax,
                                                 &one_pass_stats);
      ASSERT_EQ(one_pass, two_pass) << bits << " bits, alpha " << alpha;
      test::expect_same_stats(one_pass_stats, two_pass_stats);

      std::vector<float> untouched = input;
      KernelStats codes_stats, given_codes_stats;
      const QuantizedMatrix codes = quantizer.quantize(MatrixView{untouched.data(), rows, cols, cols}, &codes_stats);
      const QuantizedMatrix given = quantizer.quantize_with_column_absmax(MatrixView{untouched.data(), rows, cols, cols},
                                                                          column_absmax, &given_codes_stats);
      EXPECT_EQ(given.codes, codes.codes);
      EXPECT_EQ(given.row_scales, codes.row_scales);
      EXPECT_EQ(given.column_factors, codes.column_factors);
      test::expect_same_stats(given_codes_stats, codes_stats);
    }
  }
}

// The capability the model asks for (Quantizer::wants_column_absmax): dynamic CrossQuant
// only; static CrossQuant has its c_j, the other methods need none.
TEST(ColumnGather, OnlyDynamicCrossQuantWantsColumnMaxima) {
  QuantizerSpec spec;
  spec.method = "crossquant";
  EXPECT_TRUE(make_quantizer(spec)->wants_column_absmax());
  spec.static_column_absmax = {1.f, 2.f};
  EXPECT_FALSE(make_quantizer(spec)->wants_column_absmax());
  for (const char* method : {"per-token", "per-tensor", "per-channel", "group", "remove-kernel"}) {
    QuantizerSpec other;
    other.method = method;
    EXPECT_FALSE(make_quantizer(other)->wants_column_absmax()) << method;
  }
}

TEST(ColumnGather, WrongColumnMaximaAreErrors) {
  const int64_t rows = 8, cols = 40;
  std::vector<float> x = activations(rows, cols, 3);
  std::vector<float> column_absmax = column_absmax_of(x, cols, {0, rows});
  QuantizerSpec spec;
  spec.method = "crossquant";
  const CrossQuantQuantizer quantizer(spec);
  const MatrixView view{x.data(), rows, cols, cols};
  EXPECT_NE(test::error_of([&] {
              quantizer.fake_quantize_with_column_absmax(view, std::span(column_absmax).first(cols - 1), nullptr);
            }).find("39 column maxima given for a matrix with 40 columns"),
            std::string::npos);
  std::vector<float> too_small = column_absmax;
  too_small[0] *= 0.5f;  // column 0 holds outliers: its codes would clip
  EXPECT_NE(test::error_of([&] { (void)quantizer.quantize_with_column_absmax(view, too_small, nullptr); })
                .find("below the matrix's own"),
            std::string::npos);
  CrossQuantQuantizer static_quantizer(spec);
  static_quantizer.set_static_column_absmax(column_absmax);
  EXPECT_THROW(static_quantizer.fake_quantize_with_column_absmax(view, column_absmax, nullptr), Error);
  // NaN in X reaches c: the error names the row, as the two-pass quantizer's does.
  x[static_cast<size_t>(5 * cols + 2)] = std::numeric_limits<float>::quiet_NaN();
  column_absmax[2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(test::error_of([&] { quantizer.fake_quantize_with_column_absmax(view, column_absmax, nullptr); })
                .find("input row 5 holds NaN or Inf"),
            std::string::npos);
}

// LayerNorm and RMSNorm against their definitions in double, for row counts that fill and
// do not fill the four-row groups and widths with a SIMD tail; gathering the column maxima
// must not change an output, and must give the maxima of what was written.
TEST(ColumnGather, NormsEqualTheirDefinitionWithAndWithoutGathering) {
  for (const int64_t rows : {int64_t{1}, int64_t{3}, int64_t{4}, int64_t{7}}) {
    for (const int64_t width : {int64_t{37}, int64_t{64}, int64_t{133}}) {
      const std::vector<float> x = activations(rows, width, static_cast<uint32_t>(rows * 1000 + width));
      const std::vector<float> weight = test::random_normal(width, 3, 1.f), bias = test::random_normal(width, 4, 1.f);
      for (const bool layer_norm : {true, false}) {
        std::vector<float> plain(x.size()), gathered_out(x.size()), column_absmax(static_cast<size_t>(width), 0.f);
        auto run = [&](float* out, float* gather) {
          if (layer_norm) kernels::layer_norm_rows(x.data(), out, rows, width, weight.data(), bias.data(), 1e-5, gather);
          else kernels::rms_norm_rows(x.data(), out, rows, width, weight.data(), 1e-6, gather);
        };
        run(plain.data(), nullptr);
        run(gathered_out.data(), column_absmax.data());
        ASSERT_EQ(gathered_out, plain);
        EXPECT_EQ(column_absmax, column_absmax_of(plain, width, {0, rows}));
        for (int64_t i = 0; i < rows; ++i) {
          const float* row = x.data() + i * width;
          double mean = 0, squares = 0;
          for (int64_t j = 0; j < width; ++j) mean += row[j];
          mean = layer_norm ? mean / static_cast<double>(width) : 0.0;
          for (int64_t j = 0; j < width; ++j) squares += (row[j] - mean) * (row[j] - mean);
          const double scale = 1.0 / std::sqrt(squares / static_cast<double>(width) + (layer_norm ? 1e-5 : 1e-6));
          for (int64_t j = 0; j < width; ++j) {
            const double expected = (row[j] - mean) * scale * weight[static_cast<size_t>(j)] +
                                    (layer_norm ? bias[static_cast<size_t>(j)] : 0.0);
            ASSERT_NEAR(plain[static_cast<size_t>(i * width + j)], expected, 1e-5 * (1.0 + std::fabs(expected)))
                << (layer_norm ? "layer" : "rms") << " norm, row " << i << ", column " << j;
          }
        }
      }
    }
  }
}

// Forwards fake_quantize but advertises no capability (wants_column_absmax() is false), so
// the model does not gather c_j and runs the two-pass path.
class OpaqueQuantizer final : public Quantizer {
 public:
  explicit OpaqueQuantizer(std::shared_ptr<const Quantizer> inner) : inner_(std::move(inner)) {}
  const QuantizerSpec& spec() const override { return inner_->spec(); }
  void fake_quantize(MatrixView x, KernelStats* stats) const override { inner_->fake_quantize(x, stats); }
  QuantizedMatrix quantize(MatrixView x, KernelStats* stats) const override { return inner_->quantize(x, stats); }

 private:
  std::shared_ptr<const Quantizer> inner_;
};

// The norms (LayerNorm, RMSNorm), the attention heads and the MLP activations (ReLU, SwiGLU)
// gather c_j for dynamic CrossQuant; the logits and every layer's statistics must not
// change. 16 windows of 40 rows put the MLP's gathering on both threads with windows across
// their blocks.
TEST(ColumnGather, ModelLogitsAndStatisticsEqualTheUnfusedPath) {
  for (const char* preset : {"opt-pre", "llama-gqa"}) {
    Transformer model(test::synthetic_model(preset));
    const int64_t batch = 16, length = 40, vocab = model.config().vocab_size;
    std::vector<int32_t> tokens(static_cast<size_t>(batch * length));
    std::mt19937 generator(5);
    for (int32_t& token : tokens) token = static_cast<int32_t>(generator() % static_cast<uint32_t>(vocab));
    QuantizerSpec spec;
    spec.method = "crossquant";
    spec.bits = 6;
    spec.alpha = 0.15;
    const std::shared_ptr<const Quantizer> crossquant = make_quantizer(spec);
    std::vector<std::vector<float>> logits(2, std::vector<float>(static_cast<size_t>(batch * length * vocab)));
    std::vector<std::vector<KernelStats>> stats(2);
    for (int fused = 0; fused < 2; ++fused) {
      model.set_activation_quantizer_everywhere(
          fused == 1 ? crossquant : std::shared_ptr<const Quantizer>(std::make_shared<OpaqueQuantizer>(crossquant)));
      model.reset_kernel_stats();
      model.forward(tokens, batch, length, logits[static_cast<size_t>(fused)]);
      stats[static_cast<size_t>(fused)] = model.kernel_stats();
    }
    EXPECT_EQ(logits[1], logits[0]) << preset;
    ASSERT_EQ(stats[1].size(), stats[0].size());
    for (size_t i = 0; i < stats[0].size(); ++i) test::expect_same_stats(stats[1][i], stats[0][i]);
    EXPECT_GT(model.total_kernel_stats().elements, 0);
  }
}

}  // namespace
}  // namespace cq
