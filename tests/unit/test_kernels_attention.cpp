// The attention and RoPE kernels against their scalar definitions, computed here in double:
// out_t = Σ_s softmax_s(q_t · k_s · scale) · v_s over the keys query t sees, and rotary
// embeddings as Hugging Face's LLaMA defines them (rotate_half: element i pairs with i + d/2,
// angle = position · inv_freq_i in float32).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include "kernels/attention.h"
#include "kernels/rope.h"
#include "test_support.h"

namespace cq::kernels {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// One query row against the key/value rows `rows` (in the order attended), the definition.
std::vector<double> attend(const float* q, const std::vector<const float*>& keys, const std::vector<const float*>& values,
                           int64_t head_dim, double scale) {
  std::vector<double> scores(keys.size());
  double max_score = -std::numeric_limits<double>::infinity();
  for (size_t s = 0; s < keys.size(); ++s) {
    double dot = 0;
    for (int64_t j = 0; j < head_dim; ++j) dot += static_cast<double>(q[j]) * keys[s][j];
    scores[s] = dot * scale;
    max_score = std::max(max_score, scores[s]);
  }
  double total = 0;
  for (double& score : scores) total += score = std::exp(score - max_score);
  std::vector<double> out(static_cast<size_t>(head_dim), 0.0);
  for (size_t s = 0; s < keys.size(); ++s)
    for (int64_t j = 0; j < head_dim; ++j) out[static_cast<size_t>(j)] += scores[s] / total * values[s][j];
  return out;
}

void expect_near_row(const float* actual, const std::vector<double>& expected, const std::string& where) {
  for (size_t j = 0; j < expected.size(); ++j)
    ASSERT_NEAR(actual[j], expected[j], 2e-5 * (1.0 + std::fabs(expected[j]))) << where << ", column " << j;
}

// Strided operands, blocks of 64 queries and their tails, a cached past, unscaled scores
// (the queries scaled already, gemm_f32's path) and scaled ones. Keys and values after the
// last visible row are NaN: reading them would show.
TEST(AttentionKernels, CausalHeadEqualsItsDefinition) {
  for (const int64_t head_dim : {int64_t{8}, int64_t{20}}) {
    for (const int64_t past : {int64_t{0}, int64_t{5}}) {
      for (const int64_t length : {int64_t{1}, int64_t{3}, int64_t{64}, int64_t{65}, int64_t{150}}) {
        for (const float scale : {1.f, 0.3f}) {
          const int64_t q_stride = 3 * head_dim, kv_stride = 2 * head_dim + 1, out_stride = head_dim + 4;
          const int64_t total = past + length;
          const auto seed = static_cast<uint32_t>(head_dim * 1000 + past * 100 + length);
          const std::vector<float> q = test::random_normal(length * q_stride, seed, 1.f);
          std::vector<float> k = test::random_normal((total + 3) * kv_stride, seed + 1, 1.f);
          std::vector<float> v = test::random_normal((total + 3) * kv_stride, seed + 2, 1.f);
          for (int64_t i = total * kv_stride; i < (total + 3) * kv_stride; ++i) k[i] = v[i] = kNaN;
          std::vector<float> out(static_cast<size_t>(length * out_stride), -7.f);
          std::vector<float> scores(static_cast<size_t>(length * total));
          causal_attention_head(q.data(), q_stride, k.data(), v.data(), kv_stride, past, length, head_dim, scale,
                                out.data(), out_stride, scores.data());
          for (int64_t t = 0; t < length; ++t) {
            std::vector<const float*> keys, values;
            for (int64_t s = 0; s <= past + t; ++s) {
              keys.push_back(k.data() + s * kv_stride);
              values.push_back(v.data() + s * kv_stride);
            }
            const std::string where = "head_dim " + std::to_string(head_dim) + ", past " + std::to_string(past) +
                                      ", length " + std::to_string(length) + ", scale " + std::to_string(scale) +
                                      ", query " + std::to_string(t);
            expect_near_row(out.data() + t * out_stride, attend(q.data() + t * q_stride, keys, values, head_dim, scale),
                            where);
            for (int64_t j = head_dim; j < out_stride; ++j) ASSERT_EQ(out[t * out_stride + j], -7.f) << where;
          }
        }
      }
    }
  }
}

// Three sequences over a cache with free capacity (NaN), grouped-query heads (query heads
// 0, 1 read key/value head 0; 2, 3 read head 1), enough work for the parallel loop; the
// column maxima of each sequence's output are exactly max_t |out|.
TEST(AttentionKernels, CacheAttentionReadsEachSequencesCacheWithGroupedHeads) {
  AttentionHeads heads;
  heads.num_heads = 4;
  heads.num_kv_heads = 2;
  heads.head_dim = 8;
  heads.score_scale = 0.35f;
  const int64_t batch = 3, past = 6, length = 70, capacity = 80;
  const int64_t q_width = heads.q_width(), kv_width = heads.kv_width();
  const std::vector<float> q = test::random_normal(batch * length * q_width, 21, 1.f);
  std::vector<float> keys = test::random_normal(batch * capacity * kv_width, 22, 1.f);
  std::vector<float> values = test::random_normal(batch * capacity * kv_width, 23, 1.f);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = (b * capacity + past + length) * kv_width; i < (b + 1) * capacity * kv_width; ++i)
      keys[i] = values[i] = kNaN;
  for (const bool gather : {false, true}) {
    std::vector<float> out(static_cast<size_t>(batch * length * q_width));
    std::vector<float> column_absmax(static_cast<size_t>(batch * q_width), 0.f);
    cache_attention(q.data(), keys.data(), values.data(), capacity, batch, length, past, heads, out.data(),
                    gather ? column_absmax.data() : nullptr);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t h = 0; h < heads.num_heads; ++h) {
        const int64_t kv_head = h / 2;
        for (int64_t t = 0; t < length; ++t) {
          std::vector<const float*> key_rows, value_rows;
          for (int64_t s = 0; s <= past + t; ++s) {
            key_rows.push_back(keys.data() + (b * capacity + s) * kv_width + kv_head * heads.head_dim);
            value_rows.push_back(values.data() + (b * capacity + s) * kv_width + kv_head * heads.head_dim);
          }
          const int64_t row = b * length + t;
          expect_near_row(out.data() + row * q_width + h * heads.head_dim,
                          attend(q.data() + row * q_width + h * heads.head_dim, key_rows, value_rows, heads.head_dim,
                                 heads.score_scale),
                          "sequence " + std::to_string(b) + ", head " + std::to_string(h) + ", query " +
                              std::to_string(t));
        }
      }
      for (int64_t j = 0; j < q_width; ++j) {
        float expected = 0.f;
        if (gather)
          for (int64_t t = 0; t < length; ++t) expected = std::max(expected, std::fabs(out[(b * length + t) * q_width + j]));
        ASSERT_EQ(column_absmax[b * q_width + j], expected) << "sequence " << b << ", column " << j;
      }
    }
  }
}

