#include "model/transformer.h"
#include "model/position_limit.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "kernels/attention.h"
#include "kernels/column_absmax.h"
#include "kernels/hadamard.h"
#include "kernels/matmul.h"
#include "kernels/normalization.h"
#include "kernels/rope.h"
#include "kernels/vector_math.h"
#include "util/error.h"

namespace cq {

namespace {

// Below this many elements an OpenMP region costs more than it saves (tiny models).
constexpr int64_t kParallelElements = int64_t{1} << 15;

// Y[m x n] = X[m x k] · Wᵀ for a weight W[n x k] still in the checkpoint's mapping. F32
// is used in place; F16/BF16 are converted in blocks of rows, so no FP32 copy of the
// whole tensor (think of a 32000 x 4096 lm_head) ever exists.
void matmul_stored_weight(const float* x, int64_t m, const TensorInfo& weight, float* y) {
  const int64_t n = weight.shape[0];
  const int64_t k = weight.shape[1];
  if (weight.dtype == DType::F32 && reinterpret_cast<uintptr_t>(weight.data) % alignof(float) == 0) {
    kernels::matmul_abt(x, k, reinterpret_cast<const float*>(weight.data), k, y, n, m, n, k);
    return;
  }
  constexpr int64_t kBlockElements = int64_t{4} << 20;  // 16 MB of FP32 per block
  const int64_t block_rows = std::max<int64_t>(1, kBlockElements / std::max<int64_t>(k, 1));
  std::vector<float> block(static_cast<size_t>(std::min(n, block_rows) * k));
  for (int64_t first = 0; first < n; first += block_rows) {
    const int64_t rows = std::min(block_rows, n - first);
    const int64_t chunk = rows * k;
#pragma omp parallel for schedule(static) if (chunk > kParallelElements)
    for (int64_t part = 0; part < 16; ++part) {
      const int64_t begin = chunk * part / 16, end = chunk * (part + 1) / 16;
      convert_to_f32(weight, first * k + begin, end - begin, block.data() + begin);
    }
    kernels::matmul_abt(x, k, block.data(), k, y + first, n, m, rows, k);
  }
}

}  // namespace

KVCache Transformer::make_cache(int64_t batch, int64_t capacity) const {
  KVCache cache;
  cache.batch = batch;
  cache.capacity = capacity;
  cache.kv_width = config_.num_kv_heads * config_.head_dim;
  const auto size = static_cast<size_t>(batch * capacity * cache.kv_width);
  cache.keys.assign(static_cast<size_t>(config_.num_layers), std::vector<float>(size));
  cache.values.assign(static_cast<size_t>(config_.num_layers), std::vector<float>(size));
  return cache;
}

void Transformer::apply_norm(const Norm& norm, const float* x, float* y, int64_t rows, int64_t width,
                             const RowWindows* windows, std::vector<float>* column_absmax) const {
  const bool layer_norm = config_.norm == NormKind::LayerNorm;
  const double eps = config_.norm_eps;
  const int64_t whole[] = {0, rows};
  std::span<const int64_t> bounds = whole;
  if (column_absmax != nullptr) {
    bounds = windows->bounds();
    column_absmax->resize(static_cast<size_t>(windows->count() * width));
  }
  kernels::produce_row_groups(rows, width, rows * width > kParallelElements, bounds,
                              column_absmax != nullptr ? column_absmax->data() : nullptr,
                              [&](int64_t begin, int64_t end, float* gather) {
                                if (layer_norm)
                                  kernels::layer_norm_rows(x + begin * width, y + begin * width, end - begin, width,
                                                           norm.weight.data(), norm.bias.data(), eps, gather);
                                else
                                  kernels::rms_norm_rows(x + begin * width, y + begin * width, end - begin, width,
                                                         norm.weight.data(), eps, gather);
                              });
}

void Transformer::embed(std::span<const int32_t> tokens, std::span<const int64_t> positions, float* x) {
  const ModelConfig& c = config_;
  const auto rows = static_cast<int64_t>(tokens.size());
  const int64_t embed_dim = c.word_embed_proj_dim;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t token = tokens[static_cast<size_t>(r)];
    if (token < 0 || token >= c.vocab_size) fail("token id {} is outside the vocabulary (size {})", token, c.vocab_size);
  }
  std::vector<float> word(static_cast<size_t>(rows * embed_dim));
#pragma omp parallel for schedule(static) if (rows * embed_dim > kParallelElements)
  for (int64_t r = 0; r < rows; ++r)
    convert_to_f32(*embed_tokens_, tokens[static_cast<size_t>(r)] * embed_dim, embed_dim, word.data() + r * embed_dim);
  if (c.scale_embeddings) {
    for (float& value : word) value *= embedding_scale_;
  }
  if (c.has_projections()) {
    matmul_stored_weight(word.data(), rows, *project_in_, x);
  } else {
    std::memcpy(x, word.data(), word.size() * sizeof(float));
  }
  // Every forward passes here: learned positions past the limit are refused, rotary ones warned about once.
  check_position_limit(c, directory_.string(), rows > 0 ? *std::max_element(positions.begin(), positions.end()) + 1 : 0, "");
  if (c.positions == PositionKind::Learned) {
#pragma omp parallel if (rows * c.hidden_size > kParallelElements)
    {
      std::vector<float> position(static_cast<size_t>(c.hidden_size));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        convert_to_f32(*embed_positions_, (positions[static_cast<size_t>(r)] + c.position_offset) * c.hidden_size,
                       c.hidden_size, position.data());
        float* row = x + r * c.hidden_size;
        for (int64_t j = 0; j < c.hidden_size; ++j) row[j] += position[static_cast<size_t>(j)];
      }
    }
  }
}

