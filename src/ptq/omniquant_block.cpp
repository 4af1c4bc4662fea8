#include "ptq/omniquant_block.h"

#include <algorithm>
#include <cmath>

#include "kernels/gemm_f32.h"
#include "kernels/matmul.h"
#include "kernels/rope.h"
#include "util/error.h"

namespace cq {

namespace {

constexpr float kMinScale = 1e-5f, kMaxScale = 1e4f, kMaxZeroPoint = 1e4f;  // OmniQuant's clamps
constexpr int64_t kParallelElements = int64_t{1} << 15;

using Vec = std::vector<float>;
size_t at(int64_t i) { return static_cast<size_t>(i); }
float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

// One quantization range: its extremes, clipping factors and the resulting step.
struct RangeQuant {
  float xmax, xmin, up, low, scale_raw, scale, zero;
};

RangeQuant range_quant(const float* x, int64_t width, float qmax, const float* up, const float* low) {
  RangeQuant q{};
  q.xmax = x[0];
  q.xmin = x[0];
  for (int64_t i = 1; i < width; ++i) {
    q.xmax = std::max(q.xmax, x[i]);
    q.xmin = std::min(q.xmin, x[i]);
  }
  q.up = up ? sigmoid(*up) : 1.f;
  q.low = low ? sigmoid(*low) : 1.f;
  const float top = up ? q.up * q.xmax : q.xmax;
  const float bottom = low ? q.low * q.xmin : q.xmin;
  q.scale_raw = (top - bottom) / qmax;
  q.scale = std::clamp(q.scale_raw, kMinScale, kMaxScale);
  q.zero = std::nearbyint(std::clamp(-bottom / q.scale, -kMaxZeroPoint, kMaxZeroPoint));
  return q;
}

float code_max(int bits) { return static_cast<float>((int64_t{1} << bits) - 1); }

}  // namespace

void omni_fake_quantize(const float* x, int64_t rows, int64_t width, int bits, const float* up, const float* low,
                        float* y) {
  if (bits >= 16) {
    std::copy(x, x + rows * width, y);
    return;
  }
  const float qmax = code_max(bits);
#pragma omp parallel for schedule(static) if (rows * width > kParallelElements)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * width;
    float* yr = y + r * width;
    const RangeQuant q = range_quant(xr, width, qmax, up ? up + r : nullptr, low ? low + r : nullptr);
    for (int64_t i = 0; i < width; ++i) {
      const float code = std::clamp(std::nearbyint(xr[i] / q.scale) + q.zero, 0.f, qmax);
      yr[i] = (code - q.zero) * q.scale;
    }
  }
}

// y = (clamp(round(x/s) + z, 0, qmax) − z)·s with round's gradient taken as 1 (straight
// through), z's as 0 (OmniQuant rounds the zero point without the estimator), clamp's 1
// inside [0, qmax] (inclusive) and 0 outside, and s = clamp((σ(u)·max − σ(l)·min)/qmax)
// differentiated through the clamp's inside and through max/min, whose gradient goes to the
// extreme elements, split evenly among ties (as torch's amax/amin).
void omni_fake_quantize_backward(const float* x, const float* dy, int64_t rows, int64_t width, int bits,
                                 const float* up, const float* low, float* dx, float* dup, float* dlow) {
  if (bits >= 16) {
    std::copy(dy, dy + rows * width, dx);
    if (up) std::fill(dup, dup + rows, 0.f);
    if (low) std::fill(dlow, dlow + rows, 0.f);
    return;
  }
  const float qmax = code_max(bits);
#pragma omp parallel for schedule(static) if (rows * width > kParallelElements)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * width;
    const float* dyr = dy + r * width;
    float* dxr = dx + r * width;
    const RangeQuant q = range_quant(xr, width, qmax, up ? up + r : nullptr, low ? low + r : nullptr);
    double scale_gradient = 0;
    int64_t max_count = 0, min_count = 0;
    for (int64_t i = 0; i < width; ++i) {
      const float t = xr[i] / q.scale;
      const float v = std::nearbyint(t) + q.zero;
      const bool inside = v >= 0.f && v <= qmax;
      const float code = std::clamp(v, 0.f, qmax);
      dxr[i] = inside ? dyr[i] : 0.f;
      scale_gradient += static_cast<double>(dyr[i]) * static_cast<double>((code - q.zero) - (inside ? t : 0.f));
      max_count += xr[i] == q.xmax;
      min_count += xr[i] == q.xmin;
    }
    const bool scale_inside = q.scale_raw >= kMinScale && q.scale_raw <= kMaxScale;
    const auto range_gradient = static_cast<float>(scale_inside ? scale_gradient / static_cast<double>(qmax) : 0.0);
    if (up) dup[r] = range_gradient * q.xmax * q.up * (1.f - q.up);
    if (low) dlow[r] = -range_gradient * q.xmin * q.low * (1.f - q.low);
    const float max_share = range_gradient * q.up / static_cast<float>(max_count);
    const float min_share = -range_gradient * q.low / static_cast<float>(min_count);
    for (int64_t i = 0; i < width; ++i) {
      if (xr[i] == q.xmax) dxr[i] += max_share;
      if (xr[i] == q.xmin) dxr[i] += min_share;
    }
  }
}

