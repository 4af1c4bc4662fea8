// Hadamard rotation (issue 16): the transform kernel against dense matrix products built here
// from the definitions, and rotation invariance of whole models (unquantized, a rotated model
// computes the same function).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <numbers>
#include <set>

#include "kernels/hadamard.h"
#include "model/transformer.h"
#include "ptq/apply_quantization.h"
#include "ptq/quantized_checkpoint.h"
#include "ptq/rotation.h"
#include "test_support.h"

namespace cq {
namespace {

// ±1 entries of the Sylvester matrix: H[i][j] = (−1)^popcount(i & j).
int sylvester_entry(int64_t i, int64_t j) { return std::popcount(static_cast<uint64_t>(i & j)) % 2 ? -1 : 1; }

// Ĥ = (H_p ⊗ M)/√n with M the dense factor as given (±1 or a scaled Hartley matrix), entry by entry.
double kronecker_entry(int64_t i, int64_t j, int64_t m, const std::vector<double>& dense_factor) {
  const double small = m == 1 ? 1.0 : dense_factor[static_cast<size_t>((i % m) * m + j % m)];
  return sylvester_entry(i / m, j / m) * small;
}

// x·Ĥ for each row, as a plain O(n²) product, on the output columns j ≡ 0 (mod column_step).
std::vector<double> reference_transform(const std::vector<float>& x, int64_t rows, int64_t n, int64_t m,
                                        const std::vector<double>& dense_factor, int64_t column_step) {
  std::vector<double> y(static_cast<size_t>(rows * n), 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(n));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const double xi = x[static_cast<size_t>(r * n + i)];
      for (int64_t j = 0; j < n; j += column_step)
        y[static_cast<size_t>(r * n + j)] += xi * kronecker_entry(i, j, m, dense_factor) * scale;
    }
  return y;
}

std::vector<double> dense_factor_of(const kernels::HadamardTransform& transform) {
  const int64_t m = transform.dense_order();
  std::vector<double> factor(static_cast<size_t>(m * m), 1.0);
  if (m == 1) return factor;
  if (transform.is_hadamard()) {
    const std::vector<int8_t> h = kernels::known_hadamard_matrix(m);
    EXPECT_EQ(static_cast<int64_t>(h.size()), m * m);
    // A ±1 matrix with H·Hᵀ = m·I is a Hadamard matrix: checked here, not taken on trust.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < m; ++j) {
        int64_t dot = 0;
        for (int64_t t = 0; t < m; ++t) dot += h[static_cast<size_t>(i * m + t)] * h[static_cast<size_t>(j * m + t)];
        EXPECT_EQ(dot, i == j ? m : 0) << "order " << m << " rows " << i << ", " << j;
      }
    std::copy(h.begin(), h.end(), factor.begin());
  } else {  // Hartley: cas(2πjk/m), orthogonal after 1/√m, here scaled like a ±1 matrix
    for (int64_t j = 0; j < m; ++j)
      for (int64_t k = 0; k < m; ++k) {
        const double angle = 2 * std::numbers::pi * static_cast<double>(j * k) / static_cast<double>(m);
        factor[static_cast<size_t>(j * m + k)] = std::cos(angle) + std::sin(angle);
      }
  }
  return factor;
}

void expect_transform_matches_dense(int64_t n, int64_t rows) {
  const kernels::HadamardTransform transform(n);
  ASSERT_EQ(transform.power_of_two() * transform.dense_order(), n) << transform.construction();
  std::vector<float> x = test::random_normal(rows * n, static_cast<uint32_t>(n), 1.f);
  const int64_t column_step = n > 2048 ? 61 : 1;  // large sizes: a sample of the columns (seconds, not minutes)
  const std::vector<double> expected =
      reference_transform(x, rows, n, transform.dense_order(), dense_factor_of(transform), column_step);
  transform.apply(x.data(), rows);
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; j += column_step) {
      const auto i = static_cast<size_t>(r * n + j);
      worst = std::max(worst, std::abs(x[i] - expected[i]));
    }
  EXPECT_LT(worst, 2e-5) << "n = " << n << " (" << transform.construction() << ")";
}

TEST(HadamardKernel, MatchesDenseProductForEverySize) {
  for (int64_t n : {1, 2, 8, 12, 16, 20, 28, 32, 44, 48, 64, 86, 172, 188, 344, 768, 1024})
    expect_transform_matches_dense(n, 3);
}

