#pragma once
// A minimal torch.save writer for what OmniQuant saves (omni_parameters.pth): a dictionary
// {layer index (int): OrderedDict{name: float32 tensor}}, in PyTorch's zip format (stored
// entries, 64-byte aligned data, CRC-32) with a protocol-2 pickle whose tensors are
// torch._utils._rebuild_tensor_v2 over persistent FloatStorages. torch.load reads it (also
// with weights_only), and so does io/pickle_reader.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cq {

struct TorchFloatTensor {
  std::vector<int64_t> shape;  // row-major, contiguous
  std::vector<float> values;
};

using TorchNamedTensors = std::vector<std::pair<std::string, TorchFloatTensor>>;

// The bytes of the file (write them with util/atomic_file.h). `archive` names the zip's
// top folder (torch uses the file's stem).
std::string torch_save_layer_dicts(const std::vector<TorchNamedTensors>& layers, const std::string& archive = "archive");

}  // namespace cq
