#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "util/error.h"
#include "util/interrupt.h"
#include "util/parallel.h"
#include "util/text_file.h"

namespace cq {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
  }
  return "?";
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::I64: return 8;
    case DType::F32:
    case DType::I32: return 4;
    case DType::F16:
    case DType::BF16: return 2;
    case DType::I8:
    case DType::U8: return 1;
  }
  return 0;
}

bool is_integer(DType dtype) {
  return dtype == DType::I8 || dtype == DType::U8 || dtype == DType::I32 || dtype == DType::I64;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path.string(), std::strerror(errno));
  struct stat info{};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path.string());
  }
  size_ = static_cast<size_t>(info.st_size);
  if (size_ > 0) {
    void* mapping = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (mapping == MAP_FAILED) {
      ::close(fd);
      fail("{}: mmap failed: {}", path.string(), std::strerror(errno));
    }
    data_ = static_cast<const std::byte*>(mapping);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

namespace {

constexpr DType kDTypes[] = {DType::F32, DType::F16, DType::BF16, DType::I8, DType::U8, DType::I32, DType::I64};
// The overflow check of a header's shape assumes no element is wider than this.
constexpr uint64_t kWidestDTypeBytes = 8;

DType parse_dtype(const std::string& text, const std::filesystem::path& file, const std::string& name) {
  for (DType dtype : kDTypes)
    if (text == dtype_name(dtype)) return dtype;
  fail("{}: tensor '{}' has dtype '{}'; supported dtypes are F32, F16, BF16, I8, U8, I32 and I64", file.string(), name, text);
}

void check_dtype(const TensorInfo& tensor, DType expected) {
  if (tensor.dtype != expected)
    fail("{}: tensor '{}' has dtype {}, expected {}", tensor.file.string(), tensor.name, dtype_name(tensor.dtype),
         dtype_name(expected));
}

uint64_t read_u64_le(const std::byte* p) {
  uint64_t value = 0;
  std::memcpy(&value, p, sizeof value);
  static_assert(std::endian::native == std::endian::little, "safetensors is little-endian");
  return value;
}

}  // namespace

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::filesystem::path& path) : source_(path) {
  namespace fs = std::filesystem;
  fs::path index_path;
  fs::path single_path;
  if (fs::is_directory(path)) {
    if (fs::exists(path / "model.safetensors.index.json")) index_path = path / "model.safetensors.index.json";
    else if (fs::exists(path / "model.safetensors")) single_path = path / "model.safetensors";
    else fail("{}: no model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json", path.string());
  } else if (path.extension() == ".json") {
    index_path = path;
  } else {
    single_path = path;
  }
  if (!single_path.empty()) {
    add_file(single_path);
    return;
  }
  const nlohmann::json index = read_json_file(index_path);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail("{}: no \"weight_map\" object", index_path.string());
  std::map<std::string, std::vector<std::string>> names_by_file;
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string()) fail("{}: weight_map entry '{}' is not a file name", index_path.string(), name);
    const std::string shard = file.get<std::string>();
    if (shard.find('/') != std::string::npos || shard == "..")
      fail("{}: weight_map entry '{}' names '{}' outside the directory", index_path.string(), name, shard);
    names_by_file[shard].push_back(name);
  }
  for (const auto& [shard, names] : names_by_file) {
    add_file(index_path.parent_path() / shard);
    for (const auto& name : names)
      if (!tensors_.count(name))
        fail("{}: index lists tensor '{}' in '{}', which does not contain it", index_path.string(), name, shard);
  }
}

SafetensorsCheckpoint::SafetensorsCheckpoint(LoadedTensors loaded)
    : source_(std::move(loaded.source)), files_(std::move(loaded.files)), copies_(std::move(loaded.copies)),
      tensors_(std::move(loaded.tensors)) {}

