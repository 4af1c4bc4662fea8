#pragma once
// compressed-tensors' "pack-quantized" layout for weight-only int4 linears (W4A16), as its
// PackedQuantizationCompressor writes it and vLLM's WNA16 scheme reads it (docs/EXPORT.md):
//   <m>.weight_packed      I32 [out][ceil(in / 8)]    eight 4-bit codes per word
//   <m>.weight_shape       I64 [2] = {out, in}        the unpacked shape
//   <m>.weight_scale       F32 [out][in / g]          one step per group ([out][1]: per channel)
//   <m>.weight_zero_point  I32 [ceil(out / 8)][in / g]  asymmetric only, packed along the rows
// Codes q and zero points z are signed, in [-8, 7]; the weight is (q - z) * scale (z = 0 when
// symmetric). Packing: along the packed dimension element e goes to word e / 8, bits
// 4·(e mod 8) … 4·(e mod 8) + 3 (the first element in the least significant nibble), stored
// as q + 8; a last word is zero-padded.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "quant/quantizer.h"

namespace cq {

class TensorSet;
class SafetensorsCheckpoint;

inline constexpr int kPackedBits = 4;
inline constexpr int64_t kCodesPerWord = 32 / kPackedBits;
inline constexpr int kPackedCodeOffset = 1 << (kPackedBits - 1);  // stored nibble = q + 8

// rows × cols signed codes in [-8, 7], packed along each row: rows × ceil(cols / 8) words.
std::vector<int32_t> pack_int4_rows(std::span<const int8_t> codes, int64_t rows, int64_t cols);
std::vector<int8_t> unpack_int4_rows(std::span<const int32_t> words, int64_t rows, int64_t cols);
// Packed along each column (the zero points): ceil(rows / 8) × cols words.
std::vector<int32_t> pack_int4_columns(std::span<const int8_t> codes, int64_t rows, int64_t cols);
std::vector<int8_t> unpack_int4_columns(std::span<const int32_t> words, int64_t rows, int64_t cols);

// Adds linear `module`'s pack-quantized tensors for `q`, a 4-bit per-channel (symmetric) or
// group-wise (symmetric, or asymmetric with codes and zeros in [0, 15]) QuantizedMatrix.
void add_pack_quantized_linear(TensorSet& tensors, const std::string& module, const QuantizedMatrix& q);

// The FP32 weight (out × in) linear `module` of a pack-quantized checkpoint stands for, in
// QuantizedMatrix::dequantize's arithmetic ((q − z) · scale). group_size 0: per channel.
// Validates dtypes, shapes and weight_shape; errors name the file and the tensor.
std::vector<float> read_pack_quantized_linear(const SafetensorsCheckpoint& checkpoint, const std::string& module, int64_t out,
                                              int64_t in, int64_t group_size, bool asymmetric);

}  // namespace cq
