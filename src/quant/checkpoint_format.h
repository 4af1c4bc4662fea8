#pragma once
// Quantized checkpoints written by `cq quantize`: a Hugging Face model directory that every
// `cq` command loads directly (format "crossquant-quantized", versions 2 and 3; docs/BASELINES.md).
//
// model.safetensors holds, for each decoder linear layer `<m>` (out × in):
//   <m>.weight               integer codes: I8 [out][in] (symmetric, bits 5..8), U8 [out][in]
//                            (asymmetric, bits 5..8), or U8 [out][ceil(in/2)] (bits <= 4: two
//                            codes a byte, see pack_nibbles)
//   <m>.weight_shape         I32 [2] = {out, in}, the logical shape (packed codes only)
//   <m>.weight_scale         F32 [out][groups] (group-wise) or [out][1] (per-channel, CrossQuant)
//   <m>.weight_zero          U8 [out][groups] (asymmetric group-wise only); I32 [out][groups]
//                            for OmniQuant (version 3: its zero points are not clamped to
//                            the codes; groups = 1 per output channel)
//   <m>.weight_column_factor F32 [in] (CrossQuant weights: c_j^(1−α_W))
//   <m>.bias                 F32 [out] where the model has a bias, and (version 3) where a
//                            transformation added one (quantization_config.added_biases)
// Everything else in F32 with the transformation folded in (SmoothQuant / AWQ scales in
// norms, biases and embeddings as they are), and static activation maxima, when used, as
// `quantization.layers.<l>.<site>.input_absmax`. config.json carries quantization_config
// (method, bits, granularity, group size, symmetry, packing, α values, activation scheme,
// calibration, format version, FNV-1a-64 checksum of model.safetensors). Every file is
// written atomically.
//
// This file is the format: its constants, the layout of stored codes, and reading it back
// (validated). It depends on io/ and on the quantization layer's own types only; writing
// a checkpoint, and serving its weights to the model, is src/ptq/quantized_checkpoint.h.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "quant/quant_config.h"
#include "quant/quantizer.h"

namespace cq {

inline constexpr const char* kQuantizedCheckpointFormat = "crossquant-quantized";
// Version 3 adds OmniQuant's weights (I32 zero points, added biases); cq writes the lowest
// version that holds a checkpoint (checkpoint_format_version), so version-2 readers keep
// reading everything else, and reads both.
inline constexpr int kQuantizedCheckpointVersion = 3;
inline constexpr int kOldestQuantizedCheckpointVersion = 2;
// quantization_config's activation "scales" values.
inline constexpr const char* kStaticScales = "static (calibrated)";
inline constexpr const char* kDynamicScales = "dynamic (per window)";

// OmniQuant's weights (its LWC grid, quant/omniquant_grid.h): asymmetric codes 0..2^b − 1
// per output channel or group, zero points in I32 (OmniQuant bounds them to ±1e4, not to the
// codes), scales within its clamp [1e-5, 1e4].
bool stores_omniquant_grid(const QuantConfig& config);
inline constexpr int kOmniQuantZeroPointBound = 10000;
// The format version a checkpoint of `config` is written with (3 for OmniQuant, else 2).
int checkpoint_format_version(const QuantConfig& config);

// How one quantized weight's codes are stored, from its bits and symmetry.
struct StoredCodeLayout {
  bool packed = false;  // bits <= 4: two codes a byte (pack_nibbles)
  DType dtype = DType::I8;
  int min_code = 0, max_code = 0;
  int nibble_offset = 0;  // packed: nibble = code + offset
  DType zero_dtype = DType::U8;  // asymmetric: U8 within the codes; OmniQuant: I32, unclamped

  static StoredCodeLayout of(const QuantConfig& config);
  std::vector<int64_t> shape(int64_t out, int64_t in) const { return {out, packed ? (in + 1) / 2 : in}; }
  std::string describe() const;
};

// Scale groups per row of a weight with `in` input channels (1 unless group-wise).
int64_t groups_per_row(const QuantConfig& config, int64_t in);

struct StoredQuantization {
  QuantConfig config;                  // as `cq quantize` was given it (engine "fake")
  std::filesystem::path weights_file;  // model_dir/model.safetensors, for messages
  int format_version = kQuantizedCheckpointVersion;
  // Linears (module names) that have a bias only because the transformation added one
  // (OmniQuant's LET shifts): the loader reads `<m>.bias` for them, and refuses it missing.
  std::vector<std::string> added_biases;
  // Another format's codes (a compressed-tensors export, ptq/compressed_tensors.h): the
  // weights are served as values only; the integer engine does not read them.
  bool served_as_values = false;
};

// The settings of a config.json's `quantization_config` object (format, version and every
// field checked; `where` names the file in errors). Throws cq::Error.
QuantConfig parse_quantization_config(const nlohmann::json& quantization_config, const std::string& where);

// The quantization_config of model_dir/config.json, or nullptr for an ordinary checkpoint.
// Throws cq::Error for another format or version, a malformed config, or weights whose
// checksum differs from the recorded one (modified or corrupted after `cq quantize`).
std::shared_ptr<const StoredQuantization> read_stored_quantization(const std::filesystem::path& model_dir);

// A tensor of the checkpoint with the dtype and shape the format prescribes (`role` names
// it in errors).
const TensorInfo& stored_tensor(const SafetensorsCheckpoint& checkpoint, const StoredQuantization& stored,
                                const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                                const std::string& role);

// The codes and scales of the quantized weight `module`.weight (out × in), validated:
// dtypes and shapes, codes within the range of the stored bits, scales finite and positive.
// dequantized() gives the values the fake-quantization path computes, bit for bit. Errors
// name the file and the tensor.
QuantizedMatrix read_stored_weight(const SafetensorsCheckpoint& checkpoint, const StoredQuantization& stored,
                                   const std::string& module, int64_t out, int64_t in);

// Static CrossQuant checkpoints (folds_static_columns): the f_j = c_j^(1−α) that `module`'s
// codes were quantized with, Q(W·diag(f)); empty for other checkpoints (and then refused if
// present).
std::vector<float> read_stored_column_divisors(const SafetensorsCheckpoint& checkpoint, const StoredQuantization& stored,
                                               const std::string& module, int64_t in);
// The FP32 weight the fake path computes with: dequantized codes, divided by the column
// divisors of a static CrossQuant checkpoint.
std::vector<float> read_stored_weight_values(const SafetensorsCheckpoint& checkpoint, const StoredQuantization& stored,
                                             const std::string& module, int64_t out, int64_t in);

// Tensors that describe quantized weights rather than being parameters (scales, zeros,
// shapes, column factors, activation maxima).
bool is_quantization_metadata(const std::string& name);

// Codes of <= 4 bits, two a byte, row by row: byte b of row i holds column 2b in its low
// nibble and column 2b + 1 in its high nibble; an odd column count leaves the last high
// nibble 0. Nibble = code + offset (offset 8 for symmetric codes, 0 for asymmetric ones).
std::vector<uint8_t> pack_nibbles(std::span<const int16_t> codes, int64_t rows, int64_t cols, int offset);

// FNV-1a, 64 bits, of a file, as quantization_config's weights_checksum records it.
std::string file_checksum(const std::filesystem::path& path);

}  // namespace cq