bool Transformer::gathers_column_absmax(int64_t layer, InputSite site) const {
  const auto& quantizer = activation_quantizers_[static_cast<size_t>(layer * kInputSites + static_cast<int>(site))];
  if (!quantizer || !quantizer->wants_column_absmax()) return false;
  if (site == InputSite::MlpDown && mlp_down_transform_) return false;  // the transform changes the columns
  const Block& block = blocks_.at(static_cast<size_t>(layer));
  std::array<int64_t, 3> readers{-1, -1, -1};  // -1: none
  switch (site) {
    case InputSite::AttentionIn: readers = {block.q, block.k, block.v}; break;
    case InputSite::AttentionOut: readers[0] = block.o; break;
    case InputSite::MlpIn: readers = {block.gate_or_fc1, block.up, -1}; break;
    case InputSite::MlpDown: readers[0] = block.down_or_fc2; break;
  }
  // prepare_input quantizes a site's input, or hands the maxima to the backends reading it.
  return std::any_of(readers.begin(), readers.end(), [](int64_t r) { return r >= 0; });
}

const float* Transformer::prepare_input(int64_t layer, InputSite site, const float* x, int64_t cols,
                                        const RowWindows& windows, std::span<const int64_t> readers,
                                        const std::vector<float>* column_absmax) {
  const int64_t rows = windows.rows();
  if (observer_) observer_(layer, site, x, rows, cols, windows);
  const auto& quantizer = activation_quantizers_[static_cast<size_t>(layer * kInputSites + static_cast<int>(site))];
  std::vector<float> sequence_absmax;
  if (quantizer && quantizer->wants_column_absmax() && sequence_cache_ != nullptr)
    column_absmax = sequence_column_absmax(layer, site, x, cols, windows, column_absmax, sequence_absmax);
  const bool all_backends = std::all_of(readers.begin(), readers.end(), [&](int64_t r) { return backends_[static_cast<size_t>(r)] != nullptr; });
  for (int64_t reader : readers)
    if (const auto& backend = backends_[static_cast<size_t>(reader)])
      backend->set_column_absmax(column_absmax != nullptr ? std::span<const float>(*column_absmax) : std::span<const float>());
  if (all_backends)
    for (int64_t reader : readers) backends_[static_cast<size_t>(reader)]->new_input();
  if (!quantizer || all_backends) return x;
  quantized_input_.assign(x, x + rows * cols);
  KernelStats site_stats;
  // Per window: CrossQuant's column maxima are taken over one sequence's tokens (SPEC.md).
  for (int64_t w = 0; w < windows.count(); ++w) {
    const MatrixView window{quantized_input_.data() + windows.begin(w) * cols, windows.size(w), cols, cols};
    if (column_absmax != nullptr)
      quantizer->fake_quantize_with_column_absmax(
          window, std::span<const float>(column_absmax->data() + w * cols, static_cast<size_t>(cols)), &site_stats);
    else
      quantizer->fake_quantize(window, &site_stats);
  }
  for (int64_t reader : readers) stats_[static_cast<size_t>(reader)].merge(site_stats);
  return quantized_input_.data();
}

