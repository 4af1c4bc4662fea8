#include "kernels/attention.h"

#include <algorithm>
#include <cstring>

#include "kernels/column_absmax.h"
#include "kernels/matmul.h"
#include "kernels/vector_math.h"

namespace cq::kernels {

namespace {

// Below this much work (multiply-adds) an OpenMP region costs more than it saves (tiny models).
constexpr int64_t kParallelWork = int64_t{1} << 16;

}  // namespace

void causal_attention_head(const float* q, int64_t q_stride, const float* k, const float* v, int64_t kv_stride,
                           int64_t past, int64_t length, int64_t head_dim, float score_scale, float* out,
                           int64_t out_stride, float* scores, int64_t window) {
  constexpr int64_t kQueryBlock = 64;
  // The first key that query t (position past + t) sees.
  auto first_visible = [&](int64_t t) { return window > 0 ? std::max<int64_t>(0, past + t - window + 1) : 0; };
  for (int64_t first = 0; first < length; first += kQueryBlock) {
    const int64_t rows = std::min(kQueryBlock, length - first);
    const int64_t begin = first_visible(first);   // what the block's first query sees first
    const int64_t keys = past + first + rows - begin;  // .. up to what its last query sees
    matmul_abt(q + first * q_stride, q_stride, k + begin * kv_stride, kv_stride, scores, keys, rows, keys, head_dim,
               score_scale);
    for (int64_t t = 0; t < rows; ++t) {
      float* row = scores + t * keys;
      const int64_t low = first_visible(first + t) - begin;
      const int64_t visible = past + first + t + 1 - begin;
      std::fill(row, row + low, 0.f);
      softmax_inplace(row + low, visible - low);
      std::fill(row + visible, row + keys, 0.f);
    }
    matmul_ab(scores, keys, v + begin * kv_stride, kv_stride, out + first * out_stride, out_stride, rows, head_dim, keys);
  }
}

void cache_attention(const float* q, const float* keys, const float* values, int64_t capacity, int64_t batch,
                     int64_t length, int64_t past, const AttentionHeads& heads, float* out, float* column_absmax) {
  const int64_t head_dim = heads.head_dim;
  const int64_t q_width = heads.q_width();
  const int64_t kv_width = heads.kv_width();
  const int64_t total = past + length;
  const int64_t group = heads.num_heads / heads.num_kv_heads;
  const int64_t attention_work = batch * heads.num_heads * length * total * head_dim;
#pragma omp parallel if (attention_work > kParallelWork)
  {
    std::vector<float> scores(static_cast<size_t>(length * total));
#pragma omp for schedule(dynamic) collapse(2)
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t h = 0; h < heads.num_heads; ++h) {
        const int64_t kv_offset = b * capacity * kv_width + h / group * head_dim;
        float* head_out = out + b * length * q_width + h * head_dim;
        causal_attention_head(q + b * length * q_width + h * head_dim, q_width, keys + kv_offset, values + kv_offset,
                              kv_width, past, length, head_dim, heads.score_scale, head_out, q_width, scores.data(),
                              heads.window);
        // This task alone writes these columns of sequence b: their maxima need no merge.
        if (column_absmax != nullptr)
          update_column_absmax(head_out, length, head_dim, q_width, column_absmax + b * q_width + h * head_dim);
      }
    }
  }
}

void tree_attention(const float* q, const float* k, const float* v, std::span<const AttentionSegment> segments,
                    const AttentionHeads& heads, float* out) {
  const int64_t head_dim = heads.head_dim;
  const int64_t q_width = heads.q_width();
  const int64_t kv_width = heads.kv_width();
  const int64_t group = heads.num_heads / heads.num_kv_heads;
  const auto count = static_cast<int64_t>(segments.size());
  int64_t attention_work = 0;
  for (const auto& segment : segments)
    attention_work += heads.num_heads * segment.length * (segment.past + segment.length) * head_dim;
#pragma omp parallel if (attention_work > kParallelWork)
  {
    std::vector<float> scores, keys, values;  // keys/values: a segment's visible rows, gathered when not contiguous
#pragma omp for schedule(dynamic) collapse(2)
    for (int64_t s = 0; s < count; ++s) {
      for (int64_t h = 0; h < heads.num_heads; ++h) {
        const AttentionSegment& segment = segments[static_cast<size_t>(s)];
        const int64_t total = segment.past + segment.length;
        const int64_t kv_column = h / group * head_dim;
        scores.resize(static_cast<size_t>(segment.length * total));
        const float *k_rows = nullptr, *v_rows = nullptr;
        int64_t stride = kv_width;
        if (segment.contiguous) {
          const int64_t first = segment.start - segment.past;
          k_rows = k + first * kv_width + kv_column;
          v_rows = v + first * kv_width + kv_column;
        } else {
          keys.resize(static_cast<size_t>(total * head_dim));
          values.resize(keys.size());
          int64_t row = 0;
          auto gather = [&](int64_t start, int64_t length) {
            for (int64_t r = start; r < start + length; ++r, ++row) {
              std::memcpy(&keys[static_cast<size_t>(row * head_dim)], k + r * kv_width + kv_column,
                          static_cast<size_t>(head_dim) * sizeof(float));
              std::memcpy(&values[static_cast<size_t>(row * head_dim)], v + r * kv_width + kv_column,
                          static_cast<size_t>(head_dim) * sizeof(float));
            }
          };
          for (const auto& [start, length] : segment.ancestors) gather(start, length);
          gather(segment.start, segment.length);
          k_rows = keys.data();
          v_rows = values.data();
          stride = head_dim;
        }
        causal_attention_head(q + segment.start * q_width + h * head_dim, q_width, k_rows, v_rows, stride,
                              segment.past, segment.length, head_dim, heads.score_scale,
                              out + segment.start * q_width + h * head_dim, q_width, scores.data(), heads.window);
      }
    }
  }
}

}  // namespace cq::kernels
