// An ordinary checkpoint as a WeightSource: every tensor as stored, every tensor a parameter.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/weight_source.h"

namespace cq {

namespace {

class StoredCheckpointWeights final : public WeightSource {
 public:
  explicit StoredCheckpointWeights(std::unique_ptr<const SafetensorsCheckpoint> checkpoint)
      : checkpoint_(std::move(checkpoint)) {}
  const SafetensorsCheckpoint& checkpoint() const override { return *checkpoint_; }
  std::optional<std::vector<float>> linear_weight(const std::string&, int64_t, int64_t) const override {
    return std::nullopt;
  }
  bool is_parameter(const std::string&, const TensorInfo&) const override { return true; }

 private:
  std::unique_ptr<const SafetensorsCheckpoint> checkpoint_;
};

}  // namespace

std::unique_ptr<WeightSource> stored_checkpoint_weights(std::unique_ptr<const SafetensorsCheckpoint> checkpoint) {
  return std::make_unique<StoredCheckpointWeights>(std::move(checkpoint));
}

std::unique_ptr<WeightSource> open_safetensors_weights(const std::filesystem::path& model_dir) {
  return stored_checkpoint_weights(std::make_unique<const SafetensorsCheckpoint>(model_dir));
}

}  // namespace cq
