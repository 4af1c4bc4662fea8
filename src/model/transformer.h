#pragma once
// One decoder for every family: ModelConfig says what differs (norm, positions, MLP,
// biases, GQA, where queries are scaled). The parameters come through a WeightSource
// (model/weight_source.h): an ordinary checkpoint's tensors stay in its mapping in their
// stored dtype, and F16/BF16 layers are converted to FP32 one layer at a time, so memory
// stays near the file size; a source may give a linear layer's FP32 values instead (a
// quantized checkpoint's dequantized codes). Attention and RoPE are kernels
// (kernels/attention.h, kernels/rope.h).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/config.h"
#include "model/row_windows.h"
#include "model/weight_source.h"
#include "quant/kernel_stats.h"
#include "quant/quantizer.h"

namespace cq::kernels {
struct AttentionHeads;
struct AttentionSegment;
class HadamardTransform;
}  // namespace cq::kernels

namespace cq {

// The four places inside a block where a linear layer reads its input. Linear layers that
// share an input (q/k/v, gate/up) share its activation quantization.
enum class InputSite { AttentionIn, AttentionOut, MlpIn, MlpDown };
inline constexpr int kInputSites = 4;
const char* input_site_name(InputSite site);

struct LinearLayer {
  std::string name;           // Hugging Face module name, e.g. "model.layers.0.self_attn.q_proj"
  InputSite site = InputSite::AttentionIn;
  int64_t layer = 0;
  int64_t in_features = 0;
  int64_t out_features = 0;
  const TensorInfo* stored_weight = nullptr;  // `name`.weight in the mapping (a quantized checkpoint's integer codes)
  std::vector<float> owned_weight;            // FP32 copy once transformed (quantized, smoothed), or
                                              // the values WeightSource::linear_weight gave
  std::vector<float> bias;                    // empty: no bias

  // Makes an owned FP32 copy (if not yet) and returns it for in-place transformation.
  std::span<float> mutable_weight();
};

// One segment of a packed forward (Transformer::forward_packed). A segment continues its
// parent (an earlier segment of the same tree) or starts a new sequence (parent -1): its
// tokens attend to the tokens of all its ancestors and causally to its own, and their
// positions continue after the ancestors' lengths.
struct PackedSegment {
  int64_t length = 0;
  int64_t parent = -1;
};

struct KVCache {
  int64_t batch = 0;
  int64_t capacity = 0;  // positions
  int64_t length = 0;    // positions filled
  int64_t kv_width = 0;  // num_kv_heads * head_dim
  std::vector<std::vector<float>> keys, values;  // per layer: [batch][capacity][kv_width]
  // Dynamic CrossQuant's column maxima c_j over each sequence so far (prompt and decoded
  // tokens): per layer · kInputSites + site, [batch][cols]; filled by forwards given this cache.
  std::vector<std::vector<float>> column_absmax;
};

// Another way to compute one linear layer (an integer GEMM engine, say). It receives the
// unquantized input, quantizes it as it must, adds its kernel statistics, and writes y
// (bias included). Window-wide statistics are taken per window of `windows`.
class LinearBackend {
 public:
  virtual ~LinearBackend() = default;
  virtual void run(const float* x, const RowWindows& windows, float* y, KernelStats& stats) = 0;
  // The model calls this before the linears that read one input (q/k/v, gate/up) run on a
  // new one: backends that share per-input work between them (the activation codes) drop
  // what they kept for the previous input.
  virtual void new_input() {}
  // Dynamic CrossQuant: the column maxima c_j (windows.count() × in, window by window) that
  // the next run() must quantize its input with, as the model defines them (the window's
  // own maxima, or those of the sequence so far when a KV cache is continued: docs/
  // INTEGER_ENGINE.md); empty: the backend takes them from its input. Others ignore it.
  virtual void set_column_absmax(std::span<const float> column_absmax) { (void)column_absmax; }
};

// Called with the (unquantized) input of each input site; used by calibration.
using ActivationObserver = std::function<void(int64_t layer, InputSite site, const float* x, int64_t rows,
                                              int64_t cols, const RowWindows& windows)>;

class Transformer {
 public:
  // Loads config.json of a Hugging Face model directory and every parameter from `weights`.
  Transformer(const std::filesystem::path& model_dir, std::unique_ptr<WeightSource> weights);
  // An ordinary checkpoint: model_dir's safetensors or PyTorch checkpoint, read as stored (open_checkpoint_weights).
  explicit Transformer(const std::filesystem::path& model_dir);