// Two trees packed end to end: A (root, 5 rows), B continues A (right after it: one
// contiguous range), C continues A after B (its keys are gathered), D continues C; E (root,
// 70 rows: a block of 64 and a tail), F continues E. Each query sees its ancestors' rows,
// root first, then its own segment's rows up to itself.
TEST(AttentionKernels, TreeAttentionSeesTheAncestorsOfEachSegment) {
  AttentionHeads heads;
  heads.num_heads = 4;
  heads.num_kv_heads = 2;
  heads.head_dim = 8;
  heads.score_scale = 0.35f;
  struct Shape {
    int64_t length, parent;
  };
  const std::vector<Shape> shapes = {{5, -1}, {3, 0}, {4, 0}, {2, 2}, {70, -1}, {2, 4}};
  std::vector<AttentionSegment> segments;
  int64_t rows = 0;
  for (const Shape& shape : shapes) {
    AttentionSegment segment;
    segment.start = rows;
    segment.length = shape.length;
    if (shape.parent >= 0) {
      const AttentionSegment& parent = segments[static_cast<size_t>(shape.parent)];
      segment.ancestors = parent.ancestors;
      segment.ancestors.emplace_back(parent.start, parent.length);
      segment.past = parent.past + parent.length;
      segment.contiguous = parent.contiguous && parent.start + parent.length == rows;
    }
    segments.push_back(segment);
    rows += shape.length;
  }
  ASSERT_TRUE(segments[1].contiguous);
  ASSERT_FALSE(segments[2].contiguous);
  ASSERT_FALSE(segments[3].contiguous);
  const int64_t q_width = heads.q_width(), kv_width = heads.kv_width();
  const std::vector<float> q = test::random_normal(rows * q_width, 31, 1.f);
  const std::vector<float> k = test::random_normal(rows * kv_width, 32, 1.f);
  const std::vector<float> v = test::random_normal(rows * kv_width, 33, 1.f);
  std::vector<float> out(static_cast<size_t>(rows * q_width));
  tree_attention(q.data(), k.data(), v.data(), segments, heads, out.data());
  for (size_t s = 0; s < segments.size(); ++s) {
    const AttentionSegment& segment = segments[s];
    std::vector<int64_t> visible;
    for (const auto& [start, length] : segment.ancestors)
      for (int64_t r = start; r < start + length; ++r) visible.push_back(r);
    for (int64_t t = 0; t < segment.length; ++t) {
      visible.push_back(segment.start + t);
      for (int64_t h = 0; h < heads.num_heads; ++h) {
        std::vector<const float*> key_rows, value_rows;
        for (const int64_t r : visible) {
          key_rows.push_back(k.data() + r * kv_width + h / 2 * heads.head_dim);
          value_rows.push_back(v.data() + r * kv_width + h / 2 * heads.head_dim);
        }
        const int64_t row = segment.start + t;
        expect_near_row(out.data() + row * q_width + h * heads.head_dim,
                        attend(q.data() + row * q_width + h * heads.head_dim, key_rows, value_rows, heads.head_dim,
                               heads.score_scale),
                        "segment " + std::to_string(s) + ", head " + std::to_string(h) + ", query " + std::to_string(t));
      }
    }
  }
}