void Transformer::apply_linear(int64_t index, const float* x, int64_t rows, float* y) {
  if (const auto& backend = backends_[static_cast<size_t>(index)]) backend->new_input();
  run_linear(index, x, RowWindows(rows, rows), y);
}

void Transformer::run_linear(int64_t index, const float* x, const RowWindows& windows, float* y) {
  if (const auto& backend = backends_[static_cast<size_t>(index)]) {
    backend->run(x, windows, y, stats_[static_cast<size_t>(index)]);
    return;
  }
  const int64_t rows = windows.rows();
  const LinearLayer& linear = linears_[static_cast<size_t>(index)];
  if (linear.owned_weight.empty()) {
    matmul_stored_weight(x, rows, *linear.stored_weight, y);
  } else {
    kernels::matmul_abt(x, linear.in_features, linear.owned_weight.data(), linear.in_features, y, linear.out_features,
                        rows, linear.out_features, linear.in_features);
  }
  if (!linear.bias.empty()) {
    const float* bias = linear.bias.data();
    const int64_t out = linear.out_features;
#pragma omp parallel for schedule(static) if (rows * out > kParallelElements)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < out; ++j) y[r * out + j] += bias[j];
  }
}

void Transformer::cache_attention(int64_t layer, const float* q, const float* k, const float* v, int64_t batch,
                                  int64_t length, KVCache& cache, float* out, float* column_absmax) const {
  const int64_t kv_width = cache.kv_width;
  float* keys = cache.keys[static_cast<size_t>(layer)].data();
  float* values = cache.values[static_cast<size_t>(layer)].data();
  for (int64_t b = 0; b < batch; ++b) {
    float* key_rows = keys + (b * cache.capacity + cache.length) * kv_width;
    float* value_rows = values + (b * cache.capacity + cache.length) * kv_width;
    std::memcpy(key_rows, k + b * length * kv_width, static_cast<size_t>(length * kv_width) * sizeof(float));
    std::memcpy(value_rows, v + b * length * kv_width, static_cast<size_t>(length * kv_width) * sizeof(float));
  }
  kernels::cache_attention(q, keys, values, cache.capacity, batch, length, cache.length, attention_heads(), out,
                           column_absmax);
}

namespace {

// Positions of `batch` sequences of `length` tokens continuing after `past` cached ones.
std::vector<int64_t> sequence_positions(int64_t batch, int64_t length, int64_t past) {
  std::vector<int64_t> positions(static_cast<size_t>(batch * length));
  for (int64_t r = 0; r < batch * length; ++r) positions[static_cast<size_t>(r)] = past + r % length;
  return positions;
}

}  // namespace

Transformer::Pass Transformer::cache_pass(int64_t batch, int64_t length, KVCache& cache) {
  Pass pass;
  pass.positions = sequence_positions(batch, length, cache.length);
  pass.windows = RowWindows(batch * length, length);
  pass.batch = batch;
  pass.length = length;
  pass.cache = &cache;
  return pass;
}

kernels::AttentionHeads Transformer::attention_heads() const {
  kernels::AttentionHeads heads;
  heads.num_heads = config_.num_heads;
  heads.num_kv_heads = config_.num_kv_heads;
  heads.head_dim = config_.head_dim;
  // Queries scaled after their projection (OPT) need no scaling of the scores.
  heads.score_scale = config_.query_scaling == QueryScaling::AfterProjection
                          ? 1.f
                          : 1.f / std::sqrt(static_cast<float>(config_.head_dim));
  heads.window = config_.sliding_window;
  return heads;
}

void Transformer::embed_tokens(std::span<const int32_t> tokens, int64_t batch, int64_t length, float* x) {
  if (static_cast<int64_t>(tokens.size()) != batch * length) fail("embed_tokens: {} tokens for {} x {}", tokens.size(), batch, length);
  embed(tokens, sequence_positions(batch, length, 0), x);
}

