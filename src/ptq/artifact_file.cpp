#include "ptq/artifact_file.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "util/error.h"

namespace cq {

ArtifactFile::ArtifactFile(const std::filesystem::path& file) : archive_(file), where_(file.string()) {}

const PickleValue& ArtifactFile::expect(size_t index, PickleKind kind, const std::string& what) const {
  const PickleValue& v = value(index);
  if (v.kind != kind) fail("{}: {} is {}, expected {}", where_, what, PickleReader::kind_name(v.kind), PickleReader::kind_name(kind));
  return v;
}

const PickleValue& ArtifactFile::sequence(size_t index, size_t count, const std::string& what, const std::string& expected) const {
  const PickleValue& v = value(index);
  if ((v.kind != PickleKind::Tuple && v.kind != PickleKind::List) || v.items.size() != count)
    fail("{}: {} is {}{}, expected {}", where_, what, PickleReader::kind_name(v.kind),
         v.kind == PickleKind::Tuple || v.kind == PickleKind::List ? fmt::format(" of {} items", v.items.size()) : "", expected);
  return v;
}

std::vector<float> ArtifactFile::tensor(size_t index, const std::string& what, std::vector<int64_t>& shape) const {
  (void)expect(index, PickleKind::Tensor, what);
  std::vector<std::vector<std::byte>> copies;  // a strided view is gathered here; to_f32 copies it out
  const TensorInfo info = archive_.tensor(index, what, copies);
  shape = info.shape;
  return to_f32(info);
}

ModelModules::ModelModules(const Transformer& model) {
  const ModelConfig& c = model.config();
  const auto& all = model.linear_layers();
  for (size_t i = 0; i < all.size(); ++i) linears.emplace(all[i].name, static_cast<int64_t>(i));
  const TensorNames names = tensor_names(c);
  // The MLP's activation module in transformers: OPTDecoderLayer.activation_fn,
  // Phi3MLP.activation_fn, the others' MLP.act_fn.
  const char* activation = c.family == Family::OPT ? "activation_fn" : c.family == Family::Phi3 ? "mlp.activation_fn" : "mlp.act_fn";
  for (int64_t layer = 0; layer < c.num_layers; ++layer) {
    const std::string prefix = names.layer_prefix + std::to_string(layer) + ".";
    norms.emplace(prefix + names.attn_norm, std::make_pair(layer, InputSite::AttentionIn));
    norms.emplace(prefix + names.mlp_norm, std::make_pair(layer, InputSite::MlpIn));
    activations.emplace(prefix + activation, layer);
  }
  lm_head_inputs = model.lm_head_weight().shape.size() == 2 ? model.lm_head_weight().shape[1] : 0;
}

std::string first_names(const std::vector<std::string>& names, size_t shown) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < shown; ++i) out += (i == 0 ? "'" : ", '") + names[i] + "'";
  if (names.size() > shown) out += fmt::format(" and {} more", names.size() - shown);
  return out;
}

std::string shape_text(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

}  // namespace cq