std::vector<std::vector<float>*> OmniBlockParameters::all() {
  std::vector<std::vector<float>*> list = {&qkv_scale, &qkv_shift, &out_scale, &out_shift, &fc1_scale, &fc1_shift, &qkt_scale};
  for (auto& v : upbound) list.push_back(&v);
  for (auto& v : lowbound) list.push_back(&v);
  return list;
}

OmniBlockParameters omni_zero_like(const OmniBlockParameters& parameters) {
  OmniBlockParameters zeros = parameters;
  for (auto* v : zeros.all()) std::fill(v->begin(), v->end(), 0.f);
  return zeros;
}

// ------------------------------------------------------------------------------ workspace

struct OmniBlockWorkspace {
  // Effective (transformed, quantized) weights of the last forward.
  Vec gamma1, beta1, gamma2, beta2;
  std::array<Vec, kOmniLinears> transformed, quantized, bias;
  std::array<const float*, kOmniLinears> weight_used{}, bias_used{};
  const float *gamma1_used = nullptr, *beta1_used = nullptr, *gamma2_used = nullptr, *beta2_used = nullptr;
  // Activations of the last forward.
  Vec n1, mean1, rstd1, a1, q, k, v, qq, kq, vq, probs, o_in, a2, x1, n2, mean2, rstd2, a3, h, u, m, a4, x2;
  // Backward scratch.
  Vec dx2, da4, dm, dh, du, da3, dn2, dx1, da2, do_in, dprobs, dqq, dkq, dvq, dq, dk, dv, da1, dn1;
  std::array<Vec, kOmniLinears> dweight, dbias;
  Vec dgamma1, dbeta1, dgamma2, dbeta2;
};

void OmniBlockWorkspaceDeleter::operator()(OmniBlockWorkspace* workspace) const { delete workspace; }
OmniWorkspacePtr make_omni_workspace() { return OmniWorkspacePtr(new OmniBlockWorkspace()); }

OmniSiteInputs omni_site_inputs(const OmniBlockWorkspace& workspace) {
  return {workspace.n1.data(), workspace.o_in.data(), workspace.n2.data()};
}