void Transformer::run_block(int64_t layer, float* x, int64_t batch, int64_t length) {
  KVCache cache = make_cache(batch, length);
  block_step(layer, x, cache_pass(batch, length, cache));
}

void Transformer::run_attention(int64_t layer, const float* input, int64_t batch, int64_t length, float* out) {
  KVCache cache = make_cache(batch, length);
  attention_sublayer(layer, input, cache_pass(batch, length, cache), out);
}

void Transformer::run_mlp(int64_t layer, const float* input, int64_t rows, int64_t length, float* out) {
  mlp_sublayer(layer, input, RowWindows(rows, length), out);
}

void Transformer::attention_sublayer(int64_t l, const float* input, const Pass& pass, float* out,
                                     const std::vector<float>* input_column_absmax) {
  const ModelConfig& c = config_;
  const Block& block = blocks_.at(static_cast<size_t>(l));
  const int64_t rows = pass.rows();
  const int64_t q_width = c.num_heads * c.head_dim;
  const int64_t kv_width = c.num_kv_heads * c.head_dim;
  std::vector<float> q(static_cast<size_t>(rows * q_width)), k(static_cast<size_t>(rows * kv_width)), v(k.size()),
      attn(q.size());
  if (c.fused_qkv) {
    // One qkv_proj: its output rows hold q, k and v side by side.
    const int64_t qkv[] = {block.q};
    const int64_t fused_width = q_width + 2 * kv_width;
    std::vector<float> fused(static_cast<size_t>(rows * fused_width));
    run_linear(block.q, prepare_input(l, InputSite::AttentionIn, input, c.hidden_size, pass.windows, qkv, input_column_absmax),
               pass.windows, fused.data());
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = fused.data() + r * fused_width;
      std::memcpy(q.data() + r * q_width, row, static_cast<size_t>(q_width) * sizeof(float));
      std::memcpy(k.data() + r * kv_width, row + q_width, static_cast<size_t>(kv_width) * sizeof(float));
      std::memcpy(v.data() + r * kv_width, row + q_width + kv_width, static_cast<size_t>(kv_width) * sizeof(float));
    }
  } else {
    const int64_t qkv[] = {block.q, block.k, block.v};
    const float* quantized =
        prepare_input(l, InputSite::AttentionIn, input, c.hidden_size, pass.windows, qkv, input_column_absmax);
    run_linear(block.q, quantized, pass.windows, q.data());
    run_linear(block.k, quantized, pass.windows, k.data());
    run_linear(block.v, quantized, pass.windows, v.data());
  }
  if (attention_input_quantizer_) {
    for (auto [data, width] : {std::pair{q.data(), q_width}, std::pair{k.data(), kv_width}, std::pair{v.data(), kv_width}})
      for (int64_t w = 0; w < pass.windows.count(); ++w)
        attention_input_quantizer_->fake_quantize(
            MatrixView{data + pass.windows.begin(w) * width, pass.windows.size(w), width, width}, nullptr);
  }
  if (c.query_scaling == QueryScaling::AfterProjection) {
    const float scaling = 1.f / std::sqrt(static_cast<float>(c.head_dim));
    for (float& value : q) value *= scaling;
  }
  if (c.positions == PositionKind::Rotary) {
    kernels::apply_rope(q.data(), c.num_heads, c.head_dim, pass.positions, rope_inv_freq_.data());
    kernels::apply_rope(k.data(), c.num_kv_heads, c.head_dim, pass.positions, rope_inv_freq_.data());
  }
  if (attention_product_quantizer_) quantize_attention_products(q.data(), k.data(), v.data(), rows);
  // Causal attention over a cache writes each sequence's (window's) heads as separate tasks,
  // which gather the column maxima of o_proj's input for dynamic CrossQuant on the way; the
  // packed form (segments of one tree on different tasks) leaves it to the quantizer.
  std::vector<float> attn_column_absmax;
  if (!pass.segments && gathers_column_absmax(l, InputSite::AttentionOut))
    attn_column_absmax.assign(static_cast<size_t>(pass.windows.count() * q_width), 0.f);
  if (pass.segments) kernels::tree_attention(q.data(), k.data(), v.data(), *pass.segments, attention_heads(), attn.data());
  else
    cache_attention(l, q.data(), k.data(), v.data(), pass.batch, pass.length, *pass.cache, attn.data(),
                    attn_column_absmax.empty() ? nullptr : attn_column_absmax.data());
  const int64_t o_reader[] = {block.o};
  run_linear(block.o,
             prepare_input(l, InputSite::AttentionOut, attn.data(), q_width, pass.windows, o_reader,
                           attn_column_absmax.empty() ? nullptr : &attn_column_absmax),
             pass.windows, out);
}

