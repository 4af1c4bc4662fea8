#pragma once
// What the readers of published results (ptq/published_artifacts.h) share: a torch.save file
// read through the restricted unpickler, with its values checked one kind at a time, and the
// Hugging Face module names of the model they refer to.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "io/torch_checkpoint.h"
#include "model/transformer.h"

namespace cq {

class ArtifactFile {
 public:
  explicit ArtifactFile(const std::filesystem::path& file);
  const std::string& where() const { return where_; }
  const PickleValue& value(size_t index) const { return archive_.pickle().value(index); }
  const PickleValue& root() const { return value(archive_.pickle().root()); }
  // The value, which must be of `kind` (else: "FILE: WHAT is a list, expected a tuple").
  const PickleValue& expect(size_t index, PickleKind kind, const std::string& what) const;
  // A tuple or a list (torch.save keeps whichever the writer built) of `count` items.
  const PickleValue& sequence(size_t index, size_t count, const std::string& what, const std::string& expected) const;
  const std::string& text(size_t index, const std::string& what) const { return expect(index, PickleKind::String, what).text; }
  // A floating-point tensor's values (float32/float16/bfloat16) and shape.
  std::vector<float> tensor(size_t index, const std::string& what, std::vector<int64_t>& shape) const;

 private:
  TorchArchive archive_;
  std::string where_;
};

// The module names a published file may use for a model: its decoder linears, its norms and
// MLP activations (per layer, with the input site they feed), lm_head.
struct ModelModules {
  explicit ModelModules(const Transformer& model);
  std::map<std::string, int64_t> linears;                          // name -> index into linear_layers()
  std::map<std::string, std::pair<int64_t, InputSite>> norms;      // name -> (layer, site it feeds)
  std::map<std::string, int64_t> activations;                      // name -> layer
  std::string lm_head = "lm_head";
  int64_t lm_head_inputs = 0;
  bool known(const std::string& name) const {
    return linears.count(name) || norms.count(name) || activations.count(name) || name == lm_head;
  }
};

// "'a', 'b', 'c' and 2 more": the first few names of a list, for messages.
std::string first_names(const std::vector<std::string>& names, size_t shown = 4);
// "[4, 128]"
std::string shape_text(const std::vector<int64_t>& shape);

}  // namespace cq
