#pragma once
// The integer engine (`--engine int`): LinearBackends that compute a linear layer with the
// INT8 / INT4 GEMMs of src/kernels instead of an FP32 GEMM on fake-quantized values.
// docs/INTEGER_ENGINE.md describes the paths, their accuracy against the fake path and
// their cost.
//
// Every backend receives the unquantized input, quantizes it per window (one sequence, or one
// packed tree) with the activation quantizer of its site (adding that quantizer's KernelStats
// exactly as the fake path does), runs the integer GEMM with the fused epilogue and writes y
// (bias included):
//
//   per-token / per-tensor activations:  y_ik = s_i · Σ_j a_ij · Q(W)_kj            (Q(W) once)
//   static CrossQuant:                   y_ik = r_i · Σ_j a_ij · Q(W·diag(f))_kj    (f = c^(1−α), once)
//   dynamic CrossQuant:                  the same with f from the window's c (a window that
//                                        continues a KV cache: c over the sequence so far, as
//                                        the model gives it, set_column_absmax); Q(W·diag(f))
//                                        is recomputed and packed per window and layer
//                                        (O(I·O) against the GEMM's O(T·I·O)); while decoding,
//                                        only the columns whose c_j grew (INT8 weights). Decode
//                                        rows use a static f instead when one is given
//                                        (decode_column_absmax).
//
// a_ij are the activation codes of QuantizedMatrix, s_i / r_i its row_scales (tensor_scale
// for per-tensor), f_j its column_factors. Weights with bits 5..8 and per-channel scales use
// gemm_int8; weights with bits <= 4 (per-channel or group-wise, symmetric or with zero
// points) use gemm_int4.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/transformer.h"
#include "ptq/apply_quantization.h"
#include "quant/quant_config.h"
#include "quant/quantizer.h"

namespace cq {

struct GptqModelResult;
class CrossQuantQuantizer;

// Weights quantized with a weight quantizer and packed for one of the integer GEMMs.
class PackedLinearWeights {
 public:
  PackedLinearWeights();
  ~PackedLinearWeights();
  PackedLinearWeights(PackedLinearWeights&&) noexcept;
  PackedLinearWeights& operator=(PackedLinearWeights&&) noexcept;

  // Quantizes weight (out × in, row-major FP32) with `quantizer` and packs the codes.
  // Throws cq::Error when no kernel takes the result (e.g. group-wise with bits > 4).
  static PackedLinearWeights quantize(const Quantizer& quantizer, const float* weight, int64_t out, int64_t in);
  // Q(W·diag(f)) for a weight W (out × in) and column factors f (in values), written into
  // this object's storage when it already holds out × in weights of the same quantizer (else
  // allocated). Equals quantize() of the scaled matrix bit for bit: per-channel and
  // group-wise quantizers treat rows independently, so each thread scales, quantizes and
  // packs its own 64-row panels while they are in cache. For dynamic CrossQuant, per window.
  void requantize_scaled(const Quantizer& quantizer, const float* weight, int64_t out, int64_t in,
                         const std::vector<float>& column_factors);
  // The same for per-channel weights of 5..8 bits (the INT8 GEMM), with W given in the GEMM's
  // panel order (order_as_int8_panels, quant/scaled_panels.h): scaling, quantizing and packing
  // are one vector pass per panel. When the factors only grew since the previous call, in few
  // columns (dynamic CrossQuant decoding: c_j over the sequence so far only grows), only those
  // columns' codes are recomputed, and the channels whose max|w·f| grew re-quantized whole (their
  // panel, when more than 4 of its channels did): Δ_k of a channel changes only when its
  // maximum does, so this equals the full re-quantization bit for bit.
  void requantize_scaled_panels(const Quantizer& quantizer, const std::vector<float>& ordered_weight, int64_t out,
                                int64_t in, const std::vector<float>& column_factors);
  // Throws cq::Error when no integer kernel takes weights quantized by `spec` (per-channel,
  // or group-wise with bits <= 4 and a group size that is a multiple of 8).
  static void check_weight_quantizer(const QuantizerSpec& spec);
  // Packs codes as they are (a quantized checkpoint's, say): per-channel (row_scales) or
  // group-wise with bits <= 4 (group_scales, group_zeros). Throws cq::Error otherwise.
  static PackedLinearWeights from_codes(const QuantizedMatrix& codes);
  // y (rows × out) = dequantized codes · Wᵀ (+ bias). codes: rows × in int8, row_scales: rows.
  void gemm(const int8_t* codes, int64_t rows, const float* row_scales, const float* bias, float* y) const;
  bool is_int4() const;
  int64_t out_features() const;
  int64_t in_features() const;

