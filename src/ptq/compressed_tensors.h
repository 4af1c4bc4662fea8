#pragma once
// The compressed-tensors format (vllm-project/compressed-tensors, what llm-compressor writes
// and vLLM serves): `cq export --format compressed-tensors` writes it, and `load_model`
// reads it back (docs/EXPORT.md).
//
// What is written, for a W8A8 export ("int-quantized"):
//   <m>.weight        I8  [out][in]  symmetric codes in [-127, 127]
//   <m>.weight_scale  F32 [out][1]   per output channel; the weight is code * scale
//   <m>.bias, norms, embeddings, positions, lm_head: F32 as the model computes with them
//     (SmoothQuant / static CrossQuant factors folded into norms and linears)
// config.json's quantization_config: one config group targeting "Linear" with int8
// per-channel symmetric static weights and int8 per-token symmetric dynamic input
// activations, lm_head ignored, quantization_status "compressed".
// Weight-only int4 (W4A16: RTN, AWQ, GPTQ; group-wise or per-channel, zero points for
// asymmetric groups) is written "pack-quantized" (ptq/compressed_tensors_pack_quantized.h),
// with no input_activations.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include "quant/checkpoint_format.h"
#include "quant/quant_config.h"

namespace cq {

class Transformer;
class WeightSource;

inline constexpr const char* kCompressedTensorsMethod = "compressed-tensors";
// The compressed-tensors release whose config layout the export follows (its "version").
inline constexpr const char* kCompressedTensorsVersion = "0.18.0";

// Why `config` has no faithful compressed-tensors export; empty when it has one.
std::string compressed_tensors_refusal(const QuantConfig& config);
// Whether `config` exports as pack-quantized W4A16 (weight-only int4).
bool exports_pack_quantized(const QuantConfig& config);
// Why `model`'s shapes cannot hold `config`'s export (a linear whose input size is not a
// whole number of groups, ...), naming the layer; empty when they can.
std::string compressed_tensors_shape_refusal(const Transformer& model, const QuantConfig& config);

// Applies `config` to `model` (an ordinary checkpoint, unquantized) in the form the export
// needs, folds every scaling into the weights and norms, quantizes the weights and writes
// out_dir (model.safetensors, config.json, tokenizer and generation files), every file
// through a temporary directory renamed into place. Throws cq::Error with the refusal for
// settings that have no faithful export.
void export_compressed_tensors(Transformer& model, const QuantConfig& config, std::span<const int32_t> calibration_tokens,
                               const std::filesystem::path& out_dir);

// Whether model_dir/config.json declares quantization_config.quant_method
// "compressed-tensors".
bool is_compressed_tensors_directory(const std::filesystem::path& model_dir);

// A compressed-tensors directory's weights: each quantized linear given to the decoder as
// code * scale (pack-quantized: (code − zero point) * scale), everything else as stored.
// Validates the quantization_config (only the schemes cq can run: int8 per-channel
// symmetric weights with int8 per-token dynamic activations or none; pack-quantized int4
// group-wise or per-channel weights without activation quantization) and each weight's
// dtype, shape and code range; errors name the file and the tensor.
std::unique_ptr<WeightSource> open_compressed_tensors_weights(const std::filesystem::path& model_dir);
// The setting a compressed-tensors WeightSource's quantization_config describes (what
// load_model's stored_quantization reports); nullptr for any other source.
const StoredQuantization* compressed_tensors_quantization(const WeightSource& weights);

}  // namespace cq