void SafetensorsCheckpoint::add_file(const std::filesystem::path& file) {
  auto mapped = std::make_unique<MappedFile>(file);
  const std::string where = file.string();
  if (mapped->size() < 8) fail("{}: truncated: {} bytes, shorter than the 8-byte header length", where, mapped->size());
  const uint64_t header_bytes = read_u64_le(mapped->data());
  if (header_bytes > kMaxSafetensorsHeaderBytes)
    fail("{}: header claims {} bytes (limit {}); not a safetensors file or corrupt", where, header_bytes, kMaxSafetensorsHeaderBytes);
  if (header_bytes > mapped->size() - 8)
    fail("{}: truncated: header claims {} bytes but the file has {}", where, header_bytes, mapped->size() - 8);
  const char* header_text = reinterpret_cast<const char*>(mapped->data() + 8);
  nlohmann::json header;
  // Tensor names are the header's top-level keys: refuse a name given twice (nlohmann would
  // silently keep the last one) and stop counting early, while parsing, past the tensor limit.
  std::unordered_set<std::string> names;
  const nlohmann::json::parser_callback_t check_names = [&](int depth, nlohmann::json::parse_event_t event,
                                                            nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1) {
      if (names.size() > kMaxTensorsPerFile)  // + 1 for __metadata__
        fail("{}: header lists more than {} tensors (limit {})", where, kMaxTensorsPerFile, kMaxTensorsPerFile);
      if (!names.insert(parsed.get<std::string>()).second)
        fail("{}: header lists tensor '{}' twice", where, parsed.get<std::string>());
    }
    return true;
  };
  try {
    header = nlohmann::json::parse(header_text, header_text + header_bytes, check_names);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed safetensors header: {}", where, e.what());
  }
  if (!header.is_object()) fail("{}: safetensors header is not a JSON object", where);
  if (header.size() > kMaxTensorsPerFile) fail("{}: header lists {} tensors (limit {})", where, header.size(), kMaxTensorsPerFile);
  const std::byte* data_start = mapped->data() + 8 + header_bytes;
  const uint64_t data_bytes = mapped->size() - 8 - header_bytes;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets") ||
        !entry["dtype"].is_string() || !entry["shape"].is_array() || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2)
      fail("{}: tensor '{}': header entry needs string dtype, shape array and two data_offsets", where, name);
    TensorInfo info;
    info.name = name;
    info.file = file;
    info.dtype = parse_dtype(entry["dtype"].get<std::string>(), file, name);
    uint64_t numel = 1;
    for (const auto& dim : entry["shape"]) {
      if (!dim.is_number_integer() || dim.get<int64_t>() < 0)
        fail("{}: tensor '{}': shape {} has a negative or non-integer dimension", where, name, entry["shape"].dump());
      const auto d = dim.get<uint64_t>();
      if (d != 0 && numel > std::numeric_limits<uint64_t>::max() / kWidestDTypeBytes / d)
        fail("{}: tensor '{}': shape {} overflows", where, name, entry["shape"].dump());
      numel *= d;
      info.shape.push_back(static_cast<int64_t>(d));
    }
    const auto& offsets = entry["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      fail("{}: tensor '{}': data_offsets must be non-negative integers", where, name);
    const auto begin = offsets[0].get<uint64_t>();
    const auto end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_bytes)
      fail("{}: tensor '{}': data_offsets [{}, {}] point outside the data section ({} bytes){}", where, name, begin, end,
           data_bytes, end > data_bytes ? "; the file is truncated or corrupt" : "");
    if (end - begin != numel * dtype_size(info.dtype))
      fail("{}: tensor '{}': {} bytes for shape {} of {} (expected {})", where, name, end - begin,
           entry["shape"].dump(), dtype_name(info.dtype), numel * dtype_size(info.dtype));
    info.data = data_start + begin;
    info.bytes = end - begin;
    ranges.emplace_back(begin, end);
    if (!tensors_.emplace(name, std::move(info)).second)
      fail("{}: tensor '{}' appears in more than one file", where, name);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) fail("{}: tensors overlap in the data section", where);
  files_.push_back(std::move(mapped));
}

const TensorInfo& SafetensorsCheckpoint::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail("{}: missing tensor '{}'", source_.string(), name);
  return it->second;
}

const TensorInfo& SafetensorsCheckpoint::tensor(const std::string& name, const std::vector<int64_t>& expected_shape) const {
  const TensorInfo& info = tensor(name);
  if (info.shape != expected_shape) {
    auto show = [](const std::vector<int64_t>& s) { return nlohmann::json(s).dump(); };
    fail("{}: tensor '{}' has shape {}, config.json implies {}", info.file.string(), name, show(info.shape),
         show(expected_shape));
  }
  return info;
}

DType SafetensorsCheckpoint::dominant_dtype() const {
  std::map<DType, int64_t> count;
  for (const auto& [name, info] : tensors_) count[info.dtype] += info.numel();
  DType best = DType::F32;
  int64_t best_count = -1;
  for (const auto& [dtype, n] : count)
    if (n > best_count) best = dtype, best_count = n;
  return best;
}

uint64_t SafetensorsCheckpoint::file_bytes() const {
  uint64_t total = 0;
  for (const auto& file : files_) total += file->size();
  return total;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int shift = 0;
      while ((mantissa & 0x400) == 0) mantissa <<= 1, ++shift;
      mantissa &= 0x3ff;
      bits = sign | ((127 - 15 + 1 - shift) << 23 | (mantissa << 13));
    }
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(bits);
}

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

uint16_t f32_to_bf16(float f) {
  uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN stays NaN
  bits += 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

uint16_t f32_to_f16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  const uint32_t magnitude = bits & 0x7fffffff;
  if (magnitude > 0x7f800000) return static_cast<uint16_t>(sign | 0x7e00);
  if (magnitude >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // overflow to Inf
  if (magnitude < 0x38800000) {
    // Half subnormal (or the smallest normal after rounding): scaling by 2^24 is exact,
    // and nearbyint rounds half to even.
    const float units = std::nearbyint(std::bit_cast<float>(magnitude) * 16777216.0f);
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(units));
  }
  uint32_t rounded = magnitude - 0x38000000;  // rebias exponent 127 -> 15
  rounded += 0xfff + ((rounded >> 13) & 1);
  return static_cast<uint16_t>(sign | (rounded >> 13));
}