TEST(HadamardKernel, LargeModelSizesUseKroneckerConstructions) {
  // The sizes the issue names: 11008 = 172·64 (Williamson), 14336 = 28·512, 3072 = 12·256.
  const std::pair<int64_t, int64_t> expected_dense[] = {{11008, 172}, {14336, 28}, {3072, 12}, {4096, 1}, {768, 12}};
  for (auto [n, m] : expected_dense) {
    const kernels::HadamardTransform transform(n);
    EXPECT_TRUE(transform.is_hadamard()) << n;
    EXPECT_EQ(transform.dense_order(), m) << transform.construction();
  }
  expect_transform_matches_dense(3072, 1);
  expect_transform_matches_dense(11008, 2);
  expect_transform_matches_dense(14336, 1);
}

TEST(HadamardKernel, ManyRowsMatchTheDenseProductBlockByBlock) {
  // More rows than one block of the dense product (kBlockFloats / n), and a partial last block.
  expect_transform_matches_dense(172, 500);
  expect_transform_matches_dense(768, 100);
}

TEST(HadamardKernel, EveryConstructedOrderIsHadamard) {
  // H·Hᵀ = m·I for every order a construction gives up to 400 (and ±1 entries), exactly in integers.
  std::set<int64_t> constructed;
  for (int64_t m = 1; m <= 400; ++m) {
    std::string name;
    const std::vector<int8_t> h = kernels::known_hadamard_matrix(m, &name);
    if (h.empty()) continue;
    constructed.insert(m);
    ASSERT_EQ(static_cast<int64_t>(h.size()), m * m) << name;
    for (int8_t entry : h) ASSERT_TRUE(entry == 1 || entry == -1) << name;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = i; j < m; ++j) {
        int64_t dot = 0;
        for (int64_t t = 0; t < m; ++t) dot += h[static_cast<size_t>(i * m + t)] * h[static_cast<size_t>(j * m + t)];
        ASSERT_EQ(dot, i == j ? m : 0) << name << " rows " << i << ", " << j;
      }
  }
  for (int64_t m : {1, 2, 4, 12, 20, 28, 44, 108, 148, 172, 344}) EXPECT_TRUE(constructed.count(m)) << m;
}

TEST(HadamardKernel, WilliamsonOrder172HasItsBlockStructure) {
  // Four symmetric circulant 43 × 43 blocks A, B, C, D in [[A, B, C, D], [−B, A, −D, C],
  // [−C, D, A, −B], [−D, −C, B, A]], each first row constant on the cosets of the order-6
  // subgroup {3^(7j)} of GF(43)* (the cyclotomic classes of order 7).
  std::string name;
  const std::vector<int8_t> h = kernels::known_hadamard_matrix(172, &name);
  ASSERT_EQ(h.size(), 172u * 172u);
  EXPECT_NE(name.find("Williamson"), std::string::npos) << name;
  const int n = 43;
  auto entry = [&](int block_row, int block_col, int i, int j) { return h[static_cast<size_t>((block_row * n + i) * 172 + block_col * n + j)]; };
  const int which[4][4] = {{0, 1, 2, 3}, {1, 0, 3, 2}, {2, 3, 0, 1}, {3, 2, 1, 0}};
  const int sign[4][4] = {{1, 1, 1, 1}, {-1, 1, -1, 1}, {-1, 1, 1, -1}, {-1, -1, 1, 1}};
  std::set<int> coset_of_one;
  for (int j = 0, power = 1; j < 6; ++j, power = power * 2187 % n) coset_of_one.insert(power);  // 3^7 = 2187
  EXPECT_EQ(coset_of_one, (std::set<int>{1, 6, 7, 36, 37, 42}));
  for (int br = 0; br < 4; ++br)
    for (int bc = 0; bc < 4; ++bc)
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) {
          const int first_row_entry = sign[br][bc] * entry(0, which[br][bc], 0, ((j - i) % n + n) % n);
          ASSERT_EQ(entry(br, bc, i, j), first_row_entry) << br << bc << " " << i << ", " << j;
          ASSERT_EQ(entry(0, which[br][bc], 0, j), entry(0, which[br][bc], 0, (n - j) % n)) << "symmetric";
        }
  for (int block = 0; block < 4; ++block)
    for (int t = 1; t < n; ++t)
      for (int u : coset_of_one) ASSERT_EQ(entry(0, block, 0, t), entry(0, block, 0, t * u % n)) << block << " " << t;
}

