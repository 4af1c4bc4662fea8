// llm-awq's published search results (ptq/published_artifacts.h): checked whole, then applied
// as apply_awq does (apply_scale for every entry, then apply_clip).
#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "ptq/artifact_file.h"
#include "ptq/published_artifacts.h"
#include "ptq/smoothquant.h"
#include "util/error.h"

namespace cq {

namespace {

constexpr const char* kScaleEntry = "(previous op name, (linear names...), scales)";
constexpr const char* kClipEntry = "(linear name, max_val)";

// One checked entry of "scale", ready to fold.
struct ScaleFold {
  // Activation: ScaledActivation, folded into the rows of the linear before the activation
  // only after the clips (llm-awq clips that linear's unscaled weights).
  enum class Kind { Norm, Linear, Activation } kind = Kind::Norm;
  int64_t layer = 0;
  InputSite site = InputSite::AttentionIn;  // Norm: the site it feeds
  int64_t previous = -1;                    // Linear: rows [first_row, first_row + |s|) divided
  int64_t first_row = 0;
  std::vector<int64_t> next;
  AwqScaleRecord record;
};

struct ClipEntry {
  int64_t linear = 0;
  AwqClipRecord record;
};

std::string names_of(const Transformer& model, const std::vector<int64_t>& indexes) {
  std::vector<std::string> names;
  for (int64_t i : indexes) names.push_back(model.linear_layers()[static_cast<size_t>(i)].name);
  return first_names(names, names.size());
}

class AwqResultsReader {
 public:
  AwqResultsReader(Transformer& model, const std::filesystem::path& path) : model_(model), file_(path), modules_(model) {}

  AwqResult apply() {
    const std::string& where = file_.where();
    const PickleValue& root = file_.root();
    if (root.kind != PickleKind::Dict)
      fail("{}: holds {}, not llm-awq's results (a dict with \"scale\" and \"clip\" lists)", where, PickleReader::kind_name(root.kind));
    size_t scale = 0, clip = 0;
    bool has_scale = false, has_clip = false;
    for (size_t i = 0; i < root.items.size(); i += 2) {
      const std::string& key = file_.text(root.items[i], "a key of the results dict");
      if (key == "scale") scale = root.items[i + 1], has_scale = true;
      else if (key == "clip") clip = root.items[i + 1], has_clip = true;
      else fail("{}: unexpected key '{}' in the results dict (llm-awq's run_awq writes \"scale\" and \"clip\")", where, key);
    }
    if (!has_scale || !has_clip) fail("{}: the results dict lacks \"{}\" (llm-awq's run_awq writes \"scale\" and \"clip\")", where, has_scale ? "clip" : "scale");
    const PickleValue& scales = file_.expect(scale, PickleKind::List, "results[\"scale\"]");
    const PickleValue& clips = file_.expect(clip, PickleKind::List, "results[\"clip\"]");
    check_names(scales, clips);
    std::vector<ScaleFold> folds;
    for (size_t n = 0; n < scales.items.size(); ++n) folds.push_back(scale_entry(scales.items[n], n));
    std::vector<ClipEntry> clip_entries;
    for (size_t n = 0; n < clips.items.size(); ++n) clip_entries.push_back(clip_entry(clips.items[n], n));
    // Everything checked: now change the model (apply_awq: every scale, then every clip).
    AwqResult result;
    for (const ScaleFold& fold : folds) {
      if (fold.kind == ScaleFold::Kind::Norm) fold_scales_into_norm(model_, fold.layer, fold.site, fold.record.scales);
      else if (fold.kind == ScaleFold::Kind::Linear) fold_scales_into_linear(model_, fold.previous, fold.next, fold.record.scales, fold.first_row);
      else multiply_columns(fold.next.front(), fold.record.scales);  // scale_gelu_fc
    }
    for (ClipEntry& entry : clip_entries) {
      LinearLayer& linear = model_.linear_layers()[static_cast<size_t>(entry.linear)];
      const int64_t in = linear.in_features, group = in / entry.record.groups_per_row;
      std::span<float> w = linear.mutable_weight();
      for (int64_t k = 0; k < linear.out_features; ++k)
        for (int64_t j = 0; j < in; ++j) {
          const float m = entry.record.max_values[static_cast<size_t>(k * entry.record.groups_per_row + j / group)];
          float& value = w[static_cast<size_t>(k * in + j)];
          value = std::clamp(value, -m, m);
        }
      result.clips.push_back(std::move(entry.record));
    }
    // ScaledActivation divides the activation's output: the rows feeding it, clipped already.
    for (ScaleFold& fold : folds) {
      if (fold.kind == ScaleFold::Kind::Activation) fold_scales_into_linear(model_, fold.previous, {}, fold.record.scales, fold.first_row);
      result.scales.push_back(std::move(fold.record));
    }
    return result;
  }

