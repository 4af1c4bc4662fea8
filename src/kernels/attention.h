#pragma once
// Scaled dot-product attention over plain row-major buffers, causal: softmax(q·kᵀ · scale)·v
// per head, each query seeing the keys before it and its own. Two forms: sequences over a
// KV cache (prefill and decoding), and packed segments that continue their parents (tree
// attention: requests sharing a prefix). Heads are head_dim columns side by side in a row;
// query head h reads key/value head h / (num_heads / num_kv_heads) (grouped-query
// attention). Products go through kernels/matmul.h; softmax is kernels::softmax_inplace.
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace cq::kernels {

struct AttentionHeads {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // divides num_heads
  int64_t head_dim = 0;
  float score_scale = 1.f;  // scores = q·k · score_scale (1: the queries are scaled already)
  // Sliding-window attention (Mistral, Phi-3): > 0, a query at position p sees the keys at
  // positions p − window + 1 .. p only (transformers' mask: kv_idx > q_idx − window); 0: all.
  int64_t window = 0;
  int64_t q_width() const { return num_heads * head_dim; }
  int64_t kv_width() const { return num_kv_heads * head_dim; }
};

// One head: `length` queries q (row stride q_stride) against `past + length` keys and values
// (row stride kv_stride); query t sees keys 0 .. past + t. out: length rows (row stride
// out_stride). scores: scratch of length · (past + length) floats. Queries go in blocks of
// 64 that multiply only the keys their block's last query sees: causal prefill does ~56 %
// of the full square's work, and the masked scores that remain in a block are exact zeros.
// window > 0: key index = position, and query t sees only keys past + t − window + 1 .. past + t
// (a block starts at the first key its first query sees).
void causal_attention_head(const float* q, int64_t q_stride, const float* k, const float* v, int64_t kv_stride,
                           int64_t past, int64_t length, int64_t head_dim, float score_scale, float* out,
                           int64_t out_stride, float* scores, int64_t window = 0);

// `batch` sequences of `length` new queries over a KV cache. q, out: [batch][length][q_width].
// keys, values: [batch][capacity][kv_width], positions 0 .. past + length − 1 of each
// sequence filled (the new tokens' keys and values at past .. past + length − 1).
// column_absmax (null, or batch × q_width floats, zeroed): raised to max_t |out| per
// sequence and column, gathered by the task that writes those columns (dynamic CrossQuant's
// c_j for the next linear, kernels/column_absmax.h).
void cache_attention(const float* q, const float* keys, const float* values, int64_t capacity, int64_t batch,
                     int64_t length, int64_t past, const AttentionHeads& heads, float* out,
                     float* column_absmax = nullptr);

// A packed segment's rows and what it attends to: its ancestors' row ranges (root first),
// then its own rows [start, start + length), causally.
struct AttentionSegment {
  int64_t start = 0, length = 0;
  std::vector<std::pair<int64_t, int64_t>> ancestors;  // (start, length)
  int64_t past = 0;                                    // tokens of the ancestors
  bool contiguous = true;                              // ancestors and own rows form one range
};

// Packed rows: q, out [rows][q_width], k, v [rows][kv_width], the segments' rows end to end.
// Segment s's queries see the keys of its ancestors' rows, then its own rows causally.
void tree_attention(const float* q, const float* k, const float* v, std::span<const AttentionSegment> segments,
                    const AttentionHeads& heads, float* out);

}  // namespace cq::kernels