void Transformer::mlp_sublayer(int64_t l, const float* input, const RowWindows& windows, float* out,
                               const std::vector<float>* input_column_absmax) {
  const ModelConfig& c = config_;
  const Block& block = blocks_.at(static_cast<size_t>(l));
  const int64_t rows = windows.rows();
  const int64_t inter = c.intermediate_size;
  std::vector<float> mlp_a(static_cast<size_t>(rows * inter)), mlp_b;
  // The activation function writes the input of down / fc2, gathering its c_j when needed.
  std::vector<float> down_column_absmax;
  float* gathered = nullptr;
  if (gathers_column_absmax(l, InputSite::MlpDown)) {
    down_column_absmax.resize(static_cast<size_t>(windows.count() * inter));
    gathered = down_column_absmax.data();
  }
  const bool parallel = rows * inter > kParallelElements;
  if (c.gated_mlp()) {
    mlp_b.resize(mlp_a.size());
    if (c.fused_gate_up) {
      // One gate_up_proj: each output row is gate, then up.
      const int64_t readers[] = {block.gate_or_fc1};
      std::vector<float> fused(static_cast<size_t>(rows * 2 * inter));
      run_linear(block.gate_or_fc1, prepare_input(l, InputSite::MlpIn, input, c.hidden_size, windows, readers, input_column_absmax),
                 windows, fused.data());
      for (int64_t r = 0; r < rows; ++r) {
        std::memcpy(mlp_a.data() + r * inter, fused.data() + r * 2 * inter, static_cast<size_t>(inter) * sizeof(float));
        std::memcpy(mlp_b.data() + r * inter, fused.data() + r * 2 * inter + inter, static_cast<size_t>(inter) * sizeof(float));
      }
    } else {
      const int64_t readers[] = {block.gate_or_fc1, block.up};
      const float* in = prepare_input(l, InputSite::MlpIn, input, c.hidden_size, windows, readers, input_column_absmax);
      run_linear(block.gate_or_fc1, in, windows, mlp_a.data());
      run_linear(block.up, in, windows, mlp_b.data());
    }
    const bool gelu = c.mlp == MlpKind::GeGLU;
    kernels::produce_rows(mlp_a.data(), rows, inter, parallel, windows.bounds(), gathered, [&](int64_t i) {
      float* gate = mlp_a.data() + i * inter;
      if (gelu) kernels::gelu_tanh_multiply(gate, mlp_b.data() + i * inter, gate, inter);
      else kernels::silu_multiply(gate, mlp_b.data() + i * inter, gate, inter);
    });
  } else {
    const int64_t readers[] = {block.gate_or_fc1};
    run_linear(block.gate_or_fc1,
               prepare_input(l, InputSite::MlpIn, input, c.hidden_size, windows, readers, input_column_absmax), windows,
               mlp_a.data());
    kernels::produce_rows(mlp_a.data(), rows, inter, parallel, windows.bounds(), gathered, [&](int64_t i) {
      float* row = mlp_a.data() + i * inter;
      for (int64_t j = 0; j < inter; ++j) row[j] = std::max(row[j], 0.f);
    });
  }
  if (mlp_down_transform_) mlp_down_transform_->apply(mlp_a.data(), rows);
  const int64_t down_reader[] = {block.down_or_fc2};
  run_linear(block.down_or_fc2,
             prepare_input(l, InputSite::MlpDown, mlp_a.data(), inter, windows, down_reader,
                           gathered != nullptr ? &down_column_absmax : nullptr),
             windows, out);
}

