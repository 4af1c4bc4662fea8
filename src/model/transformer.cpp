#include "model/transformer.h"
#include "model/position_limit.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <oneapi/dnnl/dnnl.h>

#include "kernels/column_absmax.h"
#include "kernels/gemm_f32.h"
#include "kernels/normalization.h"
#include "kernels/vector_math.h"
#include "quant/crossquant.h"
#include "quant/quantized_checkpoint.h"
#include "util/error.h"

namespace cq {

namespace {

// Below this many elements an OpenMP region costs more than it saves (tiny models).
constexpr int64_t kParallelElements = int64_t{1} << 15;

// C[m x n] = A[m x k] · B[n x k]ᵀ (+ beta·C), all row-major; oneDNN's sgemm is row-major.
// oneDNN splits even tiny GEMMs over threads, and waking the second thread costs more than
// the product (64x8x64: 64 µs on two threads, 4 µs on one). Small products run on one.
constexpr int64_t kSmallGemmMacs = int64_t{1} << 21;

class SingleThreadedIfSmall {
 public:
  explicit SingleThreadedIfSmall(int64_t macs) : saved_(macs < kSmallGemmMacs ? omp_get_max_threads() : 0) {
    if (saved_ > 1) omp_set_num_threads(1);
  }
  ~SingleThreadedIfSmall() {
    if (saved_ > 1) omp_set_num_threads(saved_);
  }
  SingleThreadedIfSmall(const SingleThreadedIfSmall&) = delete;
  SingleThreadedIfSmall& operator=(const SingleThreadedIfSmall&) = delete;