namespace {

void resize(Vec& v, int64_t n) { v.resize(at(n)); }

// How LET transforms one linear (OmniQuant's smooth_ln_fcs / smooth_fc_fc / smooth_q_k):
// W'' = W·diag(column_scale) with each row r then divided or multiplied by row_scale,
// b'' = (b + W·column_shift − row_shift) over or times the same row factor. Key/value-width
// vectors read by query-width rows or columns go through the head map.
struct LinearTransform {
  const Vec* column_scale = nullptr;
  const Vec* column_shift = nullptr;
  bool query_columns = false;
  const Vec* row_scale = nullptr;
  bool row_divide = false;
  bool query_rows = false;
  const Vec* row_shift = nullptr;
};

struct HeadMap {
  int64_t head_dim = 1, group = 1;
  int64_t operator()(int64_t query_index) const {
    return (query_index / head_dim) / group * head_dim + query_index % head_dim;
  }
};

std::array<LinearTransform, kOmniLinears> transforms(const OmniBlockParameters& p, bool llama) {
  std::array<LinearTransform, kOmniLinears> t{};
  for (OmniLinear l : {OmniLinear::Q, OmniLinear::K, OmniLinear::V}) {
    t[at(static_cast<int>(l))].column_scale = &p.qkv_scale;
    t[at(static_cast<int>(l))].column_shift = &p.qkv_shift;
  }
  auto& q = t[at(static_cast<int>(OmniLinear::Q))];
  q.row_scale = &p.qkt_scale, q.row_divide = true, q.query_rows = true;
  auto& k = t[at(static_cast<int>(OmniLinear::K))];
  k.row_scale = &p.qkt_scale;
  auto& v = t[at(static_cast<int>(OmniLinear::V))];
  v.row_scale = &p.out_scale, v.row_divide = true, v.row_shift = &p.out_shift;
  auto& o = t[at(static_cast<int>(OmniLinear::O))];
  o.column_scale = &p.out_scale, o.column_shift = &p.out_shift, o.query_columns = true;
  t[at(static_cast<int>(OmniLinear::Fc1))].column_scale = &p.fc1_scale;
  t[at(static_cast<int>(OmniLinear::Fc1))].column_shift = &p.fc1_shift;
  if (llama) {
    t[at(static_cast<int>(OmniLinear::Up))].column_scale = &p.fc1_scale;
    t[at(static_cast<int>(OmniLinear::Up))].column_shift = &p.fc1_shift;
  }
  return t;
}

// A weight (out x in) quantized in ranges of `group_size` inputs (0: whole rows), the last
// range of a row the shorter remainder where the group does not divide `in` (as the applier,
// ptq/omniquant.cpp); factors and their gradients in row-major range order.
void weight_fake_quantize(const float* w, int64_t out, int64_t in, int64_t group_size, int bits, const float* up,
                          const float* low, float* y) {
  const int64_t width = group_size > 0 ? std::min(group_size, in) : in;
  if (in % width == 0) {
    omni_fake_quantize(w, out * in / width, width, bits, up, low, y);
    return;
  }
  const int64_t full = in / width, groups = full + 1;
  for (int64_t k = 0; k < out; ++k) {
    const int64_t first = k * groups;
    omni_fake_quantize(w + k * in, full, width, bits, up ? up + first : nullptr, low ? low + first : nullptr, y + k * in);
    omni_fake_quantize(w + k * in + full * width, 1, in - full * width, bits, up ? up + first + full : nullptr,
                       low ? low + first + full : nullptr, y + k * in + full * width);
  }
}

void weight_fake_quantize_backward(const float* w, const float* dy, int64_t out, int64_t in, int64_t group_size, int bits,
                                   const float* up, const float* low, float* dx, float* dup, float* dlow) {
  const int64_t width = group_size > 0 ? std::min(group_size, in) : in;
  if (in % width == 0) {
    omni_fake_quantize_backward(w, dy, out * in / width, width, bits, up, low, dx, dup, dlow);
    return;
  }
  const int64_t full = in / width, groups = full + 1, tail = full * width;
  for (int64_t k = 0; k < out; ++k) {
    const int64_t first = k * groups;
    omni_fake_quantize_backward(w + k * in, dy + k * in, full, width, bits, up ? up + first : nullptr,
                                low ? low + first : nullptr, dx + k * in, up ? dup + first : nullptr,
                                low ? dlow + first : nullptr);
    omni_fake_quantize_backward(w + k * in + tail, dy + k * in + tail, 1, in - tail, bits, up ? up + first + full : nullptr,
                                low ? low + first + full : nullptr, dx + k * in + tail, up ? dup + first + full : nullptr,
                                low ? dlow + first + full : nullptr);
  }
}

void transform_linear(const OmniDenseLinear& linear, const LinearTransform& t, const HeadMap& map, Vec& weight,
                      Vec& bias) {
  const int64_t out = linear.out, in = linear.in;
  resize(weight, out * in);
  resize(bias, out);
  const auto col = [&](int64_t c) { return t.query_columns ? map(c) : c; };
  const auto row = [&](int64_t r) { return t.query_rows ? map(r) : r; };
#pragma omp parallel for schedule(static) if (out * in > kParallelElements)
  for (int64_t r = 0; r < out; ++r) {
    const float* w = linear.weight.data() + r * in;
    float* wt = weight.data() + r * in;
    float shifted = 0;
    if (t.column_shift) {
      for (int64_t c = 0; c < in; ++c) shifted += w[c] * (*t.column_shift)[at(col(c))];
    }
    float b = (linear.bias.empty() ? 0.f : linear.bias[at(r)]) + shifted;
    if (t.row_shift) b -= (*t.row_shift)[at(r)];
    for (int64_t c = 0; c < in; ++c) wt[c] = t.column_scale ? w[c] * (*t.column_scale)[at(col(c))] : w[c];
    if (t.row_scale) {
      const float f = (*t.row_scale)[at(row(r))];
      if (t.row_divide) {
        for (int64_t c = 0; c < in; ++c) wt[c] /= f;
        b /= f;
      } else {
        for (int64_t c = 0; c < in; ++c) wt[c] *= f;
        b *= f;
      }
    }
    bias[at(r)] = b;
  }
}

// The gradient of transform_linear: from dW'' and db'' to the LET vectors (accumulated).
void transform_linear_backward(const OmniDenseLinear& linear, const LinearTransform& t, const HeadMap& map,
                               const Vec& dweight, const Vec& dbias, OmniBlockParameters& g,
                               const OmniBlockParameters& p) {
  const int64_t out = linear.out, in = linear.in;
  const auto col = [&](int64_t c) { return t.query_columns ? map(c) : c; };
  const auto row = [&](int64_t r) { return t.query_rows ? map(r) : r; };
  // The gradient vector matching a parameter vector of p.
  const auto grad_of = [&](const Vec* v) -> Vec* {
    const auto list = const_cast<OmniBlockParameters&>(p).all();
    const auto glist = g.all();
    for (size_t i = 0; i < list.size(); ++i)
      if (list[i] == v) return glist[i];
    fail("internal error: unknown LET vector");
  };
  Vec* dcolumn_scale = t.column_scale ? grad_of(t.column_scale) : nullptr;
  Vec* dcolumn_shift = t.column_shift ? grad_of(t.column_shift) : nullptr;
  Vec* drow_scale = t.row_scale ? grad_of(t.row_scale) : nullptr;
  Vec* drow_shift = t.row_shift ? grad_of(t.row_shift) : nullptr;
  std::vector<double> column_scale_sum(at(in), 0.0), column_shift_sum(at(in), 0.0);
  for (int64_t r = 0; r < out; ++r) {
    const float* w = linear.weight.data() + r * in;
    const float* dw = dweight.data() + r * in;
    float shifted = 0;
    if (t.column_shift)
      for (int64_t c = 0; c < in; ++c) shifted += w[c] * (*t.column_shift)[at(col(c))];
    float pre = (linear.bias.empty() ? 0.f : linear.bias[at(r)]) + shifted;
    if (t.row_shift) pre -= (*t.row_shift)[at(r)];
    const float db = dbias.empty() ? 0.f : dbias[at(r)];
    float factor = 1.f;  // d W''/d base
    if (t.row_scale) {
      const float f = (*t.row_scale)[at(row(r))];
      double acc = static_cast<double>(db) * pre;
      for (int64_t c = 0; c < in; ++c) {
        const float base = t.column_scale ? w[c] * (*t.column_scale)[at(col(c))] : w[c];
        acc += static_cast<double>(dw[c]) * base;
      }
      if (t.row_divide) {
        (*drow_scale)[at(row(r))] += static_cast<float>(-acc / (static_cast<double>(f) * f));
        factor = 1.f / f;
      } else {
        (*drow_scale)[at(row(r))] += static_cast<float>(acc);
        factor = f;
      }
    }
    const float dpre = db * factor;
    if (t.row_shift) (*drow_shift)[at(r)] -= dpre;
    if (t.column_scale)
      for (int64_t c = 0; c < in; ++c) column_scale_sum[at(c)] += static_cast<double>(dw[c] * factor) * w[c];
    if (t.column_shift)
      for (int64_t c = 0; c < in; ++c) column_shift_sum[at(c)] += static_cast<double>(dpre) * w[c];
  }
  for (int64_t c = 0; c < in; ++c) {
    if (dcolumn_scale) (*dcolumn_scale)[at(col(c))] += static_cast<float>(column_scale_sum[at(c)]);
    if (dcolumn_shift) (*dcolumn_shift)[at(col(c))] += static_cast<float>(column_shift_sum[at(c)]);
  }
}

// γ' = γ/s, β' = (β − t)/s (β = 0 for RMSNorm, which then gains a bias: OmniQuant's temp_bias).
void transform_norm(const Vec& gamma, const Vec& beta, const Vec& scale, const Vec& shift, Vec& gamma_out,
                    Vec& beta_out) {
  gamma_out.resize(gamma.size());
  beta_out.resize(gamma.size());
  for (size_t c = 0; c < gamma.size(); ++c) {
    gamma_out[c] = gamma[c] / scale[c];
    beta_out[c] = ((beta.empty() ? 0.f : beta[c]) - shift[c]) / scale[c];
  }
}

void transform_norm_backward(const Vec& gamma, const Vec& beta, const Vec& scale, const Vec& shift,
                             const Vec& dgamma, const Vec& dbeta, Vec& dscale, Vec& dshift) {
  for (size_t c = 0; c < gamma.size(); ++c) {
    const float s = scale[c];
    const float b = (beta.empty() ? 0.f : beta[c]) - shift[c];
    dscale[c] += -(dgamma[c] * gamma[c] + dbeta[c] * b) / (s * s);
    dshift[c] += -dbeta[c] / s;
  }
}

// LayerNorm (layer_norm true) or RMSNorm, then ·γ + β (β may be null).
void norm_forward(const float* x, const float* gamma, const float* beta, int64_t rows, int64_t width, float eps,
                  bool layer_norm, float* y, float* mean, float* rstd) {
#pragma omp parallel for schedule(static) if (rows * width > kParallelElements)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * width;
    double sum = 0, squares = 0;
    for (int64_t i = 0; i < width; ++i) sum += xr[i];
    const float mu = layer_norm ? static_cast<float>(sum / static_cast<double>(width)) : 0.f;
    for (int64_t i = 0; i < width; ++i) squares += static_cast<double>(xr[i] - mu) * (xr[i] - mu);
    const auto variance = static_cast<float>(squares / static_cast<double>(width));
    const float inv = 1.f / std::sqrt(variance + eps);
    mean[r] = mu;
    rstd[r] = inv;
    for (int64_t i = 0; i < width; ++i) y[r * width + i] = (xr[i] - mu) * inv * gamma[i] + (beta ? beta[i] : 0.f);
  }
}