void Transformer::block_step(int64_t l, float* x, const Pass& pass) {
  const ModelConfig& c = config_;
  const Block& block = blocks_.at(static_cast<size_t>(l));
  const int64_t rows = pass.rows();
  const int64_t hidden = c.hidden_size;
  std::vector<float> normed(static_cast<size_t>(rows * hidden)), block_out(normed.size());
  auto add_residual = [&](const float* delta) {
#pragma omp parallel for schedule(static) if (rows * hidden > kParallelElements)
    for (int64_t i = 0; i < rows * hidden; ++i) x[i] += delta[i];
  };
  // A pre-norm's output is the next site's input: the norm gathers its c_j when needed.
  std::vector<float> column_absmax;
  auto norm_into = [&](const Norm& norm, InputSite site) -> const std::vector<float>* {
    const bool gather = gathers_column_absmax(l, site);
    apply_norm(norm, x, normed.data(), rows, hidden, &pass.windows, gather ? &column_absmax : nullptr);
    return gather ? &column_absmax : nullptr;
  };
  // Attention
  const float* attn_input = x;
  const std::vector<float>* attn_column_absmax = nullptr;
  if (c.pre_norm) {
    attn_column_absmax = norm_into(block.attn_norm, InputSite::AttentionIn);
    attn_input = normed.data();
  }
  attention_sublayer(l, attn_input, pass, block_out.data(), attn_column_absmax);
  add_residual(block_out.data());
  if (!c.pre_norm) apply_norm(block.attn_norm, x, x, rows, hidden);
  // MLP
  const float* mlp_input = x;
  const std::vector<float>* mlp_column_absmax = nullptr;
  if (c.pre_norm) {
    mlp_column_absmax = norm_into(block.mlp_norm, InputSite::MlpIn);
    mlp_input = normed.data();
  }
  mlp_sublayer(l, mlp_input, pass.windows, block_out.data(), mlp_column_absmax);
  add_residual(block_out.data());
  if (!c.pre_norm) apply_norm(block.mlp_norm, x, x, rows, hidden);
}

void Transformer::forward(std::span<const int32_t> tokens, int64_t batch, int64_t length, std::span<float> logits,
                          KVCache* cache, bool last_position_only) {
  const ModelConfig& c = config_;
  if (batch <= 0 || length <= 0) fail("forward: empty batch");
  if (static_cast<int64_t>(tokens.size()) != batch * length) fail("forward: {} tokens for {} x {}", tokens.size(), batch, length);
  const int64_t out_rows = last_position_only ? batch : batch * length;
  if (static_cast<int64_t>(logits.size()) < out_rows * c.vocab_size) fail("forward: logits buffer too small");
  KVCache local_cache;
  if (!cache) {
    local_cache = make_cache(batch, length);
    cache = &local_cache;
  }
  if (cache->batch != batch) fail("forward: cache holds {} sequences, batch has {}", cache->batch, batch);
  if (cache->length + length > cache->capacity) fail("forward: KV cache capacity {} exceeded", cache->capacity);
  // Rotary positions beyond max_position_embeddings are computed as HF does (no limit).
  const Pass pass = cache_pass(batch, length, *cache);
  std::vector<float> x(static_cast<size_t>(batch * length * c.hidden_size));
  embed(tokens, pass.positions, x.data());
  // A caller's cache may be continued: it keeps dynamic CrossQuant's c_j of the sequences.
  struct SequenceCacheScope {
    KVCache*& slot;
    ~SequenceCacheScope() { slot = nullptr; }
  } scope{sequence_cache_};
  sequence_cache_ = cache == &local_cache ? nullptr : cache;
  for (int64_t l = 0; l < c.num_layers; ++l) block_step(l, x.data(), pass);
  cache->length += length;

  std::vector<int64_t> last_rows;
  if (last_position_only)
    for (int64_t b = 0; b < batch; ++b) last_rows.push_back((b + 1) * length - 1);
  compute_logits(x.data(), batch * length, last_rows, logits.data());
}