 private:
  int saved_;
};

void matmul_abt(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m, int64_t n,
                int64_t k, float alpha = 1.f, float beta = 0.f) {
  if (m == 0 || n == 0) return;
  const SingleThreadedIfSmall threads(m * n * k);
  if (alpha == 1.f && beta == 0.f) return kernels::gemm_f32(a, lda, b, ldb, nullptr, c, ldc, m, n, k);
  if (dnnl_sgemm('N', 'T', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) != dnnl_success)
    fail("internal error: dnnl_sgemm failed for {}x{}x{}", m, n, k);
}

// C[m x n] = A[m x k] · B[k x n].
void matmul_ab(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m, int64_t n,
               int64_t k) {
  if (m == 0 || n == 0) return;
  const SingleThreadedIfSmall threads(m * n * k);
  if (dnnl_sgemm('N', 'N', m, n, k, 1.f, a, lda, b, ldb, 0.f, c, ldc) != dnnl_success)
    fail("internal error: dnnl_sgemm failed for {}x{}x{}", m, n, k);
}

// Y[m x n] = X[m x k] · Wᵀ for a weight W[n x k] still in the checkpoint's mapping. F32
// is used in place; F16/BF16 are converted in blocks of rows, so no FP32 copy of the
// whole tensor (think of a 32000 x 4096 lm_head) ever exists.
void matmul_stored_weight(const float* x, int64_t m, const TensorInfo& weight, float* y) {
  const int64_t n = weight.shape[0];
  const int64_t k = weight.shape[1];
  if (weight.dtype == DType::F32 && reinterpret_cast<uintptr_t>(weight.data) % alignof(float) == 0) {
    matmul_abt(x, k, reinterpret_cast<const float*>(weight.data), k, y, n, m, n, k);
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
    matmul_abt(x, k, block.data(), k, y + first, n, m, rows, k);
  }
}

// One head's causal attention: queries q [length x d] (row stride q_stride) against keys and
// values [past + length x d] (row stride kv_stride); query t sees keys 0 .. past + t.
// scores: scratch of length * (past + length) floats. Queries go in blocks of 64 that
// multiply only the keys their last query sees: causal prefill does ~56 % of the full
// square's work, and the masked scores that remain in a block are exact zeros.
void attend_head(const float* q, int64_t q_stride, const float* k, const float* v, int64_t kv_stride, int64_t past,
                 int64_t length, int64_t head_dim, float scale, float* out, int64_t out_stride, float* scores) {
  constexpr int64_t kQueryBlock = 64;
  for (int64_t first = 0; first < length; first += kQueryBlock) {
    const int64_t rows = std::min(kQueryBlock, length - first);
    const int64_t keys = past + first + rows;  // what the block's last query sees
    matmul_abt(q + first * q_stride, q_stride, k, kv_stride, scores, keys, rows, keys, head_dim, scale);
    for (int64_t t = 0; t < rows; ++t) {
      float* row = scores + t * keys;
      const int64_t visible = past + first + t + 1;
      kernels::softmax_inplace(row, visible);
      std::fill(row + visible, row + keys, 0.f);
    }
    matmul_ab(scores, keys, v, kv_stride, out + first * out_stride, out_stride, rows, head_dim, keys);
  }
}

}  // namespace

RowWindows::RowWindows(int64_t rows, int64_t length) : bounds_{0} {
  if (length <= 0) length = std::max<int64_t>(rows, 1);
  for (int64_t start = 0; start < rows; start += length) bounds_.push_back(std::min(start + length, rows));
}

RowWindows::RowWindows(std::vector<int64_t> bounds) : bounds_(std::move(bounds)) {
  if (bounds_.empty() || bounds_.front() != 0) fail("internal error: row windows must start at row 0");
  for (size_t w = 1; w < bounds_.size(); ++w)
    if (bounds_[w] < bounds_[w - 1]) fail("internal error: row windows must be increasing");
}

int64_t RowWindows::max_size() const {
  int64_t largest = 0;
  for (int64_t w = 0; w < count(); ++w) largest = std::max(largest, size(w));
  return largest;
}

// A packed segment's rows and what it attends to: its ancestors' row ranges (root first),
// then its own rows [start, start + length).
struct Transformer::SegmentRows {
  int64_t start = 0, length = 0;
  std::vector<std::pair<int64_t, int64_t>> ancestors;  // (start, length)
  int64_t past = 0;                                    // tokens of the ancestors
  bool contiguous = true;                              // ancestors and own rows form one range
};

const char* input_site_name(InputSite site) {
  switch (site) {
    case InputSite::AttentionIn: return "attn_in";
    case InputSite::AttentionOut: return "attn_out";
    case InputSite::MlpIn: return "mlp_in";
    case InputSite::MlpDown: return "mlp_down";
  }
  return "?";
}

std::span<float> LinearLayer::mutable_weight() {
  if (owned_weight.empty()) owned_weight = to_f32(*stored_weight);
  return owned_weight;
}

Transformer::Transformer(const std::filesystem::path& model_dir)
    : directory_(model_dir), config_(load_model_config(model_dir)), names_(tensor_names(config_)) {
  checkpoint_ = std::make_unique<SafetensorsCheckpoint>(model_dir);
  stored_quantization_ = read_stored_quantization(model_dir);
  load_weights();
}

const TensorInfo& Transformer::value_tensor(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorInfo& tensor = checkpoint_->tensor(name, shape);
  if (is_integer(tensor.dtype))
    fail("{}: tensor '{}' holds {} integers; model values must be F32, F16 or BF16", tensor.file.string(), name,
         dtype_name(tensor.dtype));
  return tensor;
}

int64_t Transformer::add_linear(const std::string& module, int64_t layer, InputSite site, int64_t in, int64_t out,
                                bool bias) {
  LinearLayer linear;
  linear.name = module;
  linear.layer = layer;
  linear.site = site;
  linear.in_features = in;
  linear.out_features = out;
  if (stored_quantization_) {
    // Codes, scales and zero points from the mapping; the only FP32 copy is the result.
    linear.stored_weight = &checkpoint_->tensor(module + ".weight");
    linear.owned_weight = read_stored_weight_values(*checkpoint_, *stored_quantization_, module, out, in);
  } else {
    linear.stored_weight = &value_tensor(module + ".weight", {out, in});
  }
  if (bias) linear.bias = to_f32(value_tensor(module + ".bias", {out}));
  linears_.push_back(std::move(linear));
  return static_cast<int64_t>(linears_.size()) - 1;
}

Transformer::Norm Transformer::load_norm(const std::string& module, int64_t width) const {
  Norm norm;
  norm.weight = to_f32(value_tensor(module + ".weight", {width}));
  if (config_.norm == NormKind::LayerNorm) norm.bias = to_f32(value_tensor(module + ".bias", {width}));
  return norm;
}

void Transformer::load_weights() {
  const ModelConfig& c = config_;
  const int64_t embed_dim = c.word_embed_proj_dim;
  embed_tokens_ = &value_tensor(names_.embed_tokens, {c.vocab_size, embed_dim});
  if (c.positions == PositionKind::Learned)
    embed_positions_ = &value_tensor(names_.embed_positions, {c.max_position_embeddings + c.position_offset, c.hidden_size});
  if (c.has_projections()) {
    project_in_ = &value_tensor(names_.project_in, {c.hidden_size, embed_dim});
    project_out_ = &value_tensor(names_.project_out, {embed_dim, c.hidden_size});
  }
  // Tied embeddings use embed_tokens even when a copy of lm_head is stored (as HF does).
  if (c.tie_word_embeddings || !checkpoint_->contains(names_.lm_head)) {
    if (!c.tie_word_embeddings)
      fail("{}: missing tensor '{}' and tie_word_embeddings is false", checkpoint_->source().string(), names_.lm_head);
    lm_head_ = embed_tokens_;
  } else {
    lm_head_ = &value_tensor(names_.lm_head, {c.vocab_size, embed_dim});
  }
  const int64_t q_width = c.num_heads * c.head_dim;
  const int64_t kv_width = c.num_kv_heads * c.head_dim;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string prefix = names_.layer_prefix + std::to_string(l) + ".";
    Block block;
    block.attn_norm = load_norm(prefix + names_.attn_norm, c.hidden_size);
    block.mlp_norm = load_norm(prefix + names_.mlp_norm, c.hidden_size);
    block.q = add_linear(prefix + names_.q, l, InputSite::AttentionIn, c.hidden_size, q_width, c.attention_bias);
    block.k = add_linear(prefix + names_.k, l, InputSite::AttentionIn, c.hidden_size, kv_width, c.attention_bias);
    block.v = add_linear(prefix + names_.v, l, InputSite::AttentionIn, c.hidden_size, kv_width, c.attention_bias);
    block.o = add_linear(prefix + names_.o, l, InputSite::AttentionOut, q_width, c.hidden_size, c.attention_out_bias);
    block.gate_or_fc1 = add_linear(prefix + names_.gate_or_fc1, l, InputSite::MlpIn, c.hidden_size, c.intermediate_size, c.mlp_bias);
    if (c.mlp == MlpKind::SwiGLU)
      block.up = add_linear(prefix + names_.up, l, InputSite::MlpIn, c.hidden_size, c.intermediate_size, c.mlp_bias);
    block.down_or_fc2 = add_linear(prefix + names_.down_or_fc2, l, InputSite::MlpDown, c.intermediate_size, c.hidden_size, c.mlp_bias);
    blocks_.push_back(std::move(block));
  }
  if (c.final_norm) final_norm_ = load_norm(names_.final_norm, c.hidden_size);
  stats_.assign(linears_.size(), KernelStats{});
  backends_.assign(linears_.size(), nullptr);
  activation_quantizers_.assign(static_cast<size_t>(c.num_layers * kInputSites), nullptr);