// inv_freq_i = 1 / theta^(2i/d); linear scaling divides every one by the factor; llama3
// (LLaMA-3.1) divides those with wavelength 2π/inv_freq above original_context /
// low_freq_factor, keeps those below original_context / high_freq_factor and blends in
// between: (1 − s) · f / factor + s · f, s = (original_context / wavelength − low) / (high − low).
// head_dim 6, theta 10^4: f = 1 (wavelength 6.3), 10^(−4/3) (135), 10^(−8/3) (2916); with
// original_context 200, low 1, high 4 they are kept, blended and divided.
TEST(RopeKernels, InverseFrequenciesFollowTheirDefinition) {
  const double f0 = 1.0, f1 = std::pow(10.0, -4.0 / 3.0), f2 = std::pow(10.0, -8.0 / 3.0);
  auto expect_frequencies = [](const std::vector<float>& actual, const std::vector<double>& expected) {
    ASSERT_EQ(actual.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(actual[i], expected[i], 1e-6 * expected[i]) << i;
  };
  expect_frequencies(rope_inverse_frequencies(6, 10000.0, {}), {f0, f1, f2});
  RopeFrequencyScaling linear;
  linear.kind = RopeScalingKind::Linear;
  linear.factor = 2.0;
  expect_frequencies(rope_inverse_frequencies(6, 10000.0, linear), {f0 / 2, f1 / 2, f2 / 2});
  RopeFrequencyScaling llama3;
  llama3.kind = RopeScalingKind::Llama3;
  llama3.factor = 8.0;
  llama3.low_freq_factor = 1.0;
  llama3.high_freq_factor = 4.0;
  llama3.original_context = 200;
  const double smooth = (200.0 / (2 * std::numbers::pi / f1) - 1.0) / (4.0 - 1.0);
  ASSERT_GT(smooth, 0.0);
  ASSERT_LT(smooth, 1.0);
  expect_frequencies(rope_inverse_frequencies(6, 10000.0, llama3), {f0, (1 - smooth) * f1 / 8 + smooth * f1, f2 / 8});
}

TEST(RopeKernels, EachPairTurnsByPositionTimesFrequency) {
  const int64_t heads = 3, head_dim = 8, half = head_dim / 2, width = heads * head_dim;
  const std::vector<int64_t> positions = {0, 1, 7, 1000};
  const std::vector<float> inv_freq = rope_inverse_frequencies(head_dim, 10000.0, {});
  const std::vector<float> x = test::random_normal(static_cast<int64_t>(positions.size()) * width, 41, 1.f);
  std::vector<float> rotated = x;
  apply_rope(rotated.data(), heads, head_dim, positions, inv_freq.data());
  for (size_t r = 0; r < positions.size(); ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < half; ++i) {
        const float angle = static_cast<float>(positions[r]) * inv_freq[static_cast<size_t>(i)];  // float32, as HF
        const double c = std::cos(static_cast<double>(angle)), s = std::sin(static_cast<double>(angle));
        const size_t first = r * width + static_cast<size_t>(h * head_dim + i), second = first + half;
        const double expected_first = x[first] * c - x[second] * s;
        const double expected_second = x[second] * c + x[first] * s;
        EXPECT_NEAR(rotated[first], expected_first, 1e-6 * (1 + std::fabs(expected_first))) << r << " " << h << " " << i;
        EXPECT_NEAR(rotated[second], expected_second, 1e-6 * (1 + std::fabs(expected_second))) << r << " " << h << " " << i;
      }
    }
  }
  for (int64_t j = 0; j < width; ++j) EXPECT_EQ(rotated[j], x[j]);  // position 0 turns by nothing
}

}  // namespace
}  // namespace cq::kernels
