// Tensors about to be written to a safetensors file, for the writers in ptq/ (quantized
// checkpoints, compressed-tensors exports).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace cq {

// What model.safetensors will hold: converted or quantized tensors owned here, F32 tensors
// of the source checkpoint as views into its mapping (no copy).
class TensorSet {
 public:
  template <typename T>
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::span<const T> values) {
    Entry& entry = entries_[name];
    entry.dtype = dtype;
    entry.shape = std::move(shape);
    entry.owned.resize(values.size_bytes());
    if (!values.empty()) std::memcpy(entry.owned.data(), values.data(), values.size_bytes());
    entry.bytes = entry.owned;
  }
  template <typename T>
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const std::vector<T>& values) {
    add(name, dtype, std::move(shape), std::span<const T>(values));
  }
  void add_stored(const TensorInfo& tensor) {
    if (tensor.dtype != DType::F32) {
      add(tensor.name, DType::F32, tensor.shape, to_f32(tensor));
      return;
    }
    Entry& entry = entries_[tensor.name];
    entry.dtype = DType::F32;
    entry.shape = tensor.shape;
    entry.owned.clear();
    entry.bytes = {tensor.data, tensor.bytes};
  }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  std::vector<TensorToWrite> to_write() const {
    std::vector<TensorToWrite> tensors;
    for (const auto& [name, entry] : entries_) tensors.push_back({name, entry.dtype, entry.shape, entry.bytes});
    return tensors;
  }

 private:
  struct Entry {
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    std::vector<std::byte> owned;
    std::span<const std::byte> bytes;
  };
  std::map<std::string, Entry> entries_;
};

}  // namespace cq