// dγ, dβ (overwritten) and, when dx is not null, dx (overwritten).
void norm_backward(const float* x, const float* mean, const float* rstd, const float* gamma, const float* dy,
                   int64_t rows, int64_t width, bool layer_norm, Vec& dgamma, Vec& dbeta, float* dx) {
  std::vector<double> dg(at(width), 0.0), db(at(width), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < width; ++i) {
      const float xhat = (x[r * width + i] - mean[r]) * rstd[r];
      dg[at(i)] += static_cast<double>(dy[r * width + i]) * xhat;
      db[at(i)] += dy[r * width + i];
    }
  dgamma.assign(at(width), 0.f);
  dbeta.assign(at(width), 0.f);
  for (int64_t i = 0; i < width; ++i) dgamma[at(i)] = static_cast<float>(dg[at(i)]), dbeta[at(i)] = static_cast<float>(db[at(i)]);
  if (!dx) return;
#pragma omp parallel for schedule(static) if (rows * width > kParallelElements)
  for (int64_t r = 0; r < rows; ++r) {
    double mean_dxhat = 0, mean_dxhat_xhat = 0;
    for (int64_t i = 0; i < width; ++i) {
      const float xhat = (x[r * width + i] - mean[r]) * rstd[r];
      const float dxhat = dy[r * width + i] * gamma[i];
      mean_dxhat += dxhat;
      mean_dxhat_xhat += static_cast<double>(dxhat) * xhat;
    }
    mean_dxhat /= static_cast<double>(width);
    mean_dxhat_xhat /= static_cast<double>(width);
    for (int64_t i = 0; i < width; ++i) {
      const float xhat = (x[r * width + i] - mean[r]) * rstd[r];
      const float dxhat = dy[r * width + i] * gamma[i];
      dx[r * width + i] =
          rstd[r] * (dxhat - (layer_norm ? static_cast<float>(mean_dxhat) : 0.f) - xhat * static_cast<float>(mean_dxhat_xhat));
    }
  }
}