  const ModelConfig& config() const { return config_; }
  const WeightSource& weights() const { return *weights_; }
  const SafetensorsCheckpoint& checkpoint() const { return weights_->checkpoint(); }
  const std::filesystem::path& directory() const { return directory_; }
  int64_t parameter_count() const;

  KVCache make_cache(int64_t batch, int64_t capacity) const;

  // Runs `batch` sequences of `length` tokens (row-major tokens[batch][length]). With a
  // cache, positions continue after cache->length and the cache is extended. Writes logits
  // [batch][length][vocab], or [batch][vocab] for the last position only.
  void forward(std::span<const int32_t> tokens, int64_t batch, int64_t length, std::span<float> logits,
               KVCache* cache = nullptr, bool last_position_only = false);
  // Packed sequences with parent segments (tree attention), no padding: `tokens` holds the
  // segments end to end, in order; every segment follows its parent and the segments of one
  // tree (a root and its descendants) are consecutive. Each tree is one quantization window.
  // Writes the logits of the packed rows `logit_rows` (in that order): [logit_rows][vocab].
  void forward_packed(std::span<const int32_t> tokens, std::span<const PackedSegment> segments,
                      std::span<const int64_t> logit_rows, std::span<float> logits);

  // Quantization hooks. Weights: fake-quantized once, in place (an owned FP32 copy).
  std::vector<LinearLayer>& linear_layers() { return linears_; }
  const std::vector<LinearLayer>& linear_layers() const { return linears_; }
  void quantize_weights(const Quantizer& quantizer);
  // Activations: one quantizer per (layer, site); nullptr leaves that input unquantized.
  void set_activation_quantizer(int64_t layer, InputSite site, std::shared_ptr<const Quantizer> quantizer);
  void set_activation_quantizer_everywhere(std::shared_ptr<const Quantizer> quantizer);
  // Inputs of the two attention matrix products (q, k and v, as SmoothQuant's
  // quantize_bmm_input: the outputs of q/k/v_proj, per window); nullptr = off (default).
  void set_attention_input_quantizer(std::shared_ptr<const Quantizer> quantizer) { attention_input_quantizer_ = std::move(quantizer); }
  void set_observer(ActivationObserver observer) { observer_ = std::move(observer); }
  // OmniQuant's quantizers of the attention products' inputs (its QuantMatMul): q and k after
  // the query scaling and RoPE, and v; each row of head_dim values (per_head: one head of one
  // token) or of all heads of a token quantized alone; nullptr = off (default).
  void set_attention_product_quantizer(std::shared_ptr<const Quantizer> quantizer, bool per_head) {
    attention_product_quantizer_ = std::move(quantizer);
    attention_product_per_head_ = per_head;
  }
  // Replaces the FP32 (fake-quant) computation of linear layer `index`; nullptr restores it.
  // A site whose linears all have backends skips its fake activation quantization.
  void set_linear_backend(int64_t index, std::shared_ptr<LinearBackend> backend);
  // lm_head's computation (nullptr: FP32 on the stored weight, the default); its kernel
  // statistics are not counted (lm_head is not one of the paper's quantized linears).
  void set_lm_head_backend(std::shared_ptr<LinearBackend> backend) { lm_head_backend_ = std::move(backend); }
  const TensorInfo& lm_head_weight() const { return *lm_head_; }
  // Kernel statistics per linear layer (index as linear_layers()), summed over forwards.
  const std::vector<KernelStats>& kernel_stats() const { return stats_; }
  KernelStats total_kernel_stats() const;
  void reset_kernel_stats();
  // Combining the counts of several processes (ranks of an MPI job, eval/).
  void replace_kernel_stats(std::vector<KernelStats> stats) { stats_ = std::move(stats); }

  // Norm weights of a block (for folding transformations such as SmoothQuant).
  std::vector<float>& norm_weight(int64_t layer, InputSite site);
  std::vector<float>& norm_bias(int64_t layer, InputSite site);

