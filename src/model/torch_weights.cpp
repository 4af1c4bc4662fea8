// A PyTorch checkpoint (pytorch_model.bin or its shards) as a WeightSource: the state dict's
// tensors as stored, every one a parameter (the WeightSource of safetensors_weights.cpp).
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/torch_checkpoint.h"
#include "model/weight_source.h"
#include "util/error.h"

namespace cq {

namespace {

// Checkpoints of a base model (OPTModel, LlamaModel; e.g. facebook/opt-*'s pytorch_model.bin)
// name their tensors without the "model." prefix that the causal-LM model's names carry;
// Hugging Face adds the base_model_prefix ("model" for both families) when loading, and so
// does this. Applied only when no tensor already has the prefix.
LoadedTensors with_base_model_prefix(LoadedTensors loaded) {
  const std::string prefix = "model.";
  for (const auto& [name, info] : loaded.tensors)
    if (name.starts_with(prefix)) return loaded;
  std::map<std::string, TensorInfo> renamed;
  for (auto& [name, info] : loaded.tensors) {
    const std::string full = name.starts_with("lm_head.") ? name : prefix + name;
    info.name = full;
    if (!renamed.emplace(full, std::move(info)).second)
      fail("{}: tensors '{}' and '{}' collide once the '{}' prefix is added", loaded.source.string(), name, full, prefix);
  }
  loaded.tensors = std::move(renamed);
  return loaded;
}

}  // namespace

std::unique_ptr<WeightSource> open_torch_weights(const std::filesystem::path& model_dir) {
  return stored_checkpoint_weights(
      std::make_unique<const SafetensorsCheckpoint>(with_base_model_prefix(read_torch_state_dict(model_dir))));
}

std::unique_ptr<WeightSource> open_checkpoint_weights(const std::filesystem::path& model_dir) {
  if (torch_checkpoint_of(model_dir)) return open_torch_weights(model_dir);
  return open_safetensors_weights(model_dir);
}

}  // namespace cq
