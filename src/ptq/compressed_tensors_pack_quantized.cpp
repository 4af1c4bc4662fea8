// compressed-tensors' pack-quantized int4 layout (ptq/compressed_tensors_pack_quantized.h):
// packing, writing one linear, reading one back.
#include "ptq/compressed_tensors_pack_quantized.h"

#include <bit>
#include <cmath>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "io/safetensors.h"
#include "ptq/tensor_set.h"
#include "util/error.h"

namespace cq {

namespace {

int64_t words_for(int64_t count) { return (count + kCodesPerWord - 1) / kCodesPerWord; }

uint32_t nibble_of(int8_t code) {
  if (code < -kPackedCodeOffset || code >= kPackedCodeOffset)
    fail("internal error: int4 code {} is outside [-8, 7]", static_cast<int>(code));
  return static_cast<uint32_t>(code + kPackedCodeOffset);
}

int8_t code_of(uint32_t word, int64_t position) {
  const auto shift = static_cast<uint32_t>(position * kPackedBits);
  return static_cast<int8_t>(static_cast<int>((word >> shift) & 0xFu) - kPackedCodeOffset);
}

// Element (i, j) of a rows × cols matrix packed along `along_rows` (each row's columns) or
// along each column's rows: its word index in the packed matrix and its nibble position.
struct PackedPlace {
  size_t word;
  int64_t nibble;
};
PackedPlace place(int64_t i, int64_t j, int64_t rows, int64_t cols, bool along_rows) {
  (void)rows;
  if (along_rows) return {static_cast<size_t>(i * words_for(cols) + j / kCodesPerWord), j % kCodesPerWord};
  return {static_cast<size_t>((i / kCodesPerWord) * cols + j), i % kCodesPerWord};
}

std::vector<int32_t> pack(std::span<const int8_t> codes, int64_t rows, int64_t cols, bool along_rows) {
  if (codes.size() != static_cast<size_t>(rows * cols))
    fail("internal error: {} int4 codes for a {} x {} matrix", codes.size(), rows, cols);
  const size_t words = static_cast<size_t>(along_rows ? rows * words_for(cols) : words_for(rows) * cols);
  std::vector<uint32_t> packed(words, 0u);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const PackedPlace p = place(i, j, rows, cols, along_rows);
      packed[p.word] |= nibble_of(codes[static_cast<size_t>(i * cols + j)]) << static_cast<uint32_t>(p.nibble * kPackedBits);
    }
  std::vector<int32_t> result(words);
  for (size_t w = 0; w < words; ++w) result[w] = std::bit_cast<int32_t>(packed[w]);  // the bits as stored
  return result;
}

std::vector<int8_t> unpack(std::span<const int32_t> words, int64_t rows, int64_t cols, bool along_rows) {
  const size_t expected = static_cast<size_t>(along_rows ? rows * words_for(cols) : words_for(rows) * cols);
  if (words.size() != expected) fail("internal error: {} packed words for a {} x {} matrix, expected {}", words.size(), rows, cols, expected);
  std::vector<int8_t> codes(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const PackedPlace p = place(i, j, rows, cols, along_rows);
      codes[static_cast<size_t>(i * cols + j)] = code_of(std::bit_cast<uint32_t>(words[p.word]), p.nibble);
    }
  return codes;
}

const TensorInfo& tensor_with(const SafetensorsCheckpoint& checkpoint, const std::string& name, DType dtype,
                              const std::vector<int64_t>& shape, const char* meaning) {
  const TensorInfo& tensor = checkpoint.tensor(name);
  if (tensor.dtype != dtype)
    fail("{}: tensor '{}' has dtype {}, expected {} ({})", tensor.file.string(), name, dtype_name(tensor.dtype), dtype_name(dtype), meaning);
  if (tensor.shape != shape)
    fail("{}: tensor '{}' has shape [{}], expected [{}] ({})", tensor.file.string(), name, fmt::join(tensor.shape, ", "),
         fmt::join(shape, ", "), meaning);
  return tensor;
}

}  // namespace

std::vector<int32_t> pack_int4_rows(std::span<const int8_t> codes, int64_t rows, int64_t cols) { return pack(codes, rows, cols, true); }
std::vector<int8_t> unpack_int4_rows(std::span<const int32_t> words, int64_t rows, int64_t cols) { return unpack(words, rows, cols, true); }
std::vector<int32_t> pack_int4_columns(std::span<const int8_t> codes, int64_t rows, int64_t cols) { return pack(codes, rows, cols, false); }
std::vector<int8_t> unpack_int4_columns(std::span<const int32_t> words, int64_t rows, int64_t cols) {
  return unpack(words, rows, cols, false);
}