  // Rotation hooks (ptq/rotation.h; model/rotation_hooks.cpp). The full-precision tensors
  // outside the linear layers, as FP32 values; a replaced one is owned from then on (a tied
  // lm_head and the embeddings then part).
  enum class StoredTensor { EmbedTokens, EmbedPositions, LmHead };
  std::vector<float> tensor_values(StoredTensor which) const;
  void replace_tensor(StoredTensor which, std::vector<float> values);
  std::vector<float>& lm_head_bias() { return lm_head_bias_; }  // empty: none (a folded final LayerNorm bias)
  std::vector<float>& final_norm_weight() { return final_norm_.weight; }
  std::vector<float>& final_norm_bias() { return final_norm_.bias; }
  // Every LayerNorm becomes an RMSNorm with the same ε: exact once every writer of the
  // residual stream produces zero-mean rows (a mean-folded OPT).
  void use_rms_norm();
  // An online transform of down_proj's (fc2's) input, before its activation quantization;
  // nullptr (default): none.
  void set_mlp_down_transform(std::shared_ptr<const kernels::HadamardTransform> transform);
  const kernels::HadamardTransform* mlp_down_transform() const { return mlp_down_transform_.get(); }

  // Block-by-block execution (what AWQ's search and layer-wise calibration need); forward()
  // is built from the same pieces. Rows are `batch` sequences of `length` tokens, no cache.
  struct BlockLinears {
    // Indexes into linear_layers(); up = -1 for OPT; a fused qkv_proj is q (k = v = -1) and a
    // fused gate_up_proj gate_or_fc1 (up = -1).
    int64_t q, k, v, o, gate_or_fc1, up, down_or_fc2;
  };
  BlockLinears block_linears(int64_t layer) const;
  // Hidden states of the tokens before the first block: x [batch * length][hidden].
  void embed_tokens(std::span<const int32_t> tokens, int64_t batch, int64_t length, float* x);
  // One decoder block, in place on the hidden states x.
  void run_block(int64_t layer, float* x, int64_t batch, int64_t length);
  // The attention sub-layer from the input of q/k/v (after the norm) to the output of
  // o_proj (before the residual); the MLP sub-layer from the input of fc1 / gate+up to the
  // output of fc2 / down. Activation quantizers and the observer apply as in forward().
  void run_attention(int64_t layer, const float* input, int64_t batch, int64_t length, float* out);
  void run_mlp(int64_t layer, const float* input, int64_t rows, int64_t length, float* out);
  // One linear layer, y = x·Wᵀ + b, without activation quantization.
  void apply_linear(int64_t index, const float* x, int64_t rows, float* y);

 private:
  struct Norm {
    std::vector<float> weight, bias;  // bias empty for RMSNorm
  };
  struct Block {
    Norm attn_norm, mlp_norm;
    int64_t q, k = -1, v = -1, o, gate_or_fc1, up = -1, down_or_fc2;  // indexes into linears_
  };

  // What one forward runs: rows with their positions and quantization windows, attending
  // causally over a KV cache (batch sequences of `length` tokens) or as packed segments.
  struct Pass {
    std::vector<int64_t> positions;  // per row
    RowWindows windows;
    int64_t batch = 0, length = 0;
    KVCache* cache = nullptr;
    const std::vector<kernels::AttentionSegment>* segments = nullptr;  // packed
    int64_t rows() const { return windows.rows(); }
  };
  static Pass cache_pass(int64_t batch, int64_t length, KVCache& cache);
  kernels::AttentionHeads attention_heads() const;

