#include "ptq/integer_linear.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>

#include "io/safetensors.h"
#include "kernels/gemm_int4.h"
#include "kernels/gemm_int8.h"
#include "quant/crossquant.h"
#include "ptq/gptq.h"
#include "ptq/quantized_checkpoint.h"
#include "ptq/smoothquant.h"
#include "quant/method_table.h"
#include "quant/quant_common.h"
#include "quant/scaled_panels.h"
#include "quant/scaled_rows.h"
#include "util/error.h"

namespace cq {

// ---------------------------------------------------------------------------------------
// PackedLinearWeights

namespace {

// W'_kj = W_kj · f_j (one rounding per element).
void scale_columns(const float* weight, int64_t out, int64_t in, const std::vector<float>& factors, float* scaled) {
#pragma omp parallel for schedule(static) if (out * in > (1 << 16))
  for (int64_t k = 0; k < out; ++k) {
    const float* src = weight + k * in;
    float* dst = scaled + k * in;
    for (int64_t j = 0; j < in; ++j) dst[j] = src[j] * factors[static_cast<size_t>(j)];
  }
}

}  // namespace

struct PackedLinearWeights::Impl {
  int64_t out = 0, in = 0;
  bool int4 = false;
  kernels::PackedInt8Weights w8;
  std::vector<float> col_scales;  // int8: per output channel
  kernels::PackedInt4Weights w4;
  // requantize_scaled_panels: the factors the codes hold (k_padded; empty: unknown), and per
  // padded channel Δ_k and max_j |w_kj·f_j|.
  std::vector<float> factors, panel_scales, panel_absmax;
};

bool PackedLinearWeights::requantize_ordered_panel(const float* ordered_weight, const std::vector<float>& factors,
                                                   int bits, int64_t panel) {
  Impl& impl = *impl_;
  constexpr int64_t kPanel = kernels::PackedInt8Weights::kPanelWidth;
  const int64_t k_padded = impl.w8.k_padded;
  const ScaledPanel source{ordered_weight + panel * kPanel * k_padded, factors.data(), k_padded, bits};
  float* scales = impl.panel_scales.data() + panel * kPanel;
  if (!per_channel_codes_of_scaled_panel(source, impl.w8.data.data() + panel * kPanel * k_padded,
                                         impl.w8.compensation.data() + panel * kPanel, scales,
                                         impl.panel_absmax.data() + panel * kPanel))
    return false;
  const int64_t first = panel * kPanel;
  std::copy(scales, scales + std::min(kPanel, impl.out - first), impl.col_scales.begin() + first);
  return true;
}

// Channel c of a panel anew (its Δ changed): the per-channel quantizer's arithmetic on the
// scaled row, read and written at its strided places. False when a scaled value is not finite.
bool PackedLinearWeights::requantize_ordered_row(const float* ordered_weight, const std::vector<float>& factors, int bits,
                                                 int64_t panel, int64_t c) {
  Impl& impl = *impl_;
  constexpr int64_t kPanel = kernels::PackedInt8Weights::kPanelWidth;
  const int64_t k_padded = impl.w8.k_padded;
  const float* weight = ordered_weight + panel * kPanel * k_padded + c * 4;
  int8_t* packed = impl.w8.data.data() + panel * kPanel * k_padded + c * 4;
  const auto at = [](int64_t j) { return (j / 4) * kPanel * 4 + j % 4; };
  const float qmax = quant_detail::symmetric_qmax(bits, "per-channel");
  float absmax = 0.f;
  for (int64_t j = 0; j < k_padded; ++j) {
    const float magnitude = std::fabs(weight[at(j)] * factors[static_cast<size_t>(j)]);
    if (!(magnitude <= std::numeric_limits<float>::max())) return false;
    absmax = std::max(absmax, magnitude);
  }
  const float scale = quant_detail::nonzero_divisor(absmax / qmax);
  int32_t sum = 0;
  for (int64_t j = 0; j < k_padded; ++j) {
    const float scaled = weight[at(j)] * factors[static_cast<size_t>(j)];
    const auto code = static_cast<int8_t>(std::clamp(std::nearbyint(scaled / scale), -qmax, qmax));
    packed[at(j)] = code;
    sum += code;
  }
  const int64_t channel = panel * kPanel + c;
  impl.w8.compensation[static_cast<size_t>(channel)] = 128 * sum;
  impl.panel_scales[static_cast<size_t>(channel)] = scale;
  impl.panel_absmax[static_cast<size_t>(channel)] = absmax;
  if (channel < impl.out) impl.col_scales[static_cast<size_t>(channel)] = scale;
  return true;
}

void PackedLinearWeights::requantize_scaled_panels(const Quantizer& quantizer, const std::vector<float>& ordered_weight,
                                                   int64_t out, int64_t in, const std::vector<float>& column_factors) {
  const QuantizerSpec& spec = quantizer.spec();
  if (static_cast<int64_t>(column_factors.size()) != in)
    fail("integer engine: {} column factors for a layer with {} inputs", column_factors.size(), in);
  if (spec.method != "per-channel" || spec.bits <= 4)
    fail("integer engine: panel-ordered re-quantization takes per-channel weights of 5..8 bits");
  constexpr int64_t kPanel = kernels::PackedInt8Weights::kPanelWidth;
  if (!(impl_ && impl_->out == out && impl_->in == in && !impl_->int4 && !impl_->panel_scales.empty())) {
    check_weight_quantizer(spec);
    impl_ = std::make_unique<Impl>();
    impl_->out = out;
    impl_->in = in;
    impl_->w8 = kernels::allocate_int8_weights(out, in);
    impl_->col_scales.resize(static_cast<size_t>(out));
    impl_->panel_scales.resize(static_cast<size_t>(impl_->w8.n_padded));
    impl_->panel_absmax.resize(static_cast<size_t>(impl_->w8.n_padded));
  }
  Impl& impl = *impl_;
  const int64_t k_padded = impl.w8.k_padded;
  if (static_cast<int64_t>(ordered_weight.size()) != impl.w8.n_padded * k_padded)
    fail("integer engine: panel-ordered weight has {} values, expected {}", ordered_weight.size(), impl.w8.n_padded * k_padded);
  std::vector<float> factors(static_cast<size_t>(k_padded), 0.f);
  std::copy(column_factors.begin(), column_factors.end(), factors.begin());
  // Columns whose factor changed; an incremental update when they only grew, and are few.
  std::vector<int64_t> changed;
  bool incremental = impl.factors.size() == factors.size();
  for (int64_t j = 0; incremental && j < in; ++j) {
    const float before = impl.factors[static_cast<size_t>(j)], now = factors[static_cast<size_t>(j)];
    if (now == before) continue;
    if (!(now > before) || static_cast<int64_t>(changed.size()) * 8 >= in) incremental = false;
    changed.push_back(j);
  }
  impl.factors.clear();  // unknown until every panel is done
  const float qmax = quant_detail::symmetric_qmax(spec.bits, "per-channel");
  const int64_t panels = impl.w8.panels();
  std::exception_ptr error;
  bool fell_back = false;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < panels; ++p) {
    try {
      const float* weight = ordered_weight.data() + p * kPanel * k_padded;
      float* absmax = impl.panel_absmax.data() + p * kPanel;
      bool whole = !incremental;
      // A channel whose maximum grows changes its Δ, hence every code of its row: that row
      // anew, or the whole panel when several rows are (one pass over the panel is cheaper
      // than many strided rows).
      constexpr int64_t kMaxRows = 4;
      bool row_anew[kPanel] = {};
      int64_t rows_anew = 0;
      for (size_t n = 0; !whole && n < changed.size(); ++n) {
        const int64_t j = changed[n];
        const float* column = weight + (j / 4) * kPanel * 4 + j % 4;
        const float f = factors[static_cast<size_t>(j)];
        for (int64_t c = 0; c < kPanel; ++c)
          if (!row_anew[c] && !(std::fabs(column[c * 4] * f) <= absmax[c])) {
            row_anew[c] = true;
            if (++rows_anew > kMaxRows) whole = true;
          }
      }
      for (int64_t c = 0; !whole && c < kPanel; ++c)
        if (row_anew[c] && !requantize_ordered_row(ordered_weight.data(), factors, spec.bits, p, c)) whole = true;
      if (whole) {
        if (!requantize_ordered_panel(ordered_weight.data(), factors, spec.bits, p)) {
          // A NaN/Inf: the quantizer on the scaled rows reports it (or, for an overflow it
          // accepts, quantizes them as before).
          const int64_t first = p * kPanel, rows = std::min(kPanel, out - first);
          std::vector<float> scaled(static_cast<size_t>(rows * in));
          for (int64_t r = 0; r < rows; ++r) {
            row_of_int8_panel(ordered_weight.data(), in, p, r, scaled.data() + r * in);
            for (int64_t j = 0; j < in; ++j) scaled[static_cast<size_t>(r * in + j)] *= factors[static_cast<size_t>(j)];
          }
          const QuantizedMatrix q = quantizer.quantize(MatrixView{scaled.data(), rows, in, in}, nullptr);
          const std::vector<int8_t> codes(q.codes.begin(), q.codes.end());
          kernels::pack_int8_panel(codes.data(), in, p, impl.w8);
          std::copy(q.row_scales.begin(), q.row_scales.end(), impl.col_scales.begin() + first);
#pragma omp atomic write
          fell_back = true;
        }
        continue;
      }
      // Δ_k unchanged in this panel: only the changed columns' codes, as the quantizer rounds them.
      int8_t* packed = impl.w8.data.data() + p * kPanel * k_padded;
      int32_t* compensation = impl.w8.compensation.data() + p * kPanel;
      const float* scales = impl.panel_scales.data() + p * kPanel;
      for (const int64_t j : changed) {
        const int64_t offset = (j / 4) * kPanel * 4 + j % 4;
        const float f = factors[static_cast<size_t>(j)];
        for (int64_t c = 0; c < kPanel; ++c) {
          if (row_anew[c]) continue;
          const float scaled = weight[offset + c * 4] * f;
          const auto code = static_cast<int8_t>(std::clamp(std::nearbyint(scaled / scales[c]), -qmax, qmax));
          compensation[c] += 128 * (int32_t{code} - int32_t{packed[offset + c * 4]});
          packed[offset + c * 4] = code;
        }
      }
    } catch (...) {  // no exception may leave an OpenMP region
#pragma omp critical(cq_requantize_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  if (!fell_back) impl.factors = std::move(factors);
}

// Q(W·diag(f)) of one 64-row panel of per-channel weights, packed: row by row through
// per_channel_codes_of_scaled_row. False (the panel untouched) when a row is not finite.
bool PackedLinearWeights::requantize_per_channel_panel(const float* weight, int64_t rows, int64_t in,
                                                       const std::vector<float>& factors, int bits, int64_t panel) {
  Impl& impl = *impl_;
  static thread_local std::vector<float> scratch;
  static thread_local std::vector<int8_t> codes;
  static thread_local std::vector<float> scales;
  scratch.resize(static_cast<size_t>(in));
  codes.resize(static_cast<size_t>(rows * in));
  scales.resize(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    if (!per_channel_codes_of_scaled_row(weight + r * in, factors.data(), in, bits, scratch.data(),
                                         codes.data() + r * in, &scales[static_cast<size_t>(r)])) {
      return false;
    }
  }
  const int64_t first = panel * kernels::PackedInt8Weights::kPanelWidth;
  if (!impl.int4) {
    kernels::pack_int8_panel(codes.data(), in, panel, impl.w8);
    std::copy(scales.begin(), scales.end(), impl.col_scales.begin() + first);
  } else {
    kernels::pack_int4_panel(codes.data(), in, scales.data(), nullptr, panel, impl.w4);
  }
  return true;
}

PackedLinearWeights::PackedLinearWeights() = default;
PackedLinearWeights::~PackedLinearWeights() = default;
PackedLinearWeights::PackedLinearWeights(PackedLinearWeights&&) noexcept = default;
PackedLinearWeights& PackedLinearWeights::operator=(PackedLinearWeights&&) noexcept = default;

bool PackedLinearWeights::is_int4() const { return impl_ && impl_->int4; }
int64_t PackedLinearWeights::out_features() const { return impl_ ? impl_->out : 0; }
int64_t PackedLinearWeights::in_features() const { return impl_ ? impl_->in : 0; }

PackedLinearWeights PackedLinearWeights::quantize(const Quantizer& quantizer, const float* weight, int64_t out,
                                                  int64_t in) {
  check_weight_quantizer(quantizer.spec());  // before quantizing
  return from_codes(quantizer.quantize(MatrixView{const_cast<float*>(weight), out, in, in}, nullptr));
}

void PackedLinearWeights::check_weight_quantizer(const QuantizerSpec& spec) {
  const QuantMethod* method = find_quant_method(spec.method);
  if (method == nullptr || method->integer_weights == IntegerSupport::None)
    fail("integer engine: weight quantization '{}' has no integer kernel ({})", spec.method, integer_method_names(&QuantMethod::integer_weights));
  if (method->stored_weights == WeightStorage::GroupScales) check_group_kernel(spec.bits, spec.group_size);
}

void PackedLinearWeights::check_group_kernel(int bits, int64_t group_size) {
  if (bits > 4) fail("integer engine: group-wise weights need bits <= 4 (the INT4 kernel); got {} bits", bits);
  if (group_size % 8 != 0)
    fail("integer engine: the INT4 kernel needs a group size that is a multiple of 8 (got {})", group_size);
}

PackedLinearWeights PackedLinearWeights::from_codes(const QuantizedMatrix& q) {
  const bool group = q.group_size > 0;
  if (!q.column_factors.empty() || q.tensor_scale != 0.f)
    fail("integer engine: weights with column factors or a tensor scale have no integer kernel (per-channel or group only)");
  if (group) check_group_kernel(q.bits, q.group_size);
  else if (static_cast<int64_t>(q.row_scales.size()) != q.rows)
    fail("integer engine: the weight codes come without per-channel scales");
  PackedLinearWeights packed;
  packed.impl_ = std::make_unique<Impl>();
  Impl& impl = *packed.impl_;
  impl.out = q.rows;
  impl.in = q.cols;
  impl.int4 = q.bits <= 4;
  const std::vector<int8_t> codes(q.codes.begin(), q.codes.end());
  if (!impl.int4) {
    impl.w8 = kernels::pack_int8_weights(codes.data(), q.rows, q.cols, q.cols);
    impl.col_scales = q.row_scales;  // per-channel Δ_k
    return packed;
  }
  if (group) {
    const std::vector<int8_t> zeros(q.group_zeros.begin(), q.group_zeros.end());
    impl.w4 = kernels::pack_int4_weights(codes.data(), q.rows, q.cols, q.cols, q.group_scales.data(), q.group_size,
                                         zeros.empty() ? nullptr : zeros.data());
  } else {
    impl.w4 = kernels::pack_int4_weights(codes.data(), q.rows, q.cols, q.cols, q.row_scales.data(), 0, nullptr);
  }
  return packed;
}

void PackedLinearWeights::requantize_scaled(const Quantizer& quantizer, const float* weight, int64_t out, int64_t in,
                                            const std::vector<float>& column_factors) {
  if (static_cast<int64_t>(column_factors.size()) != in)
    fail("integer engine: {} column factors for a layer with {} inputs", column_factors.size(), in);
  const QuantizerSpec& spec = quantizer.spec();
  const bool int4 = spec.bits <= 4;
  const bool group = spec.method == "group";
  const bool asymmetric = group && spec.asymmetric;
  const bool same_layout = impl_ && impl_->out == out && impl_->in == in && impl_->int4 == int4 &&
                           (!int4 || (impl_->w4.asymmetric == asymmetric &&
                                      impl_->w4.group_size == (group ? spec.group_size : impl_->w4.k_padded)));
  if (!same_layout) {  // allocate once; the panels below fill everything
    check_weight_quantizer(spec);
    impl_ = std::make_unique<Impl>();
    impl_->out = out;
    impl_->in = in;
    impl_->int4 = int4;
    if (int4) {
      impl_->w4 = kernels::allocate_int4_weights(out, in, group ? spec.group_size : 0, asymmetric);
    } else {
      impl_->w8 = kernels::allocate_int8_weights(out, in);
      impl_->col_scales.resize(static_cast<size_t>(out));
    }
  }
  Impl& impl = *impl_;
  constexpr int64_t kPanelRows = kernels::PackedInt8Weights::kPanelWidth;
  static_assert(kPanelRows == kernels::PackedInt4Weights::kPanelWidth);
  const int64_t panels = (out + kPanelRows - 1) / kPanelRows;
  // Per-channel weights take the fused row path (quant/scaled_rows.h): the scaled rows never
  // leave L1. Group-wise weights, and a panel with a non-finite value (so the quantizer
  // reports it), take the quantizer's own path.
  const bool per_channel = spec.method == "per-channel";
  std::exception_ptr error;
#pragma omp parallel
  {
    std::vector<float> scaled;
    std::vector<int8_t> codes, zeros;
#pragma omp for schedule(static)
    for (int64_t p = 0; p < panels; ++p) {
      try {
        const int64_t first = p * kPanelRows;
        const int64_t rows = std::min(kPanelRows, out - first);
        if (per_channel && requantize_per_channel_panel(weight + first * in, rows, in, column_factors, spec.bits, p)) {
          continue;
        }
        scaled.resize(static_cast<size_t>(rows * in));
        scale_columns(weight + first * in, rows, in, column_factors, scaled.data());  // nested: one thread
        const QuantizedMatrix q = quantizer.quantize(MatrixView{scaled.data(), rows, in, in}, nullptr);
        codes.assign(q.codes.begin(), q.codes.end());
        if (!impl.int4) {
          kernels::pack_int8_panel(codes.data(), in, p, impl.w8);
          std::copy(q.row_scales.begin(), q.row_scales.end(), impl.col_scales.begin() + first);
        } else {
          zeros.assign(q.group_zeros.begin(), q.group_zeros.end());
          kernels::pack_int4_panel(codes.data(), in, q.group_size > 0 ? q.group_scales.data() : q.row_scales.data(),
                                   zeros.empty() ? nullptr : zeros.data(), p, impl.w4);
        }
      } catch (...) {  // no exception may leave an OpenMP region
#pragma omp critical(cq_requantize_error)
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

void PackedLinearWeights::gemm(const int8_t* codes, int64_t rows, const float* row_scales, const float* bias,
                               float* y) const {
  const Impl& impl = *impl_;
  if (impl.int4)
    kernels::gemm_int4(codes, rows, impl.in, row_scales, impl.w4, bias, y, impl.out);
  else
    kernels::gemm_int8(codes, rows, impl.in, row_scales, impl.w8, impl.col_scales.data(), bias, y, impl.out);
}

// ---------------------------------------------------------------------------------------
// IntegerLinear

namespace {

void check_activation(const Quantizer& activation) {
  const QuantizerSpec& spec = activation.spec();
  const QuantMethod* method = find_quant_method(spec.method);
  if (method == nullptr || method->integer_activations == IntegerSupport::None)
    fail("integer engine: activation quantization '{}' has no integer path ({})", spec.method,
         integer_method_names(&QuantMethod::integer_activations));
  if (spec.bits > 8) fail("integer engine: activations of {} bits do not fit INT8 codes", spec.bits);
}

bool is_static_crossquant(const Quantizer& q) {
  return q.spec().method == "crossquant" && !q.spec().static_column_absmax.empty();
}

// Codes int16 → int8; row scales (tensor_scale for per-tensor) into `scales`.
void to_int8(const QuantizedMatrix& q, int8_t* codes, float* scales) {
  const size_t n = q.codes.size();
  for (size_t i = 0; i < n; ++i) codes[i] = static_cast<int8_t>(q.codes[i]);
  if (q.row_scales.empty())
    std::fill(scales, scales + q.rows, q.tensor_scale);
  else
    std::copy(q.row_scales.begin(), q.row_scales.end(), scales);
}

}  // namespace

IntegerLinear::IntegerLinear(const IntegerLinearOptions& options, std::span<const float> weight, int64_t out,
                             int64_t in, std::vector<float> bias)
    : options_(options), out_(out), in_(in), bias_(std::move(bias)) {
  if (!options_.activation || !options_.weight) fail("integer engine: a linear layer needs activation and weight quantizers");
  if (static_cast<int64_t>(weight.size()) != out * in)
    fail("integer engine: weight has {} values, expected {} x {}", weight.size(), out, in);
  if (!bias_.empty() && static_cast<int64_t>(bias_.size()) != out)
    fail("integer engine: bias has {} values, expected {}", bias_.size(), out);
  check_activation(*options_.activation);
  const QuantizerSpec& aspec = options_.activation->spec();
  if (aspec.method != "crossquant") {
    mode_ = Mode::Fixed;
    packed_ = PackedLinearWeights::quantize(*options_.weight, weight.data(), out, in);
  } else if (is_static_crossquant(*options_.activation)) {
    mode_ = Mode::StaticCross;
    const auto& cross = dynamic_cast<const CrossQuantQuantizer&>(*options_.activation);
    if (static_cast<int64_t>(aspec.static_column_absmax.size()) != in)
      fail("integer engine: {} static column maxima for a layer with {} inputs", aspec.static_column_absmax.size(), in);
    std::vector<float> scaled(weight.size());
    scale_columns(weight.data(), out, in, cross.column_divisors(aspec.static_column_absmax), scaled.data());
    packed_ = PackedLinearWeights::quantize(*options_.weight, scaled.data(), out, in);
  } else {
    mode_ = Mode::DynamicCross;
    cross_ = &dynamic_cast<const CrossQuantQuantizer&>(*options_.activation);
    // Fail early (not on the first window) when no kernel takes these weights.
    const QuantizerSpec& wspec = options_.weight->spec();
    PackedLinearWeights::check_weight_quantizer(wspec);
    if (wspec.method == "per-channel" && wspec.bits > 4)
      weight_panels_ = order_as_int8_panels(weight.data(), out, in);  // the INT8 GEMM's order: one pass per window
    else
      weight_.assign(weight.begin(), weight.end());
    if (!options_.decode_column_absmax.empty()) {
      QuantizerSpec spec = aspec;
      spec.static_column_absmax = options_.decode_column_absmax;
      auto decode = std::make_shared<CrossQuantQuantizer>(spec);
      std::vector<float> scaled(weight.size());
      scale_columns(weight.data(), out, in, decode->column_divisors(spec.static_column_absmax), scaled.data());
      decode_packed_ = PackedLinearWeights::quantize(*options_.weight, scaled.data(), out, in);
      decode_activation_ = std::move(decode);
    }
  }
}

IntegerLinear::IntegerLinear(const IntegerLinearOptions& options, PackedLinearWeights weights, std::vector<float> bias)
    : mode_(Mode::Fixed),
      options_(options),
      out_(weights.out_features()),
      in_(weights.in_features()),
      bias_(std::move(bias)),
      packed_(std::move(weights)) {
  if (!options_.activation || !options_.weight) fail("integer engine: a linear layer needs activation and weight quantizers");
  if (!bias_.empty() && static_cast<int64_t>(bias_.size()) != out_)
    fail("integer engine: bias has {} values, expected {}", bias_.size(), out_);
  check_activation(*options_.activation);
  // Static CrossQuant: the caller hands codes of Q(W·diag(c^(1−α))) with this quantizer's c.
  if (is_static_crossquant(*options_.activation)) mode_ = Mode::StaticCross;
  else if (options_.activation->spec().method == "crossquant")
    fail("integer engine: dynamic CrossQuant activations need the FP32 weights (c^(1−α) of each window is folded in "
         "before they are quantized)");
}

IntegerLinear::~IntegerLinear() = default;

std::string IntegerLinear::describe() const {
  const QuantizerSpec& w = options_.weight->spec();
  const QuantizerSpec& a = options_.activation->spec();
  const std::string mode = mode_ == Mode::Fixed ? a.method : mode_ == Mode::StaticCross ? "static crossquant" : "dynamic crossquant";
  const std::string weights = w.method == "group" ? fmt::format("W{} g{}{}", w.bits, w.group_size, w.asymmetric ? " asym" : "")
                                                  : fmt::format("W{} per-channel", w.bits);
  return fmt::format("{} / A{} {} ({} GEMM)", weights, a.bits, mode, w.bits <= 4 ? "int4" : "int8");
}

void IntegerLinear::new_input() {
  if (shared_codes_) shared_codes_->valid = false;
}

void IntegerLinear::set_column_absmax(std::span<const float> column_absmax) {
  if (mode_ == Mode::DynamicCross) column_absmax_.assign(column_absmax.begin(), column_absmax.end());
}

void IntegerLinear::run_fixed(const Quantizer& activation, const PackedLinearWeights& weights, const float* x,
                              const RowWindows& windows, float* y, KernelStats& stats) {
  const int64_t rows = windows.rows();
  // The decode path of dynamic CrossQuant quantizes with its own static quantizer: never shared.
  const bool shareable = shared_codes_ && &activation == options_.activation.get();
  SharedActivationCodes local;
  SharedActivationCodes& input = shareable ? *shared_codes_ : local;
  if (!(input.valid && input.input == x && input.rows == rows)) {
    input.codes.resize(static_cast<size_t>(rows * in_));
    input.scales.resize(static_cast<size_t>(rows));
    input.stats = KernelStats();
    // Per window, as the fake path quantizes (per-tensor and CrossQuant statistics depend on it).
    for (int64_t w = 0; w < windows.count(); ++w) {
      const int64_t start = windows.begin(w);
      const QuantizedMatrix q = activation.quantize(
          MatrixView{const_cast<float*>(x + start * in_), windows.size(w), in_, in_}, &input.stats);
      to_int8(q, input.codes.data() + start * in_, input.scales.data() + start);
    }
    input.valid = shareable;
    input.input = x;
    input.rows = rows;
  }
  stats.merge(input.stats);
  weights.gemm(input.codes.data(), rows, input.scales.data(), bias_.empty() ? nullptr : bias_.data(), y);
}

void IntegerLinear::run_dynamic(const float* x, const RowWindows& windows, float* y, KernelStats& stats) {
  // c_j as the model defines them (set_column_absmax, used once), else each window's own.
  std::vector<float> given;
  given.swap(column_absmax_);
  if (decode_activation_ && windows.count() == windows.rows()) {  // decode: one token per sequence
    run_fixed(*decode_activation_, decode_packed_, x, windows, y, stats);
    return;
  }
  if (!given.empty() && static_cast<int64_t>(given.size()) != windows.count() * in_)
    fail("integer engine: {} column maxima for {} windows of {} inputs", given.size(), windows.count(), in_);
  std::vector<float> scales;
  for (int64_t w = 0; w < windows.count(); ++w) {
    const int64_t start = windows.begin(w);
    const int64_t count = windows.size(w);
    if (count == 1 && decode_activation_) {  // a decode row: static c_j
      run_fixed(*decode_activation_, decode_packed_, x + start * in_, RowWindows(1, 1), y + start * out_, stats);
      continue;
    }
    codes_.resize(static_cast<size_t>(count * in_));
    scales.resize(static_cast<size_t>(count));
    const MatrixView window{const_cast<float*>(x + start * in_), count, in_, in_};
    const QuantizedMatrix q =
        given.empty() ? cross_->quantize(window, &stats)
                      : cross_->quantize_with_column_absmax(
                            window, std::span<const float>(given).subspan(static_cast<size_t>(w * in_), static_cast<size_t>(in_)),
                            &stats);
    to_int8(q, codes_.data(), scales.data());
    // The window's c_j^(1−α) folded into the weight, re-quantized and packed: O(I·O).
    if (!weight_panels_.empty())
      window_packed_.requantize_scaled_panels(*options_.weight, weight_panels_, out_, in_, q.column_factors);
    else
      window_packed_.requantize_scaled(*options_.weight, weight_.data(), out_, in_, q.column_factors);
    window_packed_.gemm(codes_.data(), count, scales.data(), bias_.empty() ? nullptr : bias_.data(), y + start * out_);
  }
}

void IntegerLinear::run(const float* x, const RowWindows& windows, float* y, KernelStats& stats) {
  if (windows.rows() <= 0) return;
  if (mode_ == Mode::DynamicCross)
    run_dynamic(x, windows, y, stats);
  else
    run_fixed(*options_.activation, packed_, x, windows, y, stats);
}

// ---------------------------------------------------------------------------------------
// Configuration


namespace {

// --quantize-lm-head: lm_head as W8 per-channel / A8 per-token, whatever the decoder's setting
// (the smallest change that makes lm_head an INT8 GEMV; docs/INTEGER_ENGINE.md).
void install_integer_lm_head(Transformer& model) {
  const TensorInfo& head = model.lm_head_weight();
  const int64_t out = head.shape[0], in = head.shape[1];
  std::vector<float> weight(static_cast<size_t>(out * in));  // transient: only the codes are kept
  convert_to_f32(head, 0, out * in, weight.data());
  QuantizerSpec weight_spec, activation_spec;
  weight_spec.method = "per-channel";
  activation_spec.method = "per-token";
  IntegerLinearOptions options;
  options.weight = make_quantizer(weight_spec);
  options.activation = make_quantizer(activation_spec);
  model.set_lm_head_backend(std::make_shared<IntegerLinear>(options, weight, out, in, std::vector<float>{}));
}

}  // namespace

void install_integer_backends(Transformer& model, const QuantConfig& config,
                              const std::vector<std::vector<float>>& static_absmax, const GptqModelResult* gptq) {
  const StoredQuantization* stored = stored_quantization(model);
  if (const std::string reason = integer_engine_unsupported_reason(config, stored != nullptr); !reason.empty())
    fail("--engine int: {}", reason);
  std::shared_ptr<const Quantizer> weight = make_weight_quantizer(config);
  QuantizerSpec spec;
  spec.bits = config.activation_bits;
  spec.method = config.activation_method;
  spec.alpha = config.alpha;
  const bool is_static = config.static_columns || config.static_tensor_scale;
  const auto sites = static_cast<size_t>(model.config().num_layers * kInputSites);
  if (is_static && static_absmax.size() != sites)
    fail("static activation scales: {} sites given, the model has {}", static_absmax.size(), sites);
  std::shared_ptr<const Quantizer> dynamic_activation;
  if (!is_static) dynamic_activation = make_quantizer(spec);
  std::vector<std::shared_ptr<const Quantizer>> site_quantizers(sites);
  std::vector<std::shared_ptr<IntegerLinear::SharedActivationCodes>> site_codes(sites);
  auto& linears = model.linear_layers();
  for (size_t index = 0; index < linears.size(); ++index) {
    LinearLayer& linear = linears[index];
    const auto slot = static_cast<size_t>(linear.layer * kInputSites + static_cast<int>(linear.site));
    IntegerLinearOptions options;
    options.weight = weight;
    if (!is_static) {
      options.activation = dynamic_activation;
      if (config.activation_method == "crossquant" && slot < static_absmax.size())
        options.decode_column_absmax = static_absmax[slot];
    } else {
      if (!site_quantizers[slot]) {
        if (config.static_columns) {
          QuantizerSpec site_spec = spec;
          site_spec.static_column_absmax = static_absmax[slot];
          site_quantizers[slot] = make_quantizer(site_spec);
        } else {
          const auto& absmax = static_absmax[slot];
          const float tensor_max = absmax.empty() ? 0.f : *std::max_element(absmax.begin(), absmax.end());
          site_quantizers[slot] = make_static_per_tensor_quantizer(config.activation_bits, tensor_max);
        }
      }
      options.activation = site_quantizers[slot];
    }
    std::shared_ptr<IntegerLinear> backend;
    if (stored) {
      if (is_static_crossquant(*options.activation)) {
        // The stored codes are Q(W·diag(f)) for the checkpoint's calibrated c; other c would
        // need the FP32 weights.
        const std::vector<float> stored_divisors =
            read_stored_column_divisors(model.checkpoint(), *stored, linear.name, linear.in_features);
        if (stored_divisors != static_column_divisors(config.alpha, static_absmax[slot]))
          fail("--engine int: {} was not quantized for static CrossQuant with these column maxima and alpha {} "
               "(its weights fold the calibrated c^(1-alpha) of `cq quantize --calib`); run it without --calib/--alpha, "
               "or with --engine fake",
               stored->weights_file.string(), config.alpha);
      }
      // The checkpoint's codes and scales as they are; the dequantized FP32 copy is not needed.
      backend = std::make_shared<IntegerLinear>(
          options,
          PackedLinearWeights::from_codes(
              read_stored_weight(model.checkpoint(), *stored, linear.name, linear.out_features, linear.in_features)),
          linear.bias);
      std::vector<float>().swap(linear.owned_weight);
    } else if (gptq != nullptr && !gptq->grids.empty()) {
      backend = std::make_shared<IntegerLinear>(options, PackedLinearWeights::from_codes(gptq_codes(model, *gptq, index)),
                                                linear.bias);
    } else {
      backend = std::make_shared<IntegerLinear>(options, linear.mutable_weight(), linear.out_features, linear.in_features,
                                                linear.bias);
    }
    // Linears reading one site with one activation quantizer share its codes (q/k/v, gate/up);
    // dynamic CrossQuant re-quantizes per linear window, so it shares nothing.
    if (is_static || config.activation_method != "crossquant") {
      auto& shared = site_codes[slot];
      if (!shared) shared = std::make_shared<IntegerLinear::SharedActivationCodes>();
      backend->share_activation_codes(shared);
    }
    model.set_linear_backend(static_cast<int64_t>(index), std::move(backend));
  }
  if (config.quantize_lm_head) install_integer_lm_head(model);
}

}  // namespace cq
