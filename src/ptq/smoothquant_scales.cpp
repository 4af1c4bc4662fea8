// SmoothQuant's published act_scales (ptq/published_artifacts.h).
#include <cmath>

#include "ptq/artifact_file.h"
#include "ptq/published_artifacts.h"
#include "util/error.h"

namespace cq {

CalibrationStats read_smoothquant_scales(const Transformer& model, const std::filesystem::path& path) {
  const ArtifactFile file(path);
  const std::string& where = file.where();
  const PickleValue& root = file.root();
  if (root.kind != PickleKind::Dict)
    fail("{}: holds {}, not SmoothQuant's act_scales (a dict of module name -> per-channel max |x|)", where,
         PickleReader::kind_name(root.kind));
  const ModelModules modules(model);
  std::map<std::string, size_t> entries;  // name -> tensor value
  std::vector<std::string> unknown;
  for (size_t i = 0; i < root.items.size(); i += 2) {
    const std::string& name = file.text(root.items[i], "an act_scales key");
    if (modules.linears.count(name) || name == modules.lm_head) entries.emplace(name, root.items[i + 1]);
    else unknown.push_back(name);
  }
  if (!unknown.empty())
    fail("{}: {} of its {} names are not linear modules of {}: {} (the model's are like '{}')", where, unknown.size(),
         root.items.size() / 2, model.directory().string(), first_names(unknown), model.linear_layers().front().name);
  // Every entry is checked, used or not (smooth_lm reads q_proj's and fc1's / gate_proj's).
  std::map<std::string, std::vector<float>> values;
  for (const auto& [name, index] : entries) {
    std::vector<int64_t> shape;
    std::vector<float> v = file.tensor(index, "act_scales['" + name + "']", shape);
    const int64_t inputs =
        name == modules.lm_head ? modules.lm_head_inputs : model.linear_layers()[static_cast<size_t>(modules.linears.at(name))].in_features;
    if (shape.size() != 1 || shape[0] != inputs)
      fail("{}: act_scales['{}'] has shape {}, expected [{}] (one max |x| per input channel of the module)", where, name,
           shape_text(shape), inputs);
    for (size_t j = 0; j < v.size(); ++j)
      if (!(std::isfinite(v[j]) && v[j] >= 0.f))
        fail("{}: act_scales['{}'] element {} is {}, expected a finite max |x| >= 0", where, name, j, v[j]);
    values.emplace(name, std::move(v));
  }
  CalibrationStats stats;
  stats.column_absmax.resize(static_cast<size_t>(model.config().num_layers * kInputSites));
  std::vector<std::string> missing;
  for (int64_t layer = 0; layer < model.config().num_layers; ++layer) {
    const Transformer::BlockLinears b = model.block_linears(layer);
    // smooth_lm: the attention norm's s from q_proj's input, the MLP norm's from fc1 / gate_proj's.
    for (const auto& [site, reader] : {std::pair{InputSite::AttentionIn, b.q}, std::pair{InputSite::MlpIn, b.gate_or_fc1}}) {
      const std::string& name = model.linear_layers()[static_cast<size_t>(reader)].name;
      const auto found = values.find(name);
      if (found == values.end()) missing.push_back(name);
      else stats.column_absmax[static_cast<size_t>(layer * kInputSites + static_cast<int>(site))] = found->second;
    }
  }
  if (!missing.empty())
    fail("{}: act_scales lacks {} of the {} modules SmoothQuant smooths from: {}", where, missing.size(),
         2 * model.config().num_layers, first_names(missing));
  return stats;
}

}  // namespace cq