void Transformer::forward_packed(std::span<const int32_t> tokens, std::span<const PackedSegment> segments,
                                 std::span<const int64_t> logit_rows, std::span<float> logits) {
  const ModelConfig& c = config_;
  const auto rows = static_cast<int64_t>(tokens.size());
  if (rows == 0 || segments.empty()) fail("forward_packed: no tokens");
  if (static_cast<int64_t>(logits.size()) < static_cast<int64_t>(logit_rows.size()) * c.vocab_size)
    fail("forward_packed: logits buffer too small");
  std::vector<kernels::AttentionSegment> plan(segments.size());
  Pass pass;
  pass.positions.resize(static_cast<size_t>(rows));
  std::vector<int64_t> window_bounds = {0};
  int64_t start = 0, tree_root = -1;
  for (size_t s = 0; s < segments.size(); ++s) {
    const PackedSegment& segment = segments[s];
    kernels::AttentionSegment& rows_of = plan[s];
    if (segment.length <= 0) fail("forward_packed: segment {} is empty", s);
    if (segment.parent >= 0) {
      if (segment.parent < tree_root || segment.parent >= static_cast<int64_t>(s))
        fail("forward_packed: segment {} continues segment {}, which is not an earlier segment of its tree", s, segment.parent);
      const kernels::AttentionSegment& parent = plan[static_cast<size_t>(segment.parent)];
      rows_of.ancestors = parent.ancestors;
      rows_of.ancestors.emplace_back(parent.start, parent.length);
      rows_of.past = parent.past + parent.length;
      rows_of.contiguous = parent.contiguous && parent.start + parent.length == start;
    } else {
      tree_root = static_cast<int64_t>(s);
      if (start > 0) window_bounds.push_back(start);
    }
    rows_of.start = start;
    rows_of.length = segment.length;
    for (int64_t t = 0; t < segment.length; ++t) pass.positions[static_cast<size_t>(start + t)] = rows_of.past + t;
    start += segment.length;
  }
  if (start != rows) fail("forward_packed: segments hold {} tokens, {} given", start, rows);
  for (int64_t row : logit_rows)
    if (row < 0 || row >= rows) fail("forward_packed: logit row {} outside the {} packed rows", row, rows);
  window_bounds.push_back(rows);
  pass.windows = RowWindows(std::move(window_bounds));
  pass.segments = &plan;

  std::vector<float> x(static_cast<size_t>(rows * c.hidden_size));
  embed(tokens, pass.positions, x.data());
  for (int64_t l = 0; l < c.num_layers; ++l) block_step(l, x.data(), pass);
  if (!logit_rows.empty()) compute_logits(x.data(), rows, logit_rows, logits.data());
}

void Transformer::compute_logits(const float* x, int64_t rows, std::span<const int64_t> selected, float* logits) {
  // Final norm, optional project_out, lm_head (full precision unless a backend was set).
  const ModelConfig& c = config_;
  const int64_t hidden = c.hidden_size;
  const int64_t out_rows = selected.empty() ? rows : static_cast<int64_t>(selected.size());
  std::vector<float> gathered;
  const float* source = x;
  if (!selected.empty()) {
    gathered.resize(static_cast<size_t>(out_rows * hidden));
    for (int64_t i = 0; i < out_rows; ++i)
      std::memcpy(gathered.data() + i * hidden, x + selected[static_cast<size_t>(i)] * hidden,
                  static_cast<size_t>(hidden) * sizeof(float));
    source = gathered.data();
  }
  std::vector<float> normed(static_cast<size_t>(out_rows * hidden));
  if (c.final_norm) apply_norm(final_norm_, source, normed.data(), out_rows, hidden);
  else std::memcpy(normed.data(), source, normed.size() * sizeof(float));
  const auto lm_head = [&](const float* input) {
    if (!lm_head_backend_) return matmul_stored_weight(input, out_rows, *lm_head_, logits);
    KernelStats unused;  // lm_head is not a quantization site of the statistics
    lm_head_backend_->new_input();
    lm_head_backend_->run(input, RowWindows(out_rows, 1), logits, unused);
  };
  if (!c.has_projections()) {
    lm_head(normed.data());
  } else {
    std::vector<float> head_input(static_cast<size_t>(out_rows * c.word_embed_proj_dim));
    matmul_stored_weight(normed.data(), out_rows, *project_out_, head_input.data());
    lm_head(head_input.data());
  }
  for (int64_t r = 0; r < out_rows && !lm_head_bias_.empty(); ++r)  // a rotated OPT's folded final-norm bias
    for (int64_t v = 0; v < c.vocab_size; ++v) logits[r * c.vocab_size + v] += lm_head_bias_[static_cast<size_t>(v)];
}

}  // namespace cq