 private:
  void multiply_columns(int64_t index, const std::vector<float>& scales) {
    LinearLayer& linear = model_.linear_layers()[static_cast<size_t>(index)];
    std::span<float> w = linear.mutable_weight();
    for (int64_t k = 0; k < linear.out_features; ++k)
      for (int64_t j = 0; j < linear.in_features; ++j) w[static_cast<size_t>(k * linear.in_features + j)] *= scales[static_cast<size_t>(j)];
  }

  // Every name the file uses, before anything else: the mismatches listed together.
  void check_names(const PickleValue& scales, const PickleValue& clips) {
    std::vector<std::string> unknown;
    auto note = [&](const PickleValue& v) {
      if (v.kind == PickleKind::String && !modules_.known(v.text) && std::find(unknown.begin(), unknown.end(), v.text) == unknown.end())
        unknown.push_back(v.text);
    };
    for (size_t item : scales.items) {
      const PickleValue& entry = file_.value(item);
      if ((entry.kind != PickleKind::Tuple && entry.kind != PickleKind::List) || entry.items.size() != 3) continue;
      note(file_.value(entry.items[0]));
      const PickleValue& layers = file_.value(entry.items[1]);
      if (layers.kind == PickleKind::Tuple || layers.kind == PickleKind::List)
        for (size_t name : layers.items) note(file_.value(name));
    }
    for (size_t item : clips.items) {
      const PickleValue& entry = file_.value(item);
      if ((entry.kind == PickleKind::Tuple || entry.kind == PickleKind::List) && entry.items.size() == 2)
        note(file_.value(entry.items[0]));
    }
    if (!unknown.empty())
      fail("{}: {} names are not modules of {}: {} (the model's are like '{}')", file_.where(), unknown.size(),
           model_.directory().string(), first_names(unknown), model_.linear_layers().front().name);
  }

  int64_t linear_index(const std::string& name, const std::string& what) const {
    const auto found = modules_.linears.find(name);
    if (found == modules_.linears.end()) fail("{}: {}: '{}' is not a linear module", file_.where(), what, name);
    return found->second;
  }

  std::vector<float> positive_scales(size_t index, const std::string& what, int64_t width) const {
    std::vector<int64_t> shape;
    std::vector<float> s = file_.tensor(index, what + " scales", shape);
    if (shape.size() != 1 || shape[0] != width)
      fail("{}: {}: scales of shape {}, expected [{}] (one per input channel of the scaled linears)", file_.where(), what,
           shape_text(shape), width);
    for (size_t j = 0; j < s.size(); ++j)
      if (!(std::isfinite(s[j]) && s[j] > 0.f))
        fail("{}: {}: scale {} is {}, expected finite and positive (it divides the previous op)", file_.where(), what, j, s[j]);
    return s;
  }