TEST(HadamardKernel, FallbackIsOrthogonalAndSaysSo) {
  const kernels::HadamardTransform transform(188);  // 4·47: no Paley order, no Williamson table here
  EXPECT_FALSE(transform.is_hadamard());
  EXPECT_NE(transform.construction().find("no Hadamard matrix of order 188"), std::string::npos) << transform.construction();
  const std::vector<float> h = transform.dense();
  for (int64_t i = 0; i < 188; ++i)
    for (int64_t j = 0; j < 188; ++j) {
      double dot = 0;
      for (int64_t t = 0; t < 188; ++t) dot += double{h[static_cast<size_t>(i * 188 + t)]} * h[static_cast<size_t>(j * 188 + t)];
      ASSERT_NEAR(dot, i == j ? 1.0 : 0.0, 1e-5) << i << ", " << j;
    }
}

TEST(HadamardKernel, PaleyTwelveIsTheHandBuiltOne) {
  // Paley I for q = 11 by hand: the quadratic residues mod 11 are {1, 3, 4, 5, 9}.
  const std::set<int> residues = {1, 3, 4, 5, 9};
  const std::vector<int8_t> h = kernels::known_hadamard_matrix(12);
  ASSERT_EQ(h.size(), 144u);
  for (int i = 0; i < 12; ++i)
    for (int j = 0; j < 12; ++j) {
      int expected = i == 0 ? (j == 0 ? 0 : 1) : j == 0 ? -1 : (i == j ? 0 : residues.count(((i - j) % 11 + 11) % 11) ? 1 : -1);
      if (i == j) expected += 1;
      EXPECT_EQ(h[static_cast<size_t>(i * 12 + j)], expected) << i << ", " << j;
    }
  EXPECT_TRUE(kernels::known_hadamard_matrix(188).empty());
  EXPECT_TRUE(kernels::known_hadamard_matrix(6).empty());
}

// Logits of the whole window (FP32) before and after rotation, as max |Δ| / max |logit|.
double rotated_logit_error(const std::filesystem::path& model_dir, uint64_t seed, int64_t length) {
  Transformer plain = load_model(model_dir);
  Transformer rotated = load_model(model_dir);
  rotate_model(rotated, seed);
  const int64_t vocab = plain.config().vocab_size;
  std::vector<int32_t> tokens(static_cast<size_t>(length));
  for (int64_t i = 0; i < length; ++i) tokens[static_cast<size_t>(i)] = static_cast<int32_t>((i * 37 + 5) % vocab);
  std::vector<float> a(static_cast<size_t>(length * vocab)), b(a.size());
  plain.forward(tokens, 1, length, a);
  rotated.forward(tokens, 1, length, b);
  double worst = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, double{std::abs(a[i] - b[i])});
    scale = std::max(scale, double{std::abs(a[i])});
  }
  return worst / scale;
}

TEST(Rotation, SyntheticModelsComputeTheSameFunction) {
  for (const char* preset : {"opt-pre", "opt-untied", "opt-nobias", "opt-fp16", "llama-gqa", "llama-tied",
                             "llama-bias-headdim", "llama-fp16", "opt-outliers"}) {
    const double error = rotated_logit_error(test::synthetic_model(preset), 7, 24);
    EXPECT_LT(error, 1e-4) << preset;
    EXPECT_GT(error, 0.0) << preset << ": bit-identical logits, was anything rotated?";
  }
}

TEST(Rotation, SharedModelsComputeTheSameFunction) {
  CQ_NEED_SHARED("models/stories260k");
  for (const char* name : {"stories260k", "tinyopt"})
    EXPECT_LT(rotated_logit_error(test::shared_dir() / "models" / name, 0, 64), 1e-4) << name;
}

TEST(Rotation, RotatesTheResidualStream) {
  // Not the identity: the embeddings change, and a different seed gives a different Q.
  const auto dir = test::synthetic_model("llama-gqa");
  Transformer a = load_model(dir), b = load_model(dir), c = load_model(dir);
  const RotationRecord record = rotate_model(a, 1);
  rotate_model(b, 2);
  EXPECT_EQ(record.hidden, "Walsh-Hadamard 32");
  EXPECT_EQ(record.mlp_down, "Paley I (q=11) 12 x Walsh-Hadamard 4");
  const auto ea = a.tensor_values(Transformer::StoredTensor::EmbedTokens);
  const auto eb = b.tensor_values(Transformer::StoredTensor::EmbedTokens);
  const auto ec = c.tensor_values(Transformer::StoredTensor::EmbedTokens);
  EXPECT_NE(ea, ec);
  EXPECT_NE(ea, eb);
  ASSERT_NE(a.mlp_down_transform(), nullptr);
}