// y = a·Wᵀ + b for `rows` rows.
void linear_forward(const float* a, int64_t rows, const float* weight, const float* bias, int64_t out, int64_t in,
                    float* y) {
  kernels::gemm_f32(a, weight, bias, y, rows, out, in);
}

// dW = dyᵀ·a, db = column sums of dy (when db is not empty-sized), da (+)= dy·W.
void linear_backward(const float* a, const float* dy, int64_t rows, const float* weight, int64_t out, int64_t in,
                     Vec& dweight, Vec* dbias, float* da, bool accumulate_da) {
  resize(dweight, out * in);
  kernels::matmul_general(true, false, out, in, rows, 1.f, dy, out, a, in, 0.f, dweight.data(), in);
  if (dbias) {
    std::vector<double> sums(at(out), 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < out; ++o) sums[at(o)] += dy[r * out + o];
    dbias->resize(at(out));
    for (int64_t o = 0; o < out; ++o) (*dbias)[at(o)] = static_cast<float>(sums[at(o)]);
  }
  if (da) kernels::matmul_general(false, false, rows, in, out, 1.f, dy, out, weight, in, accumulate_da ? 1.f : 0.f, da, in);
}

void prepare_weights(const OmniBlockWeights& block, const OmniBlockParameters& p, const OmniQuantSettings& settings,
                     bool quantized, OmniBlockWorkspace& ws) {
  const bool let = quantized && settings.let;
  const HeadMap map{block.head_dim, block.heads / block.kv_heads};
  const auto t = transforms(p, block.llama);
  if (let) {
    transform_norm(block.norm1_weight, block.norm1_bias, p.qkv_scale, p.qkv_shift, ws.gamma1, ws.beta1);
    transform_norm(block.norm2_weight, block.norm2_bias, p.fc1_scale, p.fc1_shift, ws.gamma2, ws.beta2);
    ws.gamma1_used = ws.gamma1.data(), ws.beta1_used = ws.beta1.data();
    ws.gamma2_used = ws.gamma2.data(), ws.beta2_used = ws.beta2.data();
  } else {
    ws.gamma1_used = block.norm1_weight.data();
    ws.beta1_used = block.norm1_bias.empty() ? nullptr : block.norm1_bias.data();
    ws.gamma2_used = block.norm2_weight.data();
    ws.beta2_used = block.norm2_bias.empty() ? nullptr : block.norm2_bias.data();
  }
  for (int i = 0; i < kOmniLinears; ++i) {
    const OmniDenseLinear& linear = block.linears[at(i)];
    if (linear.out == 0) continue;
    const bool transformed = let && static_cast<OmniLinear>(i) != OmniLinear::Fc2;
    const float* weight = linear.weight.data();
    if (transformed) {
      transform_linear(linear, t[at(i)], map, ws.transformed[at(i)], ws.bias[at(i)]);
      weight = ws.transformed[at(i)].data();
      ws.bias_used[at(i)] = ws.bias[at(i)].data();
    } else {
      ws.bias_used[at(i)] = linear.bias.empty() ? nullptr : linear.bias.data();
    }
    if (quantized && settings.weight_bits < 16) {
      resize(ws.quantized[at(i)], linear.out * linear.in);
      const bool lwc = settings.lwc;
      weight_fake_quantize(weight, linear.out, linear.in, settings.group_size, settings.weight_bits,
                           lwc ? p.upbound[at(i)].data() : nullptr, lwc ? p.lowbound[at(i)].data() : nullptr,
                           ws.quantized[at(i)].data());
      weight = ws.quantized[at(i)].data();
    }
    ws.weight_used[at(i)] = weight;
  }
}

void add_into(float* y, const float* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelElements)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace

