#include "ptq/rotation.h"

#include <memory>
#include <random>
#include <span>
#include <vector>

#include "kernels/hadamard.h"
#include "model/transformer.h"
#include "util/error.h"

namespace cq {

namespace {

using Rows = std::span<float>;  // row-major, `width` floats a row

// x ↦ x·Q for each row, Q = diag(signs)·Ĥ (signs empty: Q = Ĥ).
void rotate_rows(Rows data, int64_t width, const kernels::HadamardTransform& transform, const std::vector<float>& signs) {
  if (data.empty()) return;
  if (width != transform.size() || data.size() % static_cast<size_t>(width) != 0)
    fail("internal error: rotating rows of {} with a transform of size {}", width, transform.size());
  const auto rows = static_cast<int64_t>(data.size()) / width;
  if (!signs.empty())
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < width; ++j) data[static_cast<size_t>(r * width + j)] *= signs[static_cast<size_t>(j)];
  transform.apply(data.data(), rows);
}

// W (rows × cols) ↦ Qᵀ·W applied to its columns: Wᵀ's rows rotated (outputs produced rotated).
void rotate_columns(Rows w, int64_t rows, int64_t cols, int64_t segment, const kernels::HadamardTransform& transform,
                    const std::vector<float>& signs) {
  std::vector<float> transposed(w.size());
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) transposed[static_cast<size_t>(j * rows + i)] = w[static_cast<size_t>(i * cols + j)];
  rotate_rows(transposed, segment, transform, signs);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) w[static_cast<size_t>(i * cols + j)] = transposed[static_cast<size_t>(j * rows + i)];
}

// Each row minus its mean (rows of width `width`).
void center_rows(Rows data, int64_t width) {
  for (size_t start = 0; start < data.size(); start += static_cast<size_t>(width)) {
    double sum = 0;
    for (int64_t j = 0; j < width; ++j) sum += data[start + static_cast<size_t>(j)];
    const auto mean = static_cast<float>(sum / static_cast<double>(width));
    for (int64_t j = 0; j < width; ++j) data[start + static_cast<size_t>(j)] -= mean;
  }
}

// A writer of the residual stream made to produce zero-mean outputs: (I − 11ᵀ/d)·W, b − mean(b).
void center_outputs(LinearLayer& linear) {
  const int64_t out = linear.out_features, in = linear.in_features;
  std::span<float> w = linear.mutable_weight();
  for (int64_t j = 0; j < in; ++j) {
    double sum = 0;
    for (int64_t i = 0; i < out; ++i) sum += w[static_cast<size_t>(i * in + j)];
    const auto mean = static_cast<float>(sum / static_cast<double>(out));
    for (int64_t i = 0; i < out; ++i) w[static_cast<size_t>(i * in + j)] -= mean;
  }
  if (!linear.bias.empty()) center_rows(linear.bias, out);
}

// A norm's y = w ⊙ n + b folded into a reader W·y + c: W·diag(w), c + W·b. `weight` rows × in.
void fold_norm(std::span<float> weight, int64_t rows, int64_t in, std::vector<float>& bias, const std::vector<float>& norm_weight,
               const std::vector<float>& norm_bias) {
  if (!norm_bias.empty()) {
    if (bias.empty()) bias.assign(static_cast<size_t>(rows), 0.f);
    for (int64_t i = 0; i < rows; ++i) {
      double sum = bias[static_cast<size_t>(i)];
      for (int64_t j = 0; j < in; ++j) sum += static_cast<double>(weight[static_cast<size_t>(i * in + j)]) * norm_bias[static_cast<size_t>(j)];
      bias[static_cast<size_t>(i)] = static_cast<float>(sum);
    }
  }
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < in; ++j) weight[static_cast<size_t>(i * in + j)] *= norm_weight[static_cast<size_t>(j)];
}

}  // namespace

