#include "quant/gptq.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/matmul.h"
#include "quant/method_table.h"
#include "util/error.h"

namespace cq {

namespace {

// Rows of input transposed per GEMM when accumulating H (bounds the temporary copy).
constexpr int64_t kHessianChunkRows = 1024;

// The upper-triangular U with (H)⁻¹ = Uᵀ U, in double. U⁻¹ is the upper factor V of
// H = V Vᵀ, which is the lower Cholesky factor of H with rows and columns reversed; U is
// then V's triangular inverse (the same U as cholesky(cholesky_inverse(cholesky(H)),
// upper=True), the Cholesky factor being unique). H is overwritten.
std::vector<double> upper_cholesky_of_inverse(std::vector<double>& h, int64_t n) {
  const auto at = [n](int64_t i, int64_t j) { return static_cast<size_t>(i * n + j); };
  // Reverse in place: M[a][b] = H[n−1−a][n−1−b].
  std::reverse(h.begin(), h.end());
  // Lower Cholesky of M in place (row by row; rows below the diagonal in parallel).
  for (int64_t j = 0; j < n; ++j) {
    double diagonal = h[at(j, j)];
    for (int64_t k = 0; k < j; ++k) diagonal -= h[at(j, k)] * h[at(j, k)];
    if (!(diagonal > 0) || !std::isfinite(diagonal))
      fail("GPTQ: the dampened Hessian is not positive definite (pivot {} of {} is {}); raise --gptq-damp", j, n, diagonal);
    const double root = std::sqrt(diagonal);
    h[at(j, j)] = root;
#pragma omp parallel for schedule(static) if ((n - j) * j > (int64_t{1} << 16))
    for (int64_t i = j + 1; i < n; ++i) {
      double sum = h[at(i, j)];
      for (int64_t k = 0; k < j; ++k) sum -= h[at(i, k)] * h[at(j, k)];
      h[at(i, j)] = sum / root;
    }
  }
  // V[i][j] = L[n−1−i][n−1−j] (upper); only L's lower triangle is meaningful.
  std::vector<double> v(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) v[at(i, j)] = h[at(n - 1 - i, n - 1 - j)];
  // U = V⁻¹, one row at a time: U[i][k] V[k][k] = δ_ik − Σ_{i<=m<k} U[i][m] V[m][k].
  std::vector<double> u(static_cast<size_t>(n * n), 0.0);
#pragma omp parallel for schedule(dynamic, 16) if (n > 64)
  for (int64_t i = 0; i < n; ++i) {
    double* row = u.data() + i * n;
    for (int64_t k = i; k < n; ++k) {
      row[k] = ((k == i ? 1.0 : 0.0) - row[k]) / v[at(k, k)];
      const double coefficient = row[k];
      const double* v_row = v.data() + k * n;
      for (int64_t m = k + 1; m < n; ++m) row[m] += coefficient * v_row[m];
    }
  }
  return u;
}

// The grid of one segment (rows × length, stride cols) as the weight quantizers define it.
QuantizedMatrix segment_grid(const std::vector<float>& w, int64_t rows, int64_t cols, int64_t start, int64_t length,
                             const QuantizerSpec& spec) {
  QuantizerSpec segment = spec;
  segment.group_size = length;
  const auto quantizer = make_quantizer(segment);
  return quantizer->quantize(MatrixView{const_cast<float*>(w.data()) + start, rows, length, cols}, nullptr);
}

}  // namespace

HessianAccumulator::HessianAccumulator(int64_t columns) : columns_(columns) {
  if (columns < 1) fail("GPTQ: a Hessian needs at least one column (got {})", columns);
  sum_.assign(static_cast<size_t>(columns * columns), 0.0);
}

void HessianAccumulator::add(const float* x, int64_t rows) {
  if (rows < 0 || (rows > 0 && x == nullptr)) fail("GPTQ: bad Hessian input ({} rows)", rows);
  const int64_t n = columns_;
  std::vector<float> transposed, product(static_cast<size_t>(n * n));
  for (int64_t begin = 0; begin < rows; begin += kHessianChunkRows) {
    const int64_t count = std::min(kHessianChunkRows, rows - begin);
    transposed.resize(static_cast<size_t>(n * count));
    for (int64_t t = 0; t < count; ++t)
      for (int64_t j = 0; j < n; ++j) {
        const float value = x[(begin + t) * n + j];
        if (!std::isfinite(value)) fail("GPTQ: non-finite calibration input (row {}, column {})", begin + t, j);
        transposed[static_cast<size_t>(j * count + t)] = value;
      }
    // Xᵀ X of the chunk (float GEMM), summed in double across chunks.
    kernels::matmul_abt(transposed.data(), count, transposed.data(), count, product.data(), n, n, n, count);
    for (size_t i = 0; i < product.size(); ++i) sum_[i] += product[i];
  }
  samples_ += rows;
}

std::vector<double> HessianAccumulator::hessian() const {
  std::vector<double> h(sum_.size(), 0.0);
  if (samples_ == 0) return h;
  const double factor = 2.0 / static_cast<double>(samples_);
  for (size_t i = 0; i < h.size(); ++i) h[i] = factor * sum_[i];
  return h;
}

GptqResult gptq_quantize(std::span<const float> weight, int64_t rows, int64_t cols, std::vector<double> hessian,
                         const QuantizerSpec& spec, const GptqOptions& options) {
  if (spec.method != "per-channel" && spec.method != "group")
    fail("GPTQ rounds onto per-channel or group-wise grids, not '{}' (--weight-quant per-channel or group)", spec.method);
  if (rows < 1 || cols < 1 || weight.size() != static_cast<size_t>(rows * cols) ||
      hessian.size() != static_cast<size_t>(cols * cols))
    fail("GPTQ: a {} x {} weight needs {} values and a {} x {} Hessian (got {} and {})", rows, cols, rows * cols, cols, cols,
         weight.size(), hessian.size());
  if (!(options.dampening > 0) || !std::isfinite(options.dampening)) fail("GPTQ: dampening {} must be positive", options.dampening);
  if (options.block_size < 1) fail("GPTQ: block size {} must be positive", options.block_size);
  for (size_t i = 0; i < weight.size(); ++i)
    if (!std::isfinite(weight[i])) fail("GPTQ: non-finite weight at row {}, column {}", static_cast<int64_t>(i) / cols, static_cast<int64_t>(i) % cols);
  for (double value : hessian)
    if (!std::isfinite(value)) fail("GPTQ: non-finite Hessian entry");

  const auto at = [cols](int64_t i, int64_t j) { return static_cast<size_t>(i * cols + j); };
  const bool grouped = spec.method == "group";
  const int64_t group_size = grouped ? spec.group_size : cols;
  if (group_size < 1) fail("GPTQ: group size {} must be positive", group_size);
  const int64_t groups = (cols + group_size - 1) / group_size;
  const auto qmax = static_cast<float>((1 << (spec.bits - 1)) - 1);
  const auto max_code = static_cast<float>((1 << spec.bits) - 1);
  const bool asymmetric = grouped && spec.asymmetric;

  GptqResult result;
  QuantizedMatrix& out = result.quantized;
  out.rows = rows;
  out.cols = cols;
  out.bits = spec.bits;
  out.codes.assign(static_cast<size_t>(rows * cols), 0);
  std::vector<float> w(weight.begin(), weight.end());
  // Per-channel: the grid of the original weights (the authors' find_params(W) comes first).
  if (!grouped) out.row_scales = make_quantizer(spec)->quantize(MatrixView{w.data(), rows, cols, cols}, nullptr).row_scales;

  // Dead columns: no calibration input reaches them; their weights cannot matter.
  for (int64_t j = 0; j < cols; ++j)
    if (hessian[at(j, j)] == 0.0) {
      hessian[at(j, j)] = 1.0;
      for (int64_t i = 0; i < rows; ++i) w[at(i, j)] = 0.f;
      ++result.dead_columns;
    }

  if (grouped) {
    out.group_size = group_size;
    out.group_scales.assign(static_cast<size_t>(rows * groups), 0.f);
    if (asymmetric) out.group_zeros.assign(out.group_scales.size(), 0);
  }
  const auto store_group_grid = [&](int64_t group, const std::vector<float>& values) {
    const int64_t start = group * group_size, length = std::min(group_size, cols - start);
    const QuantizedMatrix grid = segment_grid(values, rows, cols, start, length, spec);
    for (int64_t i = 0; i < rows; ++i) {
      out.group_scales[static_cast<size_t>(i * groups + group)] = grid.group_scales[static_cast<size_t>(i)];
      if (asymmetric) out.group_zeros[static_cast<size_t>(i * groups + group)] = grid.group_zeros[static_cast<size_t>(i)];
    }
  };
  // With act-order the groups stay contiguous in the original order: grids from the weights
  // before any update (the authors' --static-groups), so that the usual group storage holds them.
  if (grouped && options.act_order)
    for (int64_t g = 0; g < groups; ++g) store_group_grid(g, w);

  // Column order: position k holds original column perm[k]. Ties in H_jj keep index order.
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (options.act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return hessian[at(a, a)] > hessian[at(b, b)]; });
  std::vector<double> h(hessian.size());
  std::vector<float> wp(w.size());
  for (int64_t a = 0; a < cols; ++a)
    for (int64_t b = 0; b < cols; ++b) h[at(a, b)] = hessian[at(perm[static_cast<size_t>(a)], perm[static_cast<size_t>(b)])];
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t k = 0; k < cols; ++k) wp[at(i, k)] = w[at(i, perm[static_cast<size_t>(k)])];
  std::vector<double>().swap(hessian);

  double mean_diagonal = 0;
  for (int64_t j = 0; j < cols; ++j) mean_diagonal += h[at(j, j)];
  mean_diagonal /= static_cast<double>(cols);
  const double damp = options.dampening * mean_diagonal;
  for (int64_t j = 0; j < cols; ++j) h[at(j, j)] += damp;
  const std::vector<double> u_double = upper_cholesky_of_inverse(h, cols);
  std::vector<float> u(u_double.begin(), u_double.end());

  std::vector<float> errors;
  std::vector<float> update;
  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
  for (int64_t i1 = 0; i1 < cols;) {
    int64_t i2 = std::min(i1 + options.block_size, cols);
    // Dynamic groups: a block never spans a group start, so each group's grid sees every
    // update made before it (the authors' code reads not-yet-updated columns when a group
    // starts inside a block; with g = 128 = block size both agree).
    if (grouped && !options.act_order) {
      i2 = std::min(i2, (i1 / group_size + 1) * group_size);
      if (i1 % group_size == 0) store_group_grid(i1 / group_size, wp);
    }
    const int64_t count = i2 - i1;
    errors.assign(static_cast<size_t>(rows * count), 0.f);
#pragma omp parallel for schedule(static) if (rows * count * count > (int64_t{1} << 16))
    for (int64_t r = 0; r < rows; ++r) {
      float* row = wp.data() + r * cols;
      double loss = 0;
      for (int64_t k = i1; k < i2; ++k) {
        const int64_t column = perm[static_cast<size_t>(k)];
        float scale, zero = 0.f, code;
        if (grouped) {
          const auto slot = static_cast<size_t>(r * groups + column / group_size);
          scale = out.group_scales[slot];
          if (asymmetric) zero = static_cast<float>(out.group_zeros[slot]);
        } else {
          scale = out.row_scales[static_cast<size_t>(r)];
        }
        if (asymmetric) code = std::clamp(std::nearbyint(row[k] / scale) + zero, 0.f, max_code);
        else code = std::clamp(std::nearbyint(row[k] / scale), -qmax, qmax);
        out.codes[at(r, column)] = static_cast<int16_t>(code);
        const float q = (code - zero) * scale;
        const float d = u[at(k, k)];
        const float difference = row[k] - q;
        loss += static_cast<double>(difference) * difference / (static_cast<double>(d) * d);
        const float error = difference / d;
        const float* u_row = u.data() + k * cols;
        for (int64_t m = k + 1; m < i2; ++m) row[m] -= error * u_row[m];
        errors[static_cast<size_t>(r * count + (k - i1))] = error;
      }
      row_loss[static_cast<size_t>(r)] += loss;
    }
    // The columns after the block: W[:, i2:] −= E · U[i1:i2, i2:] in one GEMM.
    if (i2 < cols) {
      const int64_t rest = cols - i2;
      update.resize(static_cast<size_t>(rows * rest));
      kernels::matmul_ab(errors.data(), count, u.data() + i1 * cols + i2, cols, update.data(), rest, rows, rest, count);
#pragma omp parallel for schedule(static) if (rows * rest > (int64_t{1} << 16))
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t m = 0; m < rest; ++m) wp[at(r, i2 + m)] -= update[static_cast<size_t>(r * rest + m)];
    }
    i1 = i2;
  }
  for (double loss : row_loss) result.loss += loss / 2;
  return result;
}