double omni_block_run(const OmniBlockWeights& block, const OmniBlockParameters& p, const OmniQuantSettings& settings,
                      bool quantized, const float* x, int64_t length, const float* target, float* out,
                      OmniBlockParameters* gradients, OmniBlockWorkspace& ws) {
  const int64_t L = length, H = block.hidden, QW = block.q_width(), KW = block.kv_width(), F = block.ffn;
  const int64_t hd = block.head_dim, group = block.heads / block.kv_heads;
  const bool llama = block.llama;
  const int abits = quantized ? settings.activation_bits : 16;
  auto linear = [&](OmniLinear l) { return static_cast<size_t>(l); };
  prepare_weights(block, p, settings, quantized, ws);

  // ---------------------------------------------------------------------------- forward
  for (Vec* v : {&ws.n1, &ws.a1, &ws.x1, &ws.n2, &ws.a3, &ws.x2}) resize(*v, L * H);
  for (Vec* v : {&ws.mean1, &ws.rstd1, &ws.mean2, &ws.rstd2}) resize(*v, L);
  for (Vec* v : {&ws.q, &ws.qq, &ws.o_in, &ws.a2}) resize(*v, L * QW);
  for (Vec* v : {&ws.k, &ws.v, &ws.kq, &ws.vq}) resize(*v, L * KW);
  for (Vec* v : {&ws.h, &ws.m, &ws.a4}) resize(*v, L * F);
  if (llama) resize(ws.u, L * F);
  resize(ws.probs, block.heads * L * L);

  norm_forward(x, ws.gamma1_used, ws.beta1_used, L, H, block.norm_eps, !llama, ws.n1.data(), ws.mean1.data(), ws.rstd1.data());
  omni_fake_quantize(ws.n1.data(), L, H, abits, nullptr, nullptr, ws.a1.data());
  linear_forward(ws.a1.data(), L, ws.weight_used[linear(OmniLinear::Q)], ws.bias_used[linear(OmniLinear::Q)], QW, H, ws.q.data());
  linear_forward(ws.a1.data(), L, ws.weight_used[linear(OmniLinear::K)], ws.bias_used[linear(OmniLinear::K)], KW, H, ws.k.data());
  linear_forward(ws.a1.data(), L, ws.weight_used[linear(OmniLinear::V)], ws.bias_used[linear(OmniLinear::V)], KW, H, ws.v.data());
  std::vector<int64_t> positions(at(L));
  const auto scaling = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  if (llama) {
    for (int64_t i = 0; i < L; ++i) positions[at(i)] = i;
    kernels::apply_rope(ws.q.data(), block.heads, hd, positions, block.rope_inv_freq.data());
    kernels::apply_rope(ws.k.data(), block.kv_heads, hd, positions, block.rope_inv_freq.data());
  } else {
    for (float& value : ws.q) value *= scaling;
  }
  // q, k, v quantizers: LLaMA per head and token (after RoPE), OPT per token across heads.
  const int64_t q_rows = llama ? L * block.heads : L, kv_rows = llama ? L * block.kv_heads : L;
  omni_fake_quantize(ws.q.data(), q_rows, QW * L / q_rows, abits, nullptr, nullptr, ws.qq.data());
  omni_fake_quantize(ws.k.data(), kv_rows, KW * L / kv_rows, abits, nullptr, nullptr, ws.kq.data());
  omni_fake_quantize(ws.v.data(), kv_rows, KW * L / kv_rows, abits, nullptr, nullptr, ws.vq.data());
  const float alpha = llama ? scaling : 1.f;
  for (int64_t head = 0; head < block.heads; ++head) {
    const int64_t kv = head / group;
    float* probs = ws.probs.data() + head * L * L;
    kernels::matmul_abt(ws.qq.data() + head * hd, QW, ws.kq.data() + kv * hd, KW, probs, L, L, L, hd, alpha);
#pragma omp parallel for schedule(static) if (L * L > kParallelElements)
    for (int64_t i = 0; i < L; ++i) {
      float* row = probs + i * L;
      float top = row[0];
      for (int64_t j = 1; j <= i; ++j) top = std::max(top, row[j]);
      double sum = 0;
      for (int64_t j = 0; j <= i; ++j) sum += (row[j] = std::exp(row[j] - top));
      const auto inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
      for (int64_t j = i + 1; j < L; ++j) row[j] = 0.f;
    }
    kernels::matmul_ab(probs, L, ws.vq.data() + kv * hd, KW, ws.o_in.data() + head * hd, QW, L, hd, L);
  }
  omni_fake_quantize(ws.o_in.data(), L, QW, abits, nullptr, nullptr, ws.a2.data());
  linear_forward(ws.a2.data(), L, ws.weight_used[linear(OmniLinear::O)], ws.bias_used[linear(OmniLinear::O)], H, QW, ws.x1.data());
  add_into(ws.x1.data(), x, L * H);
  norm_forward(ws.x1.data(), ws.gamma2_used, ws.beta2_used, L, H, block.norm_eps, !llama, ws.n2.data(), ws.mean2.data(), ws.rstd2.data());
  omni_fake_quantize(ws.n2.data(), L, H, abits, nullptr, nullptr, ws.a3.data());
  linear_forward(ws.a3.data(), L, ws.weight_used[linear(OmniLinear::Fc1)], ws.bias_used[linear(OmniLinear::Fc1)], F, H, ws.h.data());
  if (llama) {
    linear_forward(ws.a3.data(), L, ws.weight_used[linear(OmniLinear::Up)], ws.bias_used[linear(OmniLinear::Up)], F, H, ws.u.data());
#pragma omp parallel for schedule(static) if (L * F > kParallelElements)
    for (int64_t i = 0; i < L * F; ++i) ws.m[at(i)] = ws.h[at(i)] * sigmoid(ws.h[at(i)]) * ws.u[at(i)];
  } else {
    for (int64_t i = 0; i < L * F; ++i) ws.m[at(i)] = std::max(ws.h[at(i)], 0.f);
  }
  omni_fake_quantize(ws.m.data(), L, F, abits, nullptr, nullptr, ws.a4.data());
  linear_forward(ws.a4.data(), L, ws.weight_used[linear(OmniLinear::Fc2)], ws.bias_used[linear(OmniLinear::Fc2)], H, F, ws.x2.data());
  add_into(ws.x2.data(), ws.x1.data(), L * H);
  if (out) std::copy(ws.x2.begin(), ws.x2.end(), out);
  if (!target) return 0.0;
  double loss = 0;
  for (int64_t i = 0; i < L * H; ++i) {
    const double d = static_cast<double>(ws.x2[at(i)]) - target[i];
    loss += d * d;
  }
  loss /= static_cast<double>(L * H);
  if (!gradients) return loss;

  // --------------------------------------------------------------------------- backward
  OmniBlockParameters& g = *gradients;
  for (auto* v : g.all()) std::fill(v->begin(), v->end(), 0.f);
  for (Vec* v : {&ws.dx2, &ws.da3, &ws.dn2, &ws.dx1}) resize(*v, L * H);
  for (Vec* v : {&ws.da4, &ws.dm, &ws.dh}) resize(*v, L * F);
  if (llama) resize(ws.du, L * F);
  for (Vec* v : {&ws.da2, &ws.do_in}) resize(*v, L * QW);
  ws.da1.resize(at(L * H));
  ws.dn1.resize(at(L * H));
  for (Vec* v : {&ws.dq, &ws.dqq}) resize(*v, L * QW);
  for (Vec* v : {&ws.dk, &ws.dv}) resize(*v, L * KW);
  ws.dkq.assign(at(L * KW), 0.f);
  ws.dvq.assign(at(L * KW), 0.f);
  resize(ws.dprobs, L * L);
  const auto scale_loss = static_cast<float>(2.0 / static_cast<double>(L * H));
  for (int64_t i = 0; i < L * H; ++i) ws.dx2[at(i)] = scale_loss * (ws.x2[at(i)] - target[i]);
  auto has_bias = [&](OmniLinear l) { return ws.bias_used[linear(l)] != nullptr; };
  auto dbias_of = [&](OmniLinear l) { return has_bias(l) ? &ws.dbias[linear(l)] : nullptr; };

  linear_backward(ws.a4.data(), ws.dx2.data(), L, ws.weight_used[linear(OmniLinear::Fc2)], H, F, ws.dweight[linear(OmniLinear::Fc2)],
                  dbias_of(OmniLinear::Fc2), ws.da4.data(), false);
  omni_fake_quantize_backward(ws.m.data(), ws.da4.data(), L, F, abits, nullptr, nullptr, ws.dm.data(), nullptr, nullptr);
  if (llama) {
#pragma omp parallel for schedule(static) if (L * F > kParallelElements)
    for (int64_t i = 0; i < L * F; ++i) {
      const float gate = ws.h[at(i)], s = sigmoid(gate);
      ws.du[at(i)] = ws.dm[at(i)] * gate * s;
      ws.dh[at(i)] = ws.dm[at(i)] * ws.u[at(i)] * s * (1.f + gate * (1.f - s));
    }
  } else {
    for (int64_t i = 0; i < L * F; ++i) ws.dh[at(i)] = ws.h[at(i)] > 0.f ? ws.dm[at(i)] : 0.f;
  }
  linear_backward(ws.a3.data(), ws.dh.data(), L, ws.weight_used[linear(OmniLinear::Fc1)], F, H, ws.dweight[linear(OmniLinear::Fc1)],
                  dbias_of(OmniLinear::Fc1), ws.da3.data(), false);
  if (llama)
    linear_backward(ws.a3.data(), ws.du.data(), L, ws.weight_used[linear(OmniLinear::Up)], F, H, ws.dweight[linear(OmniLinear::Up)],
                    dbias_of(OmniLinear::Up), ws.da3.data(), true);
  omni_fake_quantize_backward(ws.n2.data(), ws.da3.data(), L, H, abits, nullptr, nullptr, ws.dn2.data(), nullptr, nullptr);
  norm_backward(ws.x1.data(), ws.mean2.data(), ws.rstd2.data(), ws.gamma2_used, ws.dn2.data(), L, H, !llama, ws.dgamma2,
                ws.dbeta2, ws.dx1.data());
  add_into(ws.dx1.data(), ws.dx2.data(), L * H);

  linear_backward(ws.a2.data(), ws.dx1.data(), L, ws.weight_used[linear(OmniLinear::O)], H, QW, ws.dweight[linear(OmniLinear::O)],
                  dbias_of(OmniLinear::O), ws.da2.data(), false);
  omni_fake_quantize_backward(ws.o_in.data(), ws.da2.data(), L, QW, abits, nullptr, nullptr, ws.do_in.data(), nullptr, nullptr);
  for (int64_t head = 0; head < block.heads; ++head) {
    const int64_t kv = head / group;
    const float* probs = ws.probs.data() + head * L * L;
    float* dprobs = ws.dprobs.data();
    kernels::matmul_abt(ws.do_in.data() + head * hd, QW, ws.vq.data() + kv * hd, KW, dprobs, L, L, L, hd);
    kernels::matmul_general(true, false, L, hd, L, 1.f, probs, L, ws.do_in.data() + head * hd, QW, 1.f,
                            ws.dvq.data() + kv * hd, KW);
#pragma omp parallel for schedule(static) if (L * L > kParallelElements)
    for (int64_t i = 0; i < L; ++i) {
      const float* p_row = probs + i * L;
      float* d_row = dprobs + i * L;
      double dot = 0;
      for (int64_t j = 0; j <= i; ++j) dot += static_cast<double>(p_row[j]) * d_row[j];
      for (int64_t j = 0; j <= i; ++j) d_row[j] = alpha * p_row[j] * (d_row[j] - static_cast<float>(dot));
      for (int64_t j = i + 1; j < L; ++j) d_row[j] = 0.f;
    }
    kernels::matmul_ab(dprobs, L, ws.kq.data() + kv * hd, KW, ws.dqq.data() + head * hd, QW, L, hd, L);
    kernels::matmul_general(true, false, L, hd, L, 1.f, dprobs, L, ws.qq.data() + head * hd, QW, 1.f,
                            ws.dkq.data() + kv * hd, KW);
  }
  omni_fake_quantize_backward(ws.q.data(), ws.dqq.data(), q_rows, QW * L / q_rows, abits, nullptr, nullptr, ws.dq.data(), nullptr, nullptr);
  omni_fake_quantize_backward(ws.k.data(), ws.dkq.data(), kv_rows, KW * L / kv_rows, abits, nullptr, nullptr, ws.dk.data(), nullptr, nullptr);
  omni_fake_quantize_backward(ws.v.data(), ws.dvq.data(), kv_rows, KW * L / kv_rows, abits, nullptr, nullptr, ws.dv.data(), nullptr, nullptr);
  if (llama) {
    // RoPE is a rotation: its transpose turns by the opposite angles.
    for (int64_t i = 0; i < L; ++i) positions[at(i)] = -i;
    kernels::apply_rope(ws.dq.data(), block.heads, hd, positions, block.rope_inv_freq.data());
    kernels::apply_rope(ws.dk.data(), block.kv_heads, hd, positions, block.rope_inv_freq.data());
  } else {
    for (float& value : ws.dq) value *= scaling;
  }
  linear_backward(ws.a1.data(), ws.dq.data(), L, ws.weight_used[linear(OmniLinear::Q)], QW, H, ws.dweight[linear(OmniLinear::Q)],
                  dbias_of(OmniLinear::Q), ws.da1.data(), false);
  linear_backward(ws.a1.data(), ws.dk.data(), L, ws.weight_used[linear(OmniLinear::K)], KW, H, ws.dweight[linear(OmniLinear::K)],
                  dbias_of(OmniLinear::K), ws.da1.data(), true);
  linear_backward(ws.a1.data(), ws.dv.data(), L, ws.weight_used[linear(OmniLinear::V)], KW, H, ws.dweight[linear(OmniLinear::V)],
                  dbias_of(OmniLinear::V), ws.da1.data(), true);
  omni_fake_quantize_backward(ws.n1.data(), ws.da1.data(), L, H, abits, nullptr, nullptr, ws.dn1.data(), nullptr, nullptr);
  norm_backward(x, ws.mean1.data(), ws.rstd1.data(), ws.gamma1_used, ws.dn1.data(), L, H, !llama, ws.dgamma1, ws.dbeta1, nullptr);

  // Through the weight quantizer (LWC) and LET to the parameters.
  const bool let = settings.let;
  const HeadMap map{hd, group};
  const auto t = transforms(p, llama);
  for (int i = 0; i < kOmniLinears; ++i) {
    const OmniDenseLinear& lin = block.linears[at(i)];
    if (lin.out == 0) continue;
    Vec& dweight = ws.dweight[at(i)];
    const bool transformed = let && static_cast<OmniLinear>(i) != OmniLinear::Fc2;
    if (settings.weight_bits < 16) {
      const float* source = transformed ? ws.transformed[at(i)].data() : lin.weight.data();
      Vec dsource(dweight.size());
      const bool lwc = settings.lwc;
      weight_fake_quantize_backward(source, dweight.data(), lin.out, lin.in, settings.group_size, settings.weight_bits,
                                    lwc ? p.upbound[at(i)].data() : nullptr, lwc ? p.lowbound[at(i)].data() : nullptr,
                                    dsource.data(), lwc ? g.upbound[at(i)].data() : nullptr,
                                    lwc ? g.lowbound[at(i)].data() : nullptr);
      dweight.swap(dsource);
    }
    if (transformed) {
      static const Vec kNoBias;
      transform_linear_backward(lin, t[at(i)], map, dweight, has_bias(static_cast<OmniLinear>(i)) ? ws.dbias[at(i)] : kNoBias, g, p);
    }
  }
  if (let) {
    transform_norm_backward(block.norm1_weight, block.norm1_bias, p.qkv_scale, p.qkv_shift, ws.dgamma1, ws.dbeta1,
                            g.qkv_scale, g.qkv_shift);
    transform_norm_backward(block.norm2_weight, block.norm2_bias, p.fc1_scale, p.fc1_shift, ws.dgamma2, ws.dbeta2,
                            g.fc1_scale, g.fc1_shift);
  }
  return loss;
}

int64_t omni_weight_ranges(int64_t out, int64_t in, int64_t group_size) {
  const int64_t width = group_size > 0 ? std::min(group_size, in) : in;
  return out * ((in + width - 1) / width);
}

}  // namespace cq