  void load_weights();
  // A tensor holding model values (floating point) with the shape config.json implies.
  const TensorInfo& value_tensor(const std::string& name, const std::vector<int64_t>& shape) const;
  int64_t add_linear(const std::string& module, int64_t layer, InputSite site, int64_t in, int64_t out, bool bias);
  Norm load_norm(const std::string& module, int64_t width) const;
  // y = norm(x) per row; with column_absmax (windows.count() × width) also the column maxima
  // of y per window (kernels::produce_rows), for the dynamic CrossQuant of the next site.
  void apply_norm(const Norm& norm, const float* x, float* y, int64_t rows, int64_t width,
                  const RowWindows* windows = nullptr, std::vector<float>* column_absmax = nullptr) const;
  // Whether the fake path quantizes this site's input with dynamic CrossQuant: then the
  // kernel that writes the input gathers its column maxima c_j on the way (one pass less).
  bool gathers_column_absmax(int64_t layer, InputSite site) const;
  // Quantizes (a copy of) the site's input per window, counts the kernel for each linear
  // that reads it, then runs the linears. column_absmax: c_j per window gathered by the
  // producer (only when gathers_column_absmax), else null.
  const float* prepare_input(int64_t layer, InputSite site, const float* x, int64_t cols, const RowWindows& windows,
                             std::span<const int64_t> readers, const std::vector<float>* column_absmax = nullptr);
  void run_linear(int64_t index, const float* x, const RowWindows& windows, float* y);
  // Dynamic CrossQuant on a forward that continues a caller's KV cache: c_j of each window =
  // max over its sequence so far (the cache's running maxima, then this window's), and the
  // cache's maxima raised to them. window_absmax: the window's own maxima when gathered (else
  // computed here). Returns `scratch` holding them (windows.count() × cols).
  const std::vector<float>* sequence_column_absmax(int64_t layer, InputSite site, const float* x, int64_t cols,
                                                   const RowWindows& windows, const std::vector<float>* window_absmax,
                                                   std::vector<float>& scratch);
  void embed(std::span<const int32_t> tokens, std::span<const int64_t> positions, float* x);
  // Appends k and v to the cache, then attends (kernels::cache_attention); column_absmax as there.
  void cache_attention(int64_t layer, const float* q, const float* k, const float* v, int64_t batch, int64_t length,
                       KVCache& cache, float* out, float* column_absmax = nullptr) const;
  // input_column_absmax: the input's column maxima per window when gathers_column_absmax.
  void attention_sublayer(int64_t layer, const float* input, const Pass& pass, float* out,
                          const std::vector<float>* input_column_absmax = nullptr);
  void mlp_sublayer(int64_t layer, const float* input, const RowWindows& windows, float* out,
                    const std::vector<float>* input_column_absmax = nullptr);
  void block_step(int64_t layer, float* x, const Pass& pass);
  // Final norm, project_out and lm_head for the rows `selected` of x (all rows when empty).
  void compute_logits(const float* x, int64_t rows, std::span<const int64_t> selected, float* logits);

  std::filesystem::path directory_;
  ModelConfig config_;
  TensorNames names_;
  std::unique_ptr<WeightSource> weights_;
  int64_t source_linear_parameters_ = 0;  // out × in of the linears whose values linear_weight() gave
  std::vector<LinearLayer> linears_;
  std::vector<Block> blocks_;
  Norm final_norm_;
  const TensorInfo* embed_tokens_ = nullptr;
  const TensorInfo* embed_positions_ = nullptr;
  const TensorInfo* lm_head_ = nullptr;
  std::shared_ptr<LinearBackend> lm_head_backend_;
  const TensorInfo* project_in_ = nullptr;
  const TensorInfo* project_out_ = nullptr;
  std::vector<float> rope_inv_freq_;
  float embedding_scale_ = 1.f;  // Gemma: sqrt(hidden_size) in the embedding's dtype
  std::vector<std::shared_ptr<const Quantizer>> activation_quantizers_;  // [layer * 4 + site]
  std::vector<KernelStats> stats_;
  std::shared_ptr<const Quantizer> attention_input_quantizer_;
  std::shared_ptr<const Quantizer> attention_product_quantizer_;
  bool attention_product_per_head_ = false;
  void quantize_attention_products(float* q, float* k, float* v, int64_t rows) const;
  std::vector<std::shared_ptr<LinearBackend>> backends_;  // per linear; nullptr = FP32 GEMM
  ActivationObserver observer_;
  std::vector<float> quantized_input_;
  KVCache* sequence_cache_ = nullptr;  // during forward() with a caller's cache: where c_j of the sequence lives
  struct OwnedTensor {
    std::vector<float> values;
    TensorInfo info;  // F32 view of `values` (heap-held: the decoder keeps pointers to it)
  };
  std::vector<std::unique_ptr<OwnedTensor>> owned_tensors_;
  std::vector<float> lm_head_bias_;
  std::shared_ptr<const kernels::HadamardTransform> mlp_down_transform_;
};

}  // namespace cq