QuantizedMatrix codes_on_grid(const float* weight, QuantizedMatrix grid) {
  const int64_t rows = grid.rows, cols = grid.cols;
  const bool grouped = grid.group_size > 0;
  if (rows < 1 || cols < 1 || (grouped ? grid.group_scales.empty() : grid.row_scales.size() != static_cast<size_t>(rows)))
    fail("internal error: no quantization grid for a {} x {} weight", rows, cols);
  const int64_t groups = grouped ? (cols + grid.group_size - 1) / grid.group_size : 0;
  grid.codes.assign(static_cast<size_t>(rows * cols), 0);
  bool on_grid = true;
#pragma omp parallel for schedule(static) reduction(&& : on_grid) if (rows * cols > (int64_t{1} << 16))
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      float scale = 0, zero = 0;
      if (grouped) {
        const auto slot = static_cast<size_t>(i * groups + j / grid.group_size);
        scale = grid.group_scales[slot];
        if (!grid.group_zeros.empty()) zero = static_cast<float>(grid.group_zeros[slot]);
      } else {
        scale = grid.row_scales[static_cast<size_t>(i)];
      }
      const float value = weight[i * cols + j];
      const float code = std::nearbyint(value / scale) + zero;
      grid.codes[static_cast<size_t>(i * cols + j)] = static_cast<int16_t>(code);
      on_grid = on_grid && (code - zero) * scale == value;
    }
  if (!on_grid) fail("internal error: the weights are not on their recorded quantization grid");
  return grid;
}

}  // namespace cq
