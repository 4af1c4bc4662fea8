#pragma once
// Read-only, memory-mapped safetensors checkpoints (single file or sharded through
// model.safetensors.index.json). Tensors stay in their stored dtype in the mapping;
// callers convert what they need, when they need it. Floating-point tensors (F32, F16,
// BF16) are model values; integer tensors (I8, U8, I32, I64) are what quantized checkpoints
// store beside them (codes, zero points, shapes) and are read as integers only.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace cq {

enum class DType { F32, F16, BF16, I8, U8, I32, I64 };
const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);
bool is_integer(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;  // inside the mapping
  size_t bytes = 0;
  std::filesystem::path file;       // for error messages
  int64_t numel() const;
};

// One mapped file; the mapping lives as long as the object.
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Tensors another reader located (io/torch_checkpoint: a PyTorch checkpoint): they point into
// `files`, which stay mapped, or into `copies` (tensors whose strides had to be gathered).
struct LoadedTensors {
  std::filesystem::path source;
  std::vector<std::unique_ptr<MappedFile>> files;
  std::vector<std::vector<std::byte>> copies;
  std::map<std::string, TensorInfo> tensors;
};

// The mapped tensors of a checkpoint; despite the name also those of a PyTorch checkpoint
// (built from LoadedTensors), so that every consumer reads one type.
class SafetensorsCheckpoint {
 public:
  // `path` is a model directory, a .safetensors file, or an index .json file.
  explicit SafetensorsCheckpoint(const std::filesystem::path& path);
  explicit SafetensorsCheckpoint(LoadedTensors loaded);

  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws cq::Error naming the checkpoint when the tensor is missing.
  const TensorInfo& tensor(const std::string& name) const;
  // Same, and checks the shape; throws naming the file, tensor, expected and actual shape.
  const TensorInfo& tensor(const std::string& name, const std::vector<int64_t>& expected_shape) const;
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  // The dtype most parameters are stored in (for `cq info`).
  DType dominant_dtype() const;
  uint64_t file_bytes() const;
  const std::filesystem::path& source() const { return source_; }

 private:
  void add_file(const std::filesystem::path& file);
  std::filesystem::path source_;
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::vector<std::vector<std::byte>> copies_;
  std::map<std::string, TensorInfo> tensors_;
};

// Converts `count` elements of a stored floating-point tensor (from element `offset`) to
// float32. Integer tensors are refused (cq::Error naming file and tensor): codes mean
// nothing without their scales, so they never pass for weights.
void convert_to_f32(const TensorInfo& tensor, int64_t offset, int64_t count, float* out);
std::vector<float> to_f32(const TensorInfo& tensor);
// The values of an integer tensor; cq::Error naming file and tensor for any other dtype.
// I8/U8 are views into the mapping; I32 is copied (the mapping need not be aligned).
std::span<const int8_t> i8_values(const TensorInfo& tensor);
std::span<const uint8_t> u8_values(const TensorInfo& tensor);
std::vector<int32_t> i32_values(const TensorInfo& tensor);
std::vector<int64_t> i64_values(const TensorInfo& tensor);  // copied, as I32

// Limits on what a header may claim, so a corrupt or hostile file is refused early.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;  // 100 MB
inline constexpr size_t kMaxTensorsPerFile = 1'000'000;

// Writes tensors (already in the given dtype's bytes) as one safetensors file, atomically.
// The data section holds them without gaps (as the safetensors format requires), wider
// dtypes first so that every I64 tensor starts 8-byte and every F32 / I32 tensor 4-byte aligned.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;
};
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// IEEE half / bfloat16 conversions (round-to-nearest-even on the way down).
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
uint16_t f32_to_bf16(float f);

}  // namespace cq