 private:
  static void check_group_kernel(int bits, int64_t group_size);
  bool requantize_per_channel_panel(const float* weight, int64_t rows, int64_t in, const std::vector<float>& factors,
                                    int bits, int64_t panel);
  // One panel of requantize_scaled_panels from scratch; false when a scaled value is not finite.
  bool requantize_ordered_panel(const float* ordered_weight, const std::vector<float>& factors, int bits, int64_t panel);
  bool requantize_ordered_row(const float* ordered_weight, const std::vector<float>& factors, int bits, int64_t panel,
                              int64_t c);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct IntegerLinearOptions {
  std::shared_ptr<const Quantizer> activation;  // per-token, per-tensor or crossquant (static or dynamic)
  std::shared_ptr<const Quantizer> weight;      // per-channel (bits 2..8) or group (bits <= 4)
  // Dynamic CrossQuant only: calibrated c_j used for decode rows (windows of one token);
  // empty: decode re-quantizes the weights per token like prefill (exact, slow).
  std::vector<float> decode_column_absmax;
};

// One linear layer on the integer kernels. `weight` is the layer's FP32 weight before any
// quantization (out × in); the backend keeps what it needs (packed codes; the FP32 weight
// as well for dynamic CrossQuant).
class IntegerLinear final : public LinearBackend {
 public:
  IntegerLinear(const IntegerLinearOptions& options, std::span<const float> weight, int64_t out, int64_t in,
                std::vector<float> bias);
  // Weights already quantized and packed (a quantized checkpoint's codes): per-token or
  // per-tensor activations only, since CrossQuant folds c^(1−α) into the weights before they
  // are quantized. options.weight describes how they were quantized (for describe()).
  IntegerLinear(const IntegerLinearOptions& options, PackedLinearWeights weights, std::vector<float> bias);
  ~IntegerLinear() override;
  void run(const float* x, const RowWindows& windows, float* y, KernelStats& stats) override;
  void new_input() override;
  void set_column_absmax(std::span<const float> column_absmax) override;

  // Activation codes of one input, shared by the backends that read it (q/k/v, gate/up) when
  // they quantize it the same way: the first quantizes, the others reuse (and add the same
  // kernel statistics, as the fake path adds the site's statistics to every reader).
  struct SharedActivationCodes {
    bool valid = false;
    const float* input = nullptr;
    int64_t rows = 0;
    std::vector<int8_t> codes;
    std::vector<float> scales;
    KernelStats stats;
  };
  void share_activation_codes(std::shared_ptr<SharedActivationCodes> shared) { shared_codes_ = std::move(shared); }

  // "per-token W8 (int8 GEMM)", "static crossquant W4 g128 (int4 GEMM)", ... for reports.
  std::string describe() const;

 private:
  enum class Mode { Fixed, StaticCross, DynamicCross };
  void run_fixed(const Quantizer& activation, const PackedLinearWeights& weights, const float* x,
                 const RowWindows& windows, float* y, KernelStats& stats);
  void run_dynamic(const float* x, const RowWindows& windows, float* y, KernelStats& stats);

  Mode mode_ = Mode::Fixed;
  IntegerLinearOptions options_;
  int64_t out_ = 0, in_ = 0;
  std::vector<float> bias_;
  PackedLinearWeights packed_;                          // Fixed, StaticCross
  std::vector<float> weight_;                           // DynamicCross: W, FP32 (group-wise or <= 4-bit weights)
  std::vector<float> weight_panels_;                    // DynamicCross, per-channel INT8: W in the GEMM's panel order
  const CrossQuantQuantizer* cross_ = nullptr;          // DynamicCross: the activation quantizer
  std::vector<float> column_absmax_;                    // DynamicCross: c_j the model gave for the next run
  std::shared_ptr<const Quantizer> decode_activation_;  // DynamicCross: static crossquant for decode
  PackedLinearWeights decode_packed_;                   // DynamicCross: Q(W·diag(c_static^(1−α)))
  PackedLinearWeights window_packed_;                   // DynamicCross: Q(W·diag(f)) of the current window
  std::vector<int8_t> codes_;                           // scratch
  std::shared_ptr<SharedActivationCodes> shared_codes_; // Fixed, StaticCross: codes of the current input
};


// Installs an IntegerLinear on every decoder linear layer of `model`, from its current
// (transformed, not yet fake-quantized) weights, or for a quantized checkpoint from its
// stored codes and scales as they are (no re-quantization; the FP32 copies of the weights
// are then released). static_absmax: per (layer * kInputSites + site) calibrated column
// maxima when config.static_columns (as install_activation_quantizers takes them); for
// dynamic CrossQuant, when given, they serve decoding. Throws cq::Error when the
// configuration is unsupported. gptq: when it holds grids (--method gptq), the weights are
// on them already and are packed as their codes, not rounded again.
void install_integer_backends(Transformer& model, const QuantConfig& config,
                              const std::vector<std::vector<float>>& static_absmax,
                              const GptqModelResult* gptq = nullptr);

}  // namespace cq
