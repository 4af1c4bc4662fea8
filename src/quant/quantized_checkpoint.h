#pragma once
// Quantized checkpoints written by `cq quantize`: a Hugging Face model directory that any
// `cq` command loads directly.
//
// Format (docs/BASELINES.md): model.safetensors holds every tensor of the source model in
// FP32 with the transformation folded in (SmoothQuant / AWQ scales in the norms and
// linears, AWQ clipping), and each decoder linear weight stored as its dequantized grid
// values (codes − zero)·scale. Beside each such weight, `<module>.weight_scale` [out][groups]
// and, for asymmetric group-wise weights, `<module>.weight_zero` [out][groups] hold the
// quantizer's scales and zero points, so the integer codes are exactly round(w / scale) + zero
// (checked on load). Static activation scales, when used, are stored as
// `quantization.layers.<l>.<site>.input_absmax`. config.json carries `quantization_config`
// (method, bits, group size, α values, calibration, the SmoothQuant/AWQ settings and the
// sha256 of model.safetensors, verified on load). Files are written atomically.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/transformer.h"
#include "quant/quant_config.h"

namespace cq {

// `model` has been transformed (apply_transformation) but its weights not quantized.
// Quantizes them with the config's weight quantizer and writes out_dir/{model.safetensors,
// config.json} plus the source directory's tokenizer and generation files.
void write_quantized_checkpoint(Transformer& model, const QuantConfig& config, const QuantizationRecord& record,
                                const std::vector<std::vector<float>>& static_absmax, const std::filesystem::path& out_dir);

struct StoredQuantization {
  QuantConfig config;
  std::vector<std::vector<float>> static_absmax;  // empty unless static activation scales
};

// The settings of a config.json's `quantization_config` object (`where` names the file in
// messages), validated. Throws cq::Error when it is not an object of this format (with its
// weights checksum) or a setting is missing, mistyped or out of range.
QuantConfig parse_quantization_config(const nlohmann::json& quantization_config, const std::string& where);

// The quantization stored in a model directory written by write_quantized_checkpoint, or
// nullopt for an ordinary checkpoint. Throws cq::Error for a tampered or inconsistent one.
std::optional<StoredQuantization> read_quantized_checkpoint(const Transformer& model);

}  // namespace cq
