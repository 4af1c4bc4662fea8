// The model's quantization hooks (transformer.h): where activation quantizers, integer
// backends and weight transformations plug into the decoder, and its statistics.
#include <utility>

#include "kernels/column_absmax.h"
#include "model/transformer.h"
#include "util/error.h"

namespace cq {

const char* input_site_name(InputSite site) {
  switch (site) {
    case InputSite::AttentionIn: return "attn_in";
    case InputSite::AttentionOut: return "attn_out";
    case InputSite::MlpIn: return "mlp_in";
    case InputSite::MlpDown: return "mlp_down";
  }
  return "?";
}

// The definition for decoding (docs/INTEGER_ENGINE.md, "Dynamic CrossQuant while decoding"):
// a forward that starts a sequence (empty cache) takes c_j over its window, as a perplexity
// window does; a forward that continues it takes c_j over every token of the sequence so far,
// this window's included. The maxima only grow, so the integer engine re-quantizes only the
// weight columns whose factor changed.
const std::vector<float>* Transformer::sequence_column_absmax(int64_t layer, InputSite site, const float* x,
                                                              int64_t cols, const RowWindows& windows,
                                                              const std::vector<float>* window_absmax,
                                                              std::vector<float>& scratch) {
  KVCache& cache = *sequence_cache_;
  const int64_t count = windows.count();
  const auto size = static_cast<size_t>(count * cols);
  if (window_absmax != nullptr) {
    scratch = *window_absmax;
  } else {
    scratch.assign(size, 0.f);
    for (int64_t w = 0; w < count; ++w)
      kernels::update_column_absmax(x + windows.begin(w) * cols, windows.size(w), cols, cols, scratch.data() + w * cols);
  }
  cache.column_absmax.resize(static_cast<size_t>(config_.num_layers * kInputSites));
  std::vector<float>& running = cache.column_absmax[static_cast<size_t>(layer * kInputSites + static_cast<int>(site))];
  if (cache.length > 0) {
    if (running.size() != size)
      fail("forward: the KV cache holds no CrossQuant column maxima for {} of layer {} (it was filled without them)",
           input_site_name(site), layer);
    // A NaN of this window stays NaN (the quantizer then names its row).
    for (size_t j = 0; j < size; ++j)
      if (scratch[j] < running[j]) scratch[j] = running[j];
  }
  running = scratch;
  return &scratch;
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

void Transformer::quantize_attention_products(float* q, float* k, float* v, int64_t rows) const {
  const ModelConfig& c = config_;
  for (auto [data, heads] : {std::pair{q, c.num_heads}, std::pair{k, c.num_kv_heads}, std::pair{v, c.num_kv_heads}}) {
    const int64_t width = heads * c.head_dim;
    const MatrixView view = attention_product_per_head_ ? MatrixView{data, rows * heads, c.head_dim, c.head_dim}
                                                        : MatrixView{data, rows, width, width};
    attention_product_quantizer_->fake_quantize(view, nullptr);
  }
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

Transformer::BlockLinears Transformer::block_linears(int64_t layer) const {
  const Block& block = blocks_.at(static_cast<size_t>(layer));
  return {block.q, block.k, block.v, block.o, block.gate_or_fc1, block.up, block.down_or_fc2};
}

}  // namespace cq
