#pragma once
// OmniQuant's block-wise calibration on CPU (docs/BASELINES.md, "OmniQuant calibration"):
// for each decoder block in order, LET scales/shifts initialised from the full-precision
// activation statistics of the calibration windows, LWC factors at 4, then `epochs` passes
// of AdamW over the windows in order, each step minimising the MSE between the quantized
// block on the quantized model's hidden states and the full-precision block on the
// full-precision ones (ptq/omniquant_block.h). The result is OmniQuant's parameter set
// (ptq/omniquant_parameters.h), under its own names; applying it is ptq/omniquant.cpp's job.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>

#include "model/transformer.h"
#include "ptq/omniquant_block.h"
#include "ptq/omniquant_parameters.h"
#include "quant/quant_config.h"

namespace cq {

struct OmniQuantCalibrationOptions {
  int64_t samples = 128;  // calibration windows, non-overlapping from the start of the text
  int64_t seqlen = 2048;  // tokens per window
  OmniQuantSettings settings;
  int64_t epochs = kOmniQuantDefaultEpochs;
  double lwc_lr = kOmniQuantDefaultLwcLr, let_lr = kOmniQuantDefaultLetLr, weight_decay = 0.0;
  double alpha = 0.5;  // LET's initial migration strength
  // A progress bar, and each block's loss per epoch as a line above it (none under --quiet).
  bool show_progress = true;
  // Called after each epoch of each block with the epoch's mean loss.
  std::function<void(int64_t layer, int64_t epoch, double loss)> on_epoch;
};

// OmniQuant's choices for a setting (its scripts): LWC always; LET for every OPT setting and
// for LLaMA-like models only with quantized activations; shifts trained only for OPT with
// quantized activations.
OmniQuantSettings omniquant_default_settings(const ModelConfig& config, int weight_bits, int activation_bits,
                                             int64_t group_size);

// The calibration `config` asks for (--method omniquant --calib, and cq omniquant-calibrate):
// OmniQuant's settings for the model and bits (omniquant_default_settings), config.calib_samples
// windows of config.calib_seqlen tokens, config.omni_epochs and the learning rates. Throws
// cq::Error for unquantized weights, a window longer than the model's positions, a model the
// calibration cannot differentiate, and --lr-let where the setting trains no LET.
OmniQuantCalibrationOptions omniquant_calibration_options(const QuantConfig& config, const ModelConfig& model);

// Throws cq::Error when the model's blocks are not OPT (pre-LN, ReLU) or LLaMA-like (RMSNorm,
// SwiGLU, RoPE) blocks the calibration can differentiate.
void check_omniquant_calibration_supported(const ModelConfig& config);

// Decoder layer `layer`'s tensors, FP32 copies.
OmniBlockWeights omni_block_weights(Transformer& model, int64_t layer);

// OmniQuant's parameter names for one layer (LET: "qkv_smooth_scale", ...; LWC:
// "<module>.weight_quantizer.upbound_factor" with shape [ranges, 1]), and back.
OmniQuantLayerParameters omniquant_layer_parameters(const OmniBlockParameters& parameters, const ModelConfig& config);
OmniBlockParameters omni_block_parameters(const OmniQuantLayerParameters& named, const ModelConfig& config);

// Writes `parameters` as OmniQuant's omni_parameters.pth ({layer: OrderedDict{name: tensor}},
// torch.save's format: io/torch_writer.h), atomically.
void save_omniquant_parameters(const OmniQuantParameters& parameters, const std::filesystem::path& path);

OmniQuantParameters calibrate_omniquant(Transformer& model, std::span<const int32_t> tokens,
                                        const OmniQuantCalibrationOptions& options);

}  // namespace cq
