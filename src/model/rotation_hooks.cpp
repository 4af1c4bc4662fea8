// The model's rotation hooks (transformer.h): the full-precision tensors outside the linear
// layers as values, norm kind, and the online transform of the MLP's down projection input.
#include <utility>

#include "kernels/hadamard.h"
#include "model/transformer.h"
#include "util/error.h"

namespace cq {

namespace {
const char* stored_tensor_name(Transformer::StoredTensor which) {
  switch (which) {
    case Transformer::StoredTensor::EmbedTokens: return "embed_tokens";
    case Transformer::StoredTensor::EmbedPositions: return "embed_positions";
    case Transformer::StoredTensor::LmHead: return "lm_head";
  }
  return "?";
}
}  // namespace

std::vector<float> Transformer::tensor_values(StoredTensor which) const {
  const TensorInfo* tensor = which == StoredTensor::EmbedTokens      ? embed_tokens_
                             : which == StoredTensor::EmbedPositions ? embed_positions_
                                                                     : lm_head_;
  if (tensor == nullptr) fail("{}: the model has no {}", directory_.string(), stored_tensor_name(which));
  return to_f32(*tensor);
}

void Transformer::replace_tensor(StoredTensor which, std::vector<float> values) {
  const TensorInfo*& slot = which == StoredTensor::EmbedTokens      ? embed_tokens_
                            : which == StoredTensor::EmbedPositions ? embed_positions_
                                                                    : lm_head_;
  if (slot == nullptr) fail("{}: the model has no {}", directory_.string(), stored_tensor_name(which));
  if (static_cast<int64_t>(values.size()) != slot->numel())
    fail("replacing {}: {} values for a tensor of {}", stored_tensor_name(which), values.size(), slot->numel());
  auto owned = std::make_unique<OwnedTensor>();
  owned->values = std::move(values);
  owned->info.name = slot->name;
  owned->info.dtype = DType::F32;
  owned->info.shape = slot->shape;
  owned->info.data = reinterpret_cast<const std::byte*>(owned->values.data());
  owned->info.bytes = owned->values.size() * sizeof(float);
  owned->info.file = slot->file;
  slot = &owned->info;
  owned_tensors_.push_back(std::move(owned));
}

void Transformer::use_rms_norm() {
  config_.norm = NormKind::RMSNorm;
  for (Block& block : blocks_) block.attn_norm.bias.clear(), block.mlp_norm.bias.clear();
  final_norm_.bias.clear();
}

void Transformer::set_mlp_down_transform(std::shared_ptr<const kernels::HadamardTransform> transform) {
  if (transform && transform->size() != config_.intermediate_size)
    fail("down projection transform of size {} for an MLP of width {}", transform->size(), config_.intermediate_size);
  mlp_down_transform_ = std::move(transform);
}

}  // namespace cq