TEST(Rotation, RefusesWhatItCannotFold) {
  Transformer post = load_model(test::synthetic_model("opt-post-proj"));
  EXPECT_NE(test::error_of([&] { rotate_model(post, 0); }).find("pre-norm"), std::string::npos);
  Transformer twice = load_model(test::synthetic_model("llama-gqa"));
  rotate_model(twice, 0);
  EXPECT_NE(test::error_of([&] { rotate_model(twice, 0); }).find("already rotated"), std::string::npos);
}

TEST(Rotation, QuantizedRotatedModelRunsOnBothEngines) {
  // W8A8 per-token on the rotated model: the integer engine computes what the fake one does.
  const auto dir = test::synthetic_model("llama-gqa");
  QuantConfig config;
  config.apply_scheme("w8a8");
  config.activation_method = "per-token";
  config.rotation = "hadamard";
  std::vector<std::vector<float>> logits;
  for (const char* engine : {"fake", "int"}) {
    config.engine = engine;
    Transformer model = load_model(dir);
    apply_quantization(model, config);
    std::vector<int32_t> tokens = {1, 5, 9, 14, 20, 33, 40, 2};
    std::vector<float> out(tokens.size() * static_cast<size_t>(model.config().vocab_size));
    model.forward(tokens, 1, static_cast<int64_t>(tokens.size()), out);
    logits.push_back(out);
  }
  double worst = 0, scale = 0;
  for (size_t i = 0; i < logits[0].size(); ++i) {
    worst = std::max(worst, double{std::abs(logits[0][i] - logits[1][i])});
    scale = std::max(scale, double{std::abs(logits[0][i])});
  }
  EXPECT_LT(worst / scale, 1e-3);
}

}  // namespace
}  // namespace cq

namespace cq {
namespace {

TEST(RotationCli, FlagsThatChangeNothingOrCannotFoldAreErrors) {
  const std::string ppl = "ppl --model " + test::synthetic_model("llama-gqa").string() + " --text " +
                          (test::source_dir() / "README.md").string() + " --seqlen 16 --max-windows 1 ";
  const std::pair<std::string, std::string> cases[] = {
      {"--rotate hadamard", "has no effect without quantization"},
      {"--scheme w8a8 --rotate-seed 3", "--rotate-seed has no effect without --rotate hadamard"},
      {"--scheme w8a8 --rotate hadamard --method smoothquant --calib README.md", "not supported"},
      {"--scheme w8a8 --rotate sideways", "--rotate"},
  };
  for (const auto& [flags, message] : cases) {
    const test::CommandResult run = test::run_cq(ppl + flags);
    EXPECT_NE(run.exit_code, 0) << flags;
    EXPECT_NE(run.output.find(message), std::string::npos) << flags << ": " << run.output;
  }
}

TEST(RotationCli, QuantizedCheckpointKeepsTheRotation) {
  // `cq quantize --rotate` stores the rotated tensors; loading restores the online transform
  // and the norms: the same perplexity as rotating on the fly, on OPT (mean folded) and LLaMA.
  CQ_NEED_SHARED("models/tinyopt");
  for (const char* preset : {"tinyopt", "stories260k"}) {  // both tied: lm_head gets its own rotated copy
    const std::string model = (test::shared_dir() / "models" / preset).string();
    const auto out = test::scratch_dir(std::string("rotated-") + preset);
    const std::string text = (test::source_dir() / "README.md").string();
    const std::string flags = " --scheme w4a8 --act-quant per-token --method rtn --rotate hadamard --rotate-seed 5";
    const test::CommandResult quantize = test::run_cq("quantize --quiet --model " + model + flags + " --out " + (out / "q").string());
    ASSERT_EQ(quantize.exit_code, 0) << quantize.output;
    const std::string window = " --text " + text + " --seqlen 32 --max-windows 2 --quiet";
    const test::CommandResult stored = test::run_cq("ppl --model " + (out / "q").string() + window);
    const test::CommandResult direct = test::run_cq("ppl --model " + model + window + flags);
    const test::CommandResult plain = test::run_cq("ppl --model " + model + window + " --scheme w4a8 --act-quant per-token --method rtn");
    ASSERT_EQ(stored.exit_code, 0) << stored.output;
    const auto perplexity = [](const test::CommandResult& run) { return run.output.substr(run.output.find("perplexity:")); };
    EXPECT_EQ(perplexity(stored), perplexity(direct)) << preset;
    EXPECT_NE(perplexity(direct), perplexity(plain)) << preset;
  }
}

}  // namespace
}  // namespace cq
