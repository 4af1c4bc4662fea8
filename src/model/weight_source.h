#pragma once
// Where the decoder's parameters come from. The model reads every tensor through this
// interface and knows no quantization format: an ordinary checkpoint gives its stored
// floating-point tensors; a quantized checkpoint (src/ptq/, `load_model`) gives its linear
// weights as the FP32 values its integer codes stand for.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace cq {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // The mapped tensors: embeddings, norms, biases, and the linear weights unless
  // linear_weight() gives them.
  virtual const SafetensorsCheckpoint& checkpoint() const = 0;
  // FP32 values of linear layer `module` (out × in) when the checkpoint does not store them
  // as floating-point `module`.weight; std::nullopt: the model maps that tensor itself.
  virtual std::optional<std::vector<float>> linear_weight(const std::string& module, int64_t out, int64_t in) const = 0;
  // Whether stored tensor `name` is a model parameter (counted by parameter_count); tensors
  // that only describe a format (codes, scales) are not. Linear weights given by
  // linear_weight() count by their logical shape.
  virtual bool is_parameter(const std::string& name, const TensorInfo& info) const = 0;
  // Whether linear `module` has a bias `module`.bias although the family's config gives it
  // none: a transformation moved shifts into a new bias (OmniQuant's LET) and a quantized
  // checkpoint stores it. The model then reads it as any bias (a missing one is an error).
  virtual bool adds_bias(const std::string& module) const {
    (void)module;
    return false;
  }
};

// Tensors served as stored, every one a parameter (any reader's tensors in the common form).
std::unique_ptr<WeightSource> stored_checkpoint_weights(std::unique_ptr<const SafetensorsCheckpoint> checkpoint);
// An ordinary Hugging Face checkpoint: model.safetensors or its shards, read as stored.
std::unique_ptr<WeightSource> open_safetensors_weights(const std::filesystem::path& model_dir);
// A PyTorch checkpoint: pytorch_model.bin or its shards (pytorch_model.bin.index.json).
std::unique_ptr<WeightSource> open_torch_weights(const std::filesystem::path& model_dir);
// Whichever model_dir holds, safetensors preferred when it has both (as Hugging Face does).
std::unique_ptr<WeightSource> open_checkpoint_weights(const std::filesystem::path& model_dir);

}  // namespace cq