  ScaleFold scale_entry(size_t index, size_t n) {
    const std::string what = fmt::format("scale entry {}", n);
    const PickleValue& entry = file_.sequence(index, 3, what, kScaleEntry);
    ScaleFold fold;
    fold.record.previous = file_.text(entry.items[0], what + " previous op name");
    const PickleValue& layers = file_.value(entry.items[1]);
    if (layers.kind != PickleKind::Tuple && layers.kind != PickleKind::List)
      fail("{}: {}: linear names are {}, expected a tuple of names {}", file_.where(), what, PickleReader::kind_name(layers.kind), kScaleEntry);
    if (layers.items.empty()) fail("{}: {}: no linear names", file_.where(), what);
    std::set<int64_t> next;
    for (size_t name : layers.items) {
      fold.record.linears.push_back(file_.text(name, what + " linear name"));
      if (!next.insert(linear_index(fold.record.linears.back(), what)).second)
        fail("{}: {}: '{}' is named twice", file_.where(), what, fold.record.linears.back());
    }
    fold.next.assign(next.begin(), next.end());
    fold.record.ratio = fold.record.loss = std::numeric_limits<double>::quiet_NaN();
    const std::string& previous = fold.record.previous;
    const std::string where_what = fmt::format("{} ('{}')", what, previous);
    const auto& linears = model_.linear_layers();
    const ModelConfig& c = model_.config();
    if (const auto norm = modules_.norms.find(previous); norm != modules_.norms.end()) {
      // scale_ln_fcs: exact only when every linear reading the norm takes the scales.
      fold.kind = ScaleFold::Kind::Norm;
      std::tie(fold.layer, fold.site) = norm->second;
      const std::vector<int64_t> readers = site_readers(model_, fold.layer, fold.site);
      if (fold.next != readers)
        fail("{}: {}: the norm feeds {}, the entry scales {}; all of them must take the scales", file_.where(), where_what,
             names_of(model_, readers), names_of(model_, fold.next));
      fold.record.layer = fold.layer;
      fold.record.scales = positive_scales(entry.items[2], where_what, linears[static_cast<size_t>(readers.front())].in_features);
      return fold;
    }
    if (fold.next.size() != 1) fail("{}: {}: a linear or activation scales exactly one next linear, the entry names {}", file_.where(), where_what, fold.next.size());
    const int64_t target = fold.next.front();
    const LinearLayer& next_linear = linears[static_cast<size_t>(target)];
    fold.kind = ScaleFold::Kind::Linear;
    fold.layer = next_linear.layer;
    fold.record.layer = fold.layer;
    const Transformer::BlockLinears b = model_.block_linears(fold.layer);
    const int64_t up_source = c.fused_gate_up ? b.gate_or_fc1 : b.up;
    if (const auto activation = modules_.activations.find(previous); activation != modules_.activations.end()) {
      // ScaledActivation (act(x) / s): ReLU(x) / s = ReLU(x / s) for s > 0, and in a gated MLP
      // act(gate) / s · up = act(gate) · (up / s): fc1's or up's rows divided.
      if (activation->second != fold.layer || target != b.down_or_fc2)
        fail("{}: {}: the activation feeds '{}', not '{}'", file_.where(), where_what,
             linears[static_cast<size_t>(model_.block_linears(activation->second).down_or_fc2)].name, next_linear.name);
      fold.previous = c.gated_mlp() ? up_source : b.gate_or_fc1;
      fold.kind = ScaleFold::Kind::Activation;
    } else if (modules_.linears.count(previous)) {
      // scale_fc_fc: the previous linear's output must be the next one's input, channel for channel.
      fold.previous = modules_.linears.at(previous);
      const int64_t v_source = c.fused_qkv ? b.q : b.v;
      const bool feeds = (fold.previous == v_source && target == b.o) ||
                         (fold.previous == (c.gated_mlp() ? up_source : b.gate_or_fc1) && target == b.down_or_fc2);
      if (!feeds)
        fail("{}: {}: '{}' does not feed '{}' channel for channel (llm-awq scales v_proj -> o_proj, fc1 -> fc2, up_proj -> "
             "down_proj)",
             file_.where(), where_what, previous, next_linear.name);
    } else {
      fail("{}: {}: '{}' is not a norm, linear or MLP activation of the model", file_.where(), where_what, previous);
    }
    fold.record.scales = positive_scales(entry.items[2], where_what, next_linear.in_features);
    const LinearLayer& previous_linear = linears[static_cast<size_t>(fold.previous)];
    const auto count = static_cast<int64_t>(fold.record.scales.size());
    // A fused previous op (qkv_proj, gate_up_proj): its last rows (v, up), as scale_fc_fc's weight[-len(s):].
    const bool fused = (c.fused_qkv && fold.previous == b.q) || (c.fused_gate_up && fold.previous == b.gate_or_fc1 && c.gated_mlp());
    const int64_t rows_feeding = fused ? (fold.previous == b.q ? c.num_kv_heads * c.head_dim : c.intermediate_size) : previous_linear.out_features;
    if (rows_feeding != count)
      fail("{}: {}: {} scales, but '{}' gives '{}' {} channels (grouped-query attention: v_proj -> o_proj is not "
           "channel for channel)",
           file_.where(), where_what, count, previous_linear.name, next_linear.name, rows_feeding);
    fold.first_row = previous_linear.out_features - count;
    return fold;
  }

  ClipEntry clip_entry(size_t index, size_t n) {
    const std::string what = fmt::format("clip entry {}", n);
    const PickleValue& entry = file_.sequence(index, 2, what, kClipEntry);
    ClipEntry clip;
    const std::string& name = file_.text(entry.items[0], what + " linear name");
    clip.linear = linear_index(name, what);
    const LinearLayer& linear = model_.linear_layers()[static_cast<size_t>(clip.linear)];
    const std::string where_what = fmt::format("{} ('{}')", what, name);
    std::vector<int64_t> shape;
    std::vector<float> max_values = file_.tensor(entry.items[1], where_what + " max_val", shape);
    // auto_clip_layer returns [out, groups, 1]; [out, groups] is accepted too.
    const bool shaped = (shape.size() == 3 && shape[2] == 1) || shape.size() == 2;
    if (!shaped || shape[0] != linear.out_features || shape[1] < 1 || linear.in_features % shape[1] != 0)
      fail("{}: {}: max_val of shape {}, expected [{}, groups, 1] with groups dividing {} input channels", file_.where(),
           where_what, shape_text(shape), linear.out_features, linear.in_features);
    for (size_t j = 0; j < max_values.size(); ++j)
      if (!(std::isfinite(max_values[j]) && max_values[j] >= 0.f))
        fail("{}: {}: max_val element {} is {}, expected finite and >= 0", file_.where(), where_what, j, max_values[j]);
    clip.record = AwqClipRecord{name, shape[1], std::move(max_values)};
    return clip;
  }

  Transformer& model_;
  ArtifactFile file_;
  ModelModules modules_;
};

}  // namespace

AwqResult apply_awq_results(Transformer& model, const std::filesystem::path& file) {
  if (!model.config().pre_norm) fail("AWQ needs a pre-norm model (the norm before q/k/v and fc1 absorbs 1/s)");
  return AwqResultsReader(model, file).apply();
}

}  // namespace cq
