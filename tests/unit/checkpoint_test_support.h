#pragma once
// Reading and editing a quantized checkpoint's files independently of cq's loader: the
// safetensors layout parsed by hand, config.json, and edits that update weights_checksum so
// that they reach the loader's tensor checks.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "util/text_file.h"

namespace cq::test {

struct RawTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Parses the safetensors layout directly: 8-byte little-endian length, JSON header, data.
inline std::map<std::string, RawTensor> read_raw_tensors(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  uint64_t header_length = 0;
  in.read(reinterpret_cast<char*>(&header_length), 8);
  std::string header_text(header_length, '\0');
  in.read(header_text.data(), static_cast<std::streamsize>(header_length));
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::map<std::string, RawTensor> tensors;
  const nlohmann::json header = nlohmann::json::parse(header_text);
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    RawTensor& t = tensors[name];
    t.dtype = entry["dtype"].get<std::string>();
    t.shape = entry["shape"].get<std::vector<int64_t>>();
    const auto begin = entry["data_offsets"][0].get<size_t>(), end = entry["data_offsets"][1].get<size_t>();
    t.bytes.assign(data.begin() + static_cast<std::ptrdiff_t>(begin), data.begin() + static_cast<std::ptrdiff_t>(end));
  }
  return tensors;
}

inline DType dtype_of(const std::string& name) {
  for (DType d : {DType::F32, DType::F16, DType::BF16, DType::I8, DType::U8, DType::I32})
    if (name == dtype_name(d)) return d;
  throw std::runtime_error("unknown dtype " + name);
}

inline void write_raw_tensors(const std::filesystem::path& file, const std::map<std::string, RawTensor>& tensors) {
  std::vector<TensorToWrite> out;
  for (const auto& [name, t] : tensors) out.push_back({name, dtype_of(t.dtype), t.shape, std::as_bytes(std::span(t.bytes))});
  write_safetensors(file, out);
}

// The elements of an F32 / I32 tensor.
template <typename T>
std::vector<T> values_of(const RawTensor& t) {
  std::vector<T> values(t.bytes.size() / sizeof(T));
  std::memcpy(values.data(), t.bytes.data(), values.size() * sizeof(T));
  return values;
}
inline std::vector<float> floats_of(const RawTensor& t) { return values_of<float>(t); }
template <typename T>
void set_value(RawTensor& t, size_t index, T value) {
  std::memcpy(t.bytes.data() + sizeof(T) * index, &value, sizeof(T));
}

// FNV-1a 64 over the file, as the format documents weights_checksum.
inline std::string fnv1a64(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char ch : bytes) hash = (hash ^ ch) * 0x100000001b3ull;
  char text[32];
  std::snprintf(text, sizeof text, "fnv1a64:%016llx", static_cast<unsigned long long>(hash));
  return text;
}

inline nlohmann::json read_config(const std::filesystem::path& dir) { return nlohmann::json::parse(read_text_file(dir / "config.json")); }
inline void write_config(const std::filesystem::path& dir, const nlohmann::json& config) {
  std::ofstream(dir / "config.json") << config.dump(2);
}

// A checkpoint edited on purpose, checksum updated so that the edit reaches the tensor checks.
inline void edit_tensors(const std::filesystem::path& dir, const std::function<void(std::map<std::string, RawTensor>&)>& edit) {
  auto tensors = read_raw_tensors(dir / "model.safetensors");
  edit(tensors);
  write_raw_tensors(dir / "model.safetensors", tensors);
  auto config = read_config(dir);
  config["quantization_config"]["weights_checksum"] = fnv1a64(dir / "model.safetensors");
  write_config(dir, config);
}

}  // namespace cq::test
