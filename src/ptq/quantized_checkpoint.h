#pragma once
// Writing quantized checkpoints (`cq quantize`; the format is quant/checkpoint_format.h) and
// loading any model directory, ordinary or quantized, for the decoder.
#include <cstdint>
#include <filesystem>
#include <vector>

#include "ptq/apply_quantization.h"
#include "quant/checkpoint_format.h"
#include "quant/quant_config.h"

namespace cq {

class Transformer;

// `model` has been transformed (apply_transformation) but its weights not quantized.
// Quantizes them with the config's weight quantizer (the model keeps the dequantized values)
// and writes out_dir/{model.safetensors, config.json} plus the source directory's tokenizer
// and generation files.
void write_quantized_checkpoint(Transformer& model, const QuantConfig& config, const QuantizationRecord& record,
                                const std::vector<std::vector<float>>& static_absmax, const std::filesystem::path& out_dir);

// A model directory as every `cq` command loads it: an ordinary checkpoint, or one `cq
// quantize` wrote (verified on opening; each linear weight then given to the decoder as the
// values its codes stand for, one tensor at a time). Throws cq::Error naming the file.
Transformer load_model(const std::filesystem::path& model_dir);
// What a quantized checkpoint loaded by load_model stores about its quantization; nullptr
// for an ordinary checkpoint (or a model not loaded by load_model).
const StoredQuantization* stored_quantization(const Transformer& model);

// Static activation maxima of a quantized checkpoint's model, per (layer * kInputSites +
// site); empty unless its activation scales are static.
std::vector<std::vector<float>> read_static_absmax(const Transformer& model);

}  // namespace cq