void convert_to_f32(const TensorInfo& tensor, int64_t offset, int64_t count, float* out) {
  if (is_integer(tensor.dtype))
    fail("{}: tensor '{}' holds {} integers, not floating-point values (quantization codes are read with their scales)",
         tensor.file.string(), tensor.name, dtype_name(tensor.dtype));
  if (count <= 0) return;  // out may be null for an empty tensor (memcpy(nullptr, ..., 0) is UB)
  switch (tensor.dtype) {
    case DType::F32:
      std::memcpy(out, tensor.data + offset * 4, static_cast<size_t>(count) * 4);
      return;
    case DType::F16:
    case DType::BF16: {
      const std::byte* src = tensor.data + offset * 2;
      const bool is_bf16 = tensor.dtype == DType::BF16;
      for (int64_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, src + i * 2, 2);
        out[i] = is_bf16 ? bf16_to_f32(h) : f16_to_f32(h);
      }
      return;
    }
    case DType::I8:
    case DType::U8:
    case DType::I32:
    case DType::I64: return;  // refused above
  }
}

std::vector<float> to_f32(const TensorInfo& tensor) {
  std::vector<float> out(static_cast<size_t>(tensor.numel()));
  convert_to_f32(tensor, 0, tensor.numel(), out.data());
  return out;
}

std::span<const int8_t> i8_values(const TensorInfo& tensor) {
  check_dtype(tensor, DType::I8);
  return {reinterpret_cast<const int8_t*>(tensor.data), tensor.bytes};
}

std::span<const uint8_t> u8_values(const TensorInfo& tensor) {
  check_dtype(tensor, DType::U8);
  return {reinterpret_cast<const uint8_t*>(tensor.data), tensor.bytes};
}

std::vector<int32_t> i32_values(const TensorInfo& tensor) {
  check_dtype(tensor, DType::I32);
  std::vector<int32_t> values(tensor.bytes / sizeof(int32_t));
  if (!values.empty()) std::memcpy(values.data(), tensor.data, tensor.bytes);
  return values;
}

std::vector<int64_t> i64_values(const TensorInfo& tensor) {
  check_dtype(tensor, DType::I64);
  std::vector<int64_t> values(tensor.bytes / sizeof(int64_t));
  if (!values.empty()) std::memcpy(values.data(), tensor.data, tensor.bytes);
  return values;
}

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  if (!parallel::writes_outputs()) return;  // in an MPI job, rank 0 writes every output
  // Wider dtypes first: every tensor's size is a multiple of its element size, so each
  // starts aligned to it when the section is in order of decreasing element size.
  std::vector<const TensorToWrite*> order;
  for (const auto& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    if (t.bytes.size() != static_cast<uint64_t>(numel) * dtype_size(t.dtype))
      fail("{}: tensor '{}': {} bytes for {} elements of {}", path.string(), t.name, t.bytes.size(), numel, dtype_name(t.dtype));
    order.push_back(&t);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const TensorToWrite* a, const TensorToWrite* b) { return dtype_size(a->dtype) > dtype_size(b->dtype); });
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorToWrite* t : order) {
    header[t->name] = {{"dtype", dtype_name(t->dtype)}, {"shape", t->shape}, {"data_offsets", {offset, offset + t->bytes.size()}}};
    offset += t->bytes.size();
  }
  std::string header_text = header.dump();
  while ((8 + header_text.size()) % 8 != 0) header_text.push_back(' ');  // align the data section
  std::filesystem::path temporary = path;
  temporary += fmt::format(".tmp.{}", ::getpid());
  const PendingTemporary pending(temporary);  // removed if the run is interrupted
  std::FILE* file = std::fopen(temporary.c_str(), "wb");
  if (!file) fail("{}: cannot create: {}", temporary.string(), std::strerror(errno));
  uint64_t header_length = header_text.size();
  bool ok = std::fwrite(&header_length, 8, 1, file) == 1 &&
            std::fwrite(header_text.data(), 1, header_text.size(), file) == header_text.size();
  for (const TensorToWrite* t : order)
    ok = ok && (t->bytes.empty() || std::fwrite(t->bytes.data(), 1, t->bytes.size(), file) == t->bytes.size());
  ok = ok && std::fflush(file) == 0;
  ok = (std::fclose(file) == 0) && ok;
  if (!ok) {
    std::remove(temporary.c_str());
    fail("{}: write failed: {}", path.string(), std::strerror(errno));
  }
  std::filesystem::rename(temporary, path);
}

}  // namespace cq