void add_pack_quantized_linear(TensorSet& tensors, const std::string& module, const QuantizedMatrix& q) {
  const bool grouped = q.group_size > 0;
  const bool asymmetric = !q.group_zeros.empty();
  if (q.bits != kPackedBits || !q.column_factors.empty() || q.tensor_scale != 0.f ||
      (grouped ? !q.row_scales.empty() || q.cols % q.group_size != 0 : q.row_scales.size() != static_cast<size_t>(q.rows)))
    fail("internal error: {}: not a 4-bit per-channel or whole-group weight grid", module);
  // cq's asymmetric codes and zeros are unsigned [0, 15]; the format's are signed: both − 8,
  // so (q − z) is unchanged. Symmetric codes are already signed ([-7, 7]).
  const int shift = asymmetric ? kPackedCodeOffset : 0;
  std::vector<int8_t> codes(q.codes.size());
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<int8_t>(q.codes[i] - shift);
  tensors.add(module + ".weight_packed", DType::I32, {q.rows, words_for(q.cols)}, pack_int4_rows(codes, q.rows, q.cols));
  tensors.add(module + ".weight_shape", DType::I64, {2}, std::vector<int64_t>{q.rows, q.cols});
  const int64_t groups = grouped ? q.cols / q.group_size : 1;
  tensors.add(module + ".weight_scale", DType::F32, {q.rows, groups}, grouped ? q.group_scales : q.row_scales);
  if (asymmetric) {
    std::vector<int8_t> zeros(q.group_zeros.size());
    for (size_t i = 0; i < zeros.size(); ++i) {
      // OmniQuant's LWC grid does not clamp its zero points to the code range; a 4-bit field
      // would wrap them silently.
      if (q.group_zeros[i] < 0 || q.group_zeros[i] > 15)
        fail("{}: zero point {} (row {}) lies outside the 4-bit range 0..15 that pack-quantized stores; this weight grid "
             "cannot be exported faithfully",
             module, q.group_zeros[i], static_cast<int64_t>(i) / (grouped ? q.cols / q.group_size : 1));
      zeros[i] = static_cast<int8_t>(q.group_zeros[i] - shift);
    }
    tensors.add(module + ".weight_zero_point", DType::I32, {words_for(q.rows), groups}, pack_int4_columns(zeros, q.rows, groups));
  }
}

std::vector<float> read_pack_quantized_linear(const SafetensorsCheckpoint& checkpoint, const std::string& module, int64_t out,
                                              int64_t in, int64_t group_size, bool asymmetric) {
  const int64_t groups = group_size > 0 ? in / group_size : 1;
  if (group_size > 0 && in % group_size != 0)
    fail("{}: {} has {} input columns, not a whole number of groups of {} (quantization_config group_size)",
         checkpoint.source().string(), module, in, group_size);
  const TensorInfo& shape_tensor = tensor_with(checkpoint, module + ".weight_shape", DType::I64, {2}, "the unpacked {out, in}");
  if (const std::vector<int64_t> shape = i64_values(shape_tensor); shape != std::vector<int64_t>{out, in})
    fail("{}: tensor '{}' is [{}], but the model's {} is {} x {}", shape_tensor.file.string(), shape_tensor.name, fmt::join(shape, ", "),
         module, out, in);
  const TensorInfo& packed = tensor_with(checkpoint, module + ".weight_packed", DType::I32, {out, words_for(in)},
                                         "eight int4 codes per word along each row");
  const TensorInfo& scale_tensor = checkpoint.tensor(module + ".weight_scale");
  if (scale_tensor.shape != std::vector<int64_t>{out, groups})
    fail("{}: tensor '{}' has shape [{}], expected [{}, {}] (one scale per {})", scale_tensor.file.string(), scale_tensor.name,
         fmt::join(scale_tensor.shape, ", "), out, groups, group_size > 0 ? "group" : "output channel");
  const std::vector<float> scales = to_f32(scale_tensor);
  for (size_t s = 0; s < scales.size(); ++s)
    if (!(std::isfinite(scales[s]) && scales[s] > 0.f))
      fail("{}: tensor '{}': element {} is {}, expected a finite scale > 0", scale_tensor.file.string(), scale_tensor.name, s, scales[s]);
  std::vector<int8_t> zeros;
  const std::string zero_name = module + ".weight_zero_point";
  if (asymmetric) {
    const TensorInfo& zero_tensor =
        tensor_with(checkpoint, zero_name, DType::I32, {words_for(out), groups}, "int4 zero points packed along the output channels");
    zeros = unpack_int4_columns(i32_values(zero_tensor), out, groups);
  } else if (checkpoint.contains(zero_name)) {
    fail("{}: tensor '{}' is present, but the scheme is symmetric (no zero point)", checkpoint.tensor(zero_name).file.string(), zero_name);
  }
  const std::vector<int8_t> codes = unpack_int4_rows(i32_values(packed), out, in);
  std::vector<float> values(codes.size());
  const int64_t columns_per_scale = group_size > 0 ? group_size : in;
  for (int64_t k = 0; k < out; ++k)
    for (int64_t j = 0; j < in; ++j) {
      const auto slot = static_cast<size_t>(k * groups + j / columns_per_scale);
      float value = static_cast<float>(codes[static_cast<size_t>(k * in + j)]);
      if (asymmetric) value -= static_cast<float>(zeros[slot]);
      values[static_cast<size_t>(k * in + j)] = value * scales[slot];
    }
  return values;
}

}  // namespace cq