  if (c.positions == PositionKind::Rotary) {
    // HF: inv_freq_i = 1 / theta^(2i/d), in float32; LLaMA-3.1 rescales low frequencies.
    const int64_t half = c.head_dim / 2;
    rope_inv_freq_.resize(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) {
      const float exponent = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
      double inv_freq = static_cast<float>(1.0 / std::pow(c.rope_theta, static_cast<double>(exponent)));
      const RopeScaling& s = c.rope_scaling;
      if (s.type == "linear") {
        inv_freq /= s.factor;
      } else if (s.type == "llama3") {
        const double old_context = static_cast<double>(s.original_max_position_embeddings);
        const double low_freq_wavelen = old_context / s.low_freq_factor;
        const double high_freq_wavelen = old_context / s.high_freq_factor;
        const double wavelen = 2 * std::numbers::pi / inv_freq;
        if (wavelen > low_freq_wavelen) {
          inv_freq /= s.factor;
        } else if (wavelen >= high_freq_wavelen) {
          const double smooth = (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
          inv_freq = (1 - smooth) * inv_freq / s.factor + smooth * inv_freq;
        }
      }
      rope_inv_freq_[static_cast<size_t>(i)] = static_cast<float>(inv_freq);
    }
  }
}

int64_t Transformer::parameter_count() const {
  int64_t total = 0;
  for (const auto& [name, info] : checkpoint_->tensors())
    if (!stored_quantization_ || (!is_integer(info.dtype) && !is_quantization_metadata(name))) total += info.numel();
  // A quantized checkpoint's linear weights count by their logical shape, not their codes.
  if (stored_quantization_)
    for (const auto& linear : linears_) total += linear.out_features * linear.in_features;
  // A stored copy of a tied lm_head is not a parameter of its own.
  if (config_.tie_word_embeddings && checkpoint_->contains(names_.lm_head)) total -= checkpoint_->tensor(names_.lm_head).numel();
  return total;
}

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

void Transformer::quantize_weights(const Quantizer& quantizer) {
  for (auto& linear : linears_) {
    std::span<float> w = linear.mutable_weight();
    quantizer.fake_quantize(MatrixView{w.data(), linear.out_features, linear.in_features, linear.in_features}, nullptr);
  }
}

void Transformer::set_activation_quantizer(int64_t layer, InputSite site, std::shared_ptr<const Quantizer> quantizer) {
  activation_quantizers_.at(static_cast<size_t>(layer * kInputSites + static_cast<int>(site))) = std::move(quantizer);
}

void Transformer::set_linear_backend(int64_t index, std::shared_ptr<LinearBackend> backend) {
  backends_.at(static_cast<size_t>(index)) = std::move(backend);
}

void Transformer::set_activation_quantizer_everywhere(std::shared_ptr<const Quantizer> quantizer) {
  for (auto& q : activation_quantizers_) q = quantizer;
}

KernelStats Transformer::total_kernel_stats() const {
  KernelStats total;
  for (const auto& s : stats_) total.merge(s);
  return total;
}

void Transformer::reset_kernel_stats() { stats_.assign(linears_.size(), KernelStats{}); }

std::vector<float>& Transformer::norm_weight(int64_t layer, InputSite site) {
  auto& block = blocks_.at(static_cast<size_t>(layer));
  return site == InputSite::AttentionIn ? block.attn_norm.weight : block.mlp_norm.weight;
}

std::vector<float>& Transformer::norm_bias(int64_t layer, InputSite site) {
  auto& block = blocks_.at(static_cast<size_t>(layer));
  return site == InputSite::AttentionIn ? block.attn_norm.bias : block.mlp_norm.bias;
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

void Transformer::apply_rope(float* x, int64_t heads, std::span<const int64_t> positions) const {
  const int64_t head_dim = config_.head_dim;
  const int64_t half = head_dim / 2;
  const int64_t width = heads * head_dim;
  const auto rows = static_cast<int64_t>(positions.size());
#pragma omp parallel for schedule(static) if (rows * width > kParallelElements)
  for (int64_t r = 0; r < rows; ++r) {
    const auto position = static_cast<float>(positions[static_cast<size_t>(r)]);
    float* row = x + r * width;
    for (int64_t i = 0; i < half; ++i) {
      // HF: freqs = position · inv_freq in float32, then cos/sin; rotate_half pairs i with i + d/2.
      const float angle = position * rope_inv_freq_[static_cast<size_t>(i)];
      const auto cos_a = static_cast<float>(std::cos(static_cast<double>(angle)));
      const auto sin_a = static_cast<float>(std::sin(static_cast<double>(angle)));
      for (int64_t h = 0; h < heads; ++h) {
        float* head = row + h * head_dim;
        const float first = head[i];
        const float second = head[i + half];
        head[i] = first * cos_a - second * sin_a;
        head[i + half] = second * cos_a + first * sin_a;
      }
    }
  }
}

bool Transformer::gathers_column_absmax(int64_t layer, InputSite site) const {
  const auto* cross = dynamic_cast<const CrossQuantQuantizer*>(
      activation_quantizers_[static_cast<size_t>(layer * kInputSites + static_cast<int>(site))].get());
  if (cross == nullptr || cross->is_static()) return false;
  const Block& block = blocks_.at(static_cast<size_t>(layer));
  std::array<int64_t, 3> readers{-1, -1, -1};  // -1: none
  switch (site) {
    case InputSite::AttentionIn: readers = {block.q, block.k, block.v}; break;
    case InputSite::AttentionOut: readers[0] = block.o; break;
    case InputSite::MlpIn: readers = {block.gate_or_fc1, block.up, -1}; break;
    case InputSite::MlpDown: readers[0] = block.down_or_fc2; break;
  }
  // prepare_input quantizes a site's input unless every reader has a backend.
  return std::any_of(readers.begin(), readers.end(),
                     [&](int64_t r) { return r >= 0 && backends_[static_cast<size_t>(r)] == nullptr; });
}

const float* Transformer::prepare_input(int64_t layer, InputSite site, const float* x, int64_t cols,
                                        const RowWindows& windows, std::span<const int64_t> readers,
                                        const std::vector<float>* column_absmax) {
  const int64_t rows = windows.rows();
  if (observer_) observer_(layer, site, x, rows, cols, windows);
  const auto& quantizer = activation_quantizers_[static_cast<size_t>(layer * kInputSites + static_cast<int>(site))];
  const bool all_backends = std::all_of(readers.begin(), readers.end(), [&](int64_t r) { return backends_[static_cast<size_t>(r)] != nullptr; });
  if (all_backends)
    for (int64_t reader : readers) backends_[static_cast<size_t>(reader)]->new_input();
  if (!quantizer || all_backends) return x;
  quantized_input_.assign(x, x + rows * cols);
  KernelStats site_stats;
  const auto* gathered_for = column_absmax != nullptr ? dynamic_cast<const CrossQuantQuantizer*>(quantizer.get()) : nullptr;
  // Per window: CrossQuant's column maxima are taken over one sequence's tokens (SPEC.md).
  for (int64_t w = 0; w < windows.count(); ++w) {
    const MatrixView window{quantized_input_.data() + windows.begin(w) * cols, windows.size(w), cols, cols};
    if (gathered_for != nullptr)
      gathered_for->fake_quantize_with_column_absmax(
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
    matmul_abt(x, linear.in_features, linear.owned_weight.data(), linear.in_features, y, linear.out_features, rows,
               linear.out_features, linear.in_features);
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
                                  int64_t length, KVCache& cache, float* out, float* column_absmax) {
  const ModelConfig& c = config_;
  const int64_t head_dim = c.head_dim;
  const int64_t q_width = c.num_heads * head_dim;
  const int64_t kv_width = cache.kv_width;
  const int64_t past = cache.length;
  const int64_t total = past + length;
  const int64_t group = c.num_heads / c.num_kv_heads;
  float* keys = cache.keys[static_cast<size_t>(layer)].data();
  float* values = cache.values[static_cast<size_t>(layer)].data();
  for (int64_t b = 0; b < batch; ++b) {
    float* key_rows = keys + (b * cache.capacity + past) * kv_width;
    float* value_rows = values + (b * cache.capacity + past) * kv_width;
    std::memcpy(key_rows, k + b * length * kv_width, static_cast<size_t>(length * kv_width) * sizeof(float));
    std::memcpy(value_rows, v + b * length * kv_width, static_cast<size_t>(length * kv_width) * sizeof(float));
  }
  const float score_scale = attention_score_scale();
  const int64_t attention_work = batch * c.num_heads * length * total * head_dim;
#pragma omp parallel if (attention_work > kParallelElements * 2)
  {
    std::vector<float> scores(static_cast<size_t>(length * total));
#pragma omp for schedule(dynamic) collapse(2)
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t h = 0; h < c.num_heads; ++h) {
        const int64_t kv_offset = b * cache.capacity * kv_width + h / group * head_dim;
        float* head_out = out + b * length * q_width + h * head_dim;
        attend_head(q + b * length * q_width + h * head_dim, q_width, keys + kv_offset, values + kv_offset, kv_width,
                    past, length, head_dim, score_scale, head_out, q_width, scores.data());
        // This task alone writes these columns of sequence b: their maxima need no merge.
        if (column_absmax != nullptr)
          kernels::update_column_absmax(head_out, length, head_dim, q_width, column_absmax + b * q_width + h * head_dim);
      }
    }
  }
}

void Transformer::packed_attention(const float* q, const float* k, const float* v,
                                   const std::vector<SegmentRows>& segments, float* out) const {
  const ModelConfig& c = config_;
  const int64_t head_dim = c.head_dim;
  const int64_t q_width = c.num_heads * head_dim;
  const int64_t kv_width = c.num_kv_heads * head_dim;
  const int64_t group = c.num_heads / c.num_kv_heads;
  const float score_scale = attention_score_scale();
  const auto count = static_cast<int64_t>(segments.size());
  int64_t attention_work = 0;
  for (const auto& segment : segments) attention_work += c.num_heads * segment.length * (segment.past + segment.length) * head_dim;
#pragma omp parallel if (attention_work > kParallelElements * 2)
  {
    std::vector<float> scores, keys, values;  // keys/values: a segment's visible rows, gathered when not contiguous
#pragma omp for schedule(dynamic) collapse(2)
    for (int64_t s = 0; s < count; ++s) {
      for (int64_t h = 0; h < c.num_heads; ++h) {
        const SegmentRows& segment = segments[static_cast<size_t>(s)];
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
        attend_head(q + segment.start * q_width + h * head_dim, q_width, k_rows, v_rows, stride, segment.past,
                    segment.length, head_dim, score_scale, out + segment.start * q_width + h * head_dim, q_width,
                    scores.data());
      }
    }
  }
}

Transformer::BlockLinears Transformer::block_linears(int64_t layer) const {
  const Block& block = blocks_.at(static_cast<size_t>(layer));
  return {block.q, block.k, block.v, block.o, block.gate_or_fc1, block.up, block.down_or_fc2};
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

float Transformer::attention_score_scale() const {
  // LLaMA scales scores by 1/sqrt(d); OPT has already scaled q after its projection.
  return config_.family == Family::OPT ? 1.f : 1.f / std::sqrt(static_cast<float>(config_.head_dim));
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
  const int64_t qkv[] = {block.q, block.k, block.v};
  const float* quantized =
      prepare_input(l, InputSite::AttentionIn, input, c.hidden_size, pass.windows, qkv, input_column_absmax);
  run_linear(block.q, quantized, pass.windows, q.data());
  run_linear(block.k, quantized, pass.windows, k.data());
  run_linear(block.v, quantized, pass.windows, v.data());
  if (attention_input_quantizer_) {
    for (auto [data, width] : {std::pair{q.data(), q_width}, std::pair{k.data(), kv_width}, std::pair{v.data(), kv_width}})
      for (int64_t w = 0; w < pass.windows.count(); ++w)
        attention_input_quantizer_->fake_quantize(
            MatrixView{data + pass.windows.begin(w) * width, pass.windows.size(w), width, width}, nullptr);
  }
  if (c.family == Family::OPT) {
    const float scaling = 1.f / std::sqrt(static_cast<float>(c.head_dim));
    for (float& value : q) value *= scaling;
  } else {
    apply_rope(q.data(), c.num_heads, pass.positions);
    apply_rope(k.data(), c.num_kv_heads, pass.positions);
  }
  // Causal attention over a cache writes each sequence's (window's) heads as separate tasks,
  // which gather the column maxima of o_proj's input for dynamic CrossQuant on the way; the
  // packed form (segments of one tree on different tasks) leaves it to the quantizer.
  std::vector<float> attn_column_absmax;
  if (!pass.segments && gathers_column_absmax(l, InputSite::AttentionOut))
    attn_column_absmax.assign(static_cast<size_t>(pass.windows.count() * q_width), 0.f);
  if (pass.segments) packed_attention(q.data(), k.data(), v.data(), *pass.segments, attn.data());
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
  if (c.mlp == MlpKind::SwiGLU) {
    mlp_b.resize(mlp_a.size());
    const int64_t readers[] = {block.gate_or_fc1, block.up};
    const float* in = prepare_input(l, InputSite::MlpIn, input, c.hidden_size, windows, readers, input_column_absmax);
    run_linear(block.gate_or_fc1, in, windows, mlp_a.data());
    run_linear(block.up, in, windows, mlp_b.data());
    kernels::produce_rows(mlp_a.data(), rows, inter, parallel, windows.bounds(), gathered, [&](int64_t i) {
      kernels::silu_multiply(mlp_a.data() + i * inter, mlp_b.data() + i * inter, mlp_a.data() + i * inter, inter);
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
  std::vector<SegmentRows> plan(segments.size());
  Pass pass;
  pass.positions.resize(static_cast<size_t>(rows));
  std::vector<int64_t> window_bounds = {0};
  int64_t start = 0, tree_root = -1;
  for (size_t s = 0; s < segments.size(); ++s) {
    const PackedSegment& segment = segments[s];
    SegmentRows& rows_of = plan[s];
    if (segment.length <= 0) fail("forward_packed: segment {} is empty", s);
    if (segment.parent >= 0) {
      if (segment.parent < tree_root || segment.parent >= static_cast<int64_t>(s))
        fail("forward_packed: segment {} continues segment {}, which is not an earlier segment of its tree", s, segment.parent);
      const SegmentRows& parent = plan[static_cast<size_t>(segment.parent)];
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
  // Final norm, optional project_out, lm_head (kept in full precision).
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
  if (!c.has_projections()) {
    matmul_stored_weight(normed.data(), out_rows, *lm_head_, logits);
    return;
  }
  std::vector<float> head_input(static_cast<size_t>(out_rows * c.word_embed_proj_dim));
  matmul_stored_weight(normed.data(), out_rows, *project_out_, head_input.data());
  matmul_stored_weight(head_input.data(), out_rows, *lm_head_, logits);
}

}  // namespace cq