RotationRecord rotate_model(Transformer& model, uint64_t seed) {
  const ModelConfig& c = model.config();
  const std::string where = model.directory().string();
  if (!c.pre_norm)
    fail("{}: --rotate needs a pre-norm model; this OPT normalizes after the residual (do_layer_norm_before false), "
         "where a rotation of the residual stream cannot be folded into the norms",
         where);
  if (c.has_projections())
    fail("{}: --rotate does not support OPT's project_in/project_out (word_embed_proj_dim {} != hidden_size {})", where,
         c.word_embed_proj_dim, c.hidden_size);
  if (model.mlp_down_transform() != nullptr) fail("{}: the model is already rotated", where);
  const int64_t d = c.hidden_size;
  RotationRecord record;
  record.seed = seed;
  record.mean_folded = c.norm == NormKind::LayerNorm;
  auto& linears = model.linear_layers();

  // The tensors outside the linears (the lm_head before the embeddings: they may be tied).
  std::vector<float> lm_head = model.tensor_values(Transformer::StoredTensor::LmHead);
  std::vector<float> embed = model.tensor_values(Transformer::StoredTensor::EmbedTokens);
  std::vector<float> positions;
  if (c.positions == PositionKind::Learned) positions = model.tensor_values(Transformer::StoredTensor::EmbedPositions);

  // 1. LayerNorm: every writer of the residual stream produces zero-mean rows, so each
  //    LayerNorm's mean subtraction is a no-op (and it equals an RMSNorm with its ε).
  if (record.mean_folded) {
    center_rows(embed, d);
    center_rows(positions, d);
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const Transformer::BlockLinears block = model.block_linears(l);
      center_outputs(linears[static_cast<size_t>(block.o)]);
      center_outputs(linears[static_cast<size_t>(block.down_or_fc2)]);
    }
  }
  // 2. Norm scales (and biases) into their readers; the norms keep ε and the RMS only.
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const Transformer::BlockLinears block = model.block_linears(l);
    for (InputSite site : {InputSite::AttentionIn, InputSite::MlpIn}) {
      std::vector<float>& norm_weight = model.norm_weight(l, site);
      std::vector<float>& norm_bias = model.norm_bias(l, site);
      const std::vector<int64_t> readers = site == InputSite::AttentionIn ? std::vector<int64_t>{block.q, block.k, block.v}
                                           : block.up >= 0 ? std::vector<int64_t>{block.gate_or_fc1, block.up}
                                                           : std::vector<int64_t>{block.gate_or_fc1};
      for (int64_t index : readers) {
        LinearLayer& linear = linears[static_cast<size_t>(index)];
        fold_norm(linear.mutable_weight(), linear.out_features, linear.in_features, linear.bias, norm_weight, norm_bias);
      }
      std::fill(norm_weight.begin(), norm_weight.end(), 1.f);
      std::fill(norm_bias.begin(), norm_bias.end(), 0.f);
    }
  }
  if (c.final_norm) {
    fold_norm(lm_head, c.vocab_size, d, model.lm_head_bias(), model.final_norm_weight(), model.final_norm_bias());
    std::fill(model.final_norm_weight().begin(), model.final_norm_weight().end(), 1.f);
    std::fill(model.final_norm_bias().begin(), model.final_norm_bias().end(), 0.f);
  }
  if (record.mean_folded) model.use_rms_norm();

  // 3. The residual stream rotated by Q = diag(signs)·Ĥ_d.
  const kernels::HadamardTransform hidden(d);
  record.hidden = hidden.construction();
  std::vector<float> signs(static_cast<size_t>(d));
  std::mt19937_64 random(seed);  // the standard fixes mt19937_64's output: the same Q everywhere
  for (float& sign : signs) sign = (random() >> 63) != 0 ? -1.f : 1.f;
  rotate_rows(embed, d, hidden, signs);
  rotate_rows(positions, d, hidden, signs);
  rotate_rows(lm_head, d, hidden, signs);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const Transformer::BlockLinears block = model.block_linears(l);
    for (int64_t reader : {block.q, block.k, block.v, block.gate_or_fc1, block.up})
      if (reader >= 0) rotate_rows(linears[static_cast<size_t>(reader)].mutable_weight(), d, hidden, signs);
    for (int64_t writer : {block.o, block.down_or_fc2}) {
      LinearLayer& linear = linears[static_cast<size_t>(writer)];
      rotate_columns(linear.mutable_weight(), linear.out_features, linear.in_features, d, hidden, signs);
      rotate_rows(linear.bias, d, hidden, signs);
    }
  }
  model.replace_tensor(Transformer::StoredTensor::EmbedTokens, std::move(embed));
  if (!positions.empty()) model.replace_tensor(Transformer::StoredTensor::EmbedPositions, std::move(positions));
  model.replace_tensor(Transformer::StoredTensor::LmHead, std::move(lm_head));

  // 4. Per head between v_proj and o_proj (attention mixes rows of V, so a rotation of each
  //    head's columns passes through it).
  const kernels::HadamardTransform head(c.head_dim);
  record.head = head.construction();
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const Transformer::BlockLinears block = model.block_linears(l);
    LinearLayer& v = linears[static_cast<size_t>(block.v)];
    rotate_columns(v.mutable_weight(), v.out_features, v.in_features, c.head_dim, head, {});
    rotate_rows(v.bias, c.head_dim, head, {});
    rotate_rows(linears[static_cast<size_t>(block.o)].mutable_weight(), c.head_dim, head, {});
  }

  // 5. down_proj's (fc2's) input: Ĥ online, Ĥ folded into the weight (x·Ĥ·(W·Ĥ)ᵀ = x·Wᵀ).
  auto down = std::make_shared<const kernels::HadamardTransform>(c.intermediate_size);
  record.mlp_down = down->construction();
  for (int64_t l = 0; l < c.num_layers; ++l)
    rotate_rows(linears[static_cast<size_t>(model.block_linears(l).down_or_fc2)].mutable_weight(), c.intermediate_size,
                *down, {});
  model.set_mlp_down_transform(std::move(down));
  return record;
}

void restore_rotation(Transformer& model, std::vector<float> lm_head_bias) {
  const ModelConfig& c = model.config();
  if (c.norm == NormKind::LayerNorm) model.use_rms_norm();
  const TensorNames names = tensor_names(c);
  if (c.tie_word_embeddings) {
    if (!model.checkpoint().contains(names.lm_head))
      fail("{}: a rotated checkpoint needs its own {} (the rotated embeddings and lm_head differ)", model.directory().string(),
           names.lm_head);
    model.replace_tensor(Transformer::StoredTensor::LmHead, to_f32(model.checkpoint().tensor(names.lm_head)));
  }
  if (!lm_head_bias.empty() && static_cast<int64_t>(lm_head_bias.size()) != c.vocab_size)
    fail("{}: lm_head bias of {} values for a vocabulary of {}", model.directory().string(), lm_head_bias.size(), c.vocab_size);
  model.lm_head_bias() = std::move(lm_head_bias);
  model.set_mlp_down_transform(std::make_shared<const kernels::HadamardTransform>(c.intermediate_size));
}

}  // namespace cq
