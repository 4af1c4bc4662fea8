#pragma once
// `cq sweep` without the model: the grid syntax (docs/SWEEP.md), its expansion into
// configurations, and the rendering of the results (aligned table in the shape of the
// paper's Table 2/4, CSV, JSON, and an SVG of perplexity and kernel proportion against α,
// the paper's Figure 8). Pure functions, unit-tested in tests/unit/test_sweep.cpp.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace cq {

// "scheme=w8a8,w4a8-g128;act=per-token,crossquant;alpha=0.15,0.45;method=rtn,awq".
// Keys: scheme (required), act, alpha, method, rotate; each at most once; values de-duplicated in
// order. An empty key (absent) means "as the command's flags say". Throws cq::Error.
struct SweepGrid {
  std::vector<std::string> schemes;
  std::vector<std::string> activations;  // per-token | per-tensor | crossquant | remove-kernel
  std::vector<double> alphas;            // CrossQuant α, each in [0, 1]
  std::vector<std::string> methods;      // crossquant | rtn | smoothquant | awq
  std::vector<std::string> rotations;    // none | hadamard (--rotate)
};
SweepGrid parse_sweep_grid(const std::string& text);

// Each configuration is a whole perplexity run: a grid of more is refused (a key with more
// values, or an expansion into more configurations), before anything is run.
inline constexpr size_t kMaxSweepPoints = 1000;

// One configuration to run. Empty strings / has_alpha=false: the key was not in the grid.
struct SweepPoint {
  std::string scheme, method, activation;
  bool has_alpha = false;
  double alpha = 0;
  std::string rotation;  // none | hadamard; "" when the grid has no rotate key
};
// Every combination, in order scheme > rotate > method > act > alpha; alpha only varies for
// act=crossquant (other activations appear once per scheme and method). Throws cq::Error
// beyond kMaxSweepPoints.
std::vector<SweepPoint> expand_sweep_grid(const SweepGrid& grid);

// One result row. kernel_fraction < 0: activations not quantized (FP32 row, A16 schemes).
struct SweepRow {
  std::string setting;     // "FP32", "W8A8", "W4A8-g128", ...
  std::string method;      // "per-token", "CrossQuant α=0.15", "AWQ + per-token", ...
  std::string scheme;      // grid value ("" for FP32)
  std::string quant_method;  // --method: crossquant | rtn | smoothquant | awq ("" for FP32)
  std::string activation;  // per-token | crossquant | ... ("" for FP32)
  double alpha = -1;       // CrossQuant α of the activations (< 0: not CrossQuant)
  double perplexity = 0;
  double kernel_fraction = -1;
  int64_t windows = 0;
  double seconds = 0;
  std::string description;  // QuantConfig::describe()
  std::string rotation;     // "hadamard" for a rotated row (--rotate), else ""
};
// The "Method" column of a row: "per-token", "CrossQuant α=0.15", "SmoothQuant + per-token", ...
// A rotated row's label has "Hadamard + " after the weight method (label_with_rotation):
// "Hadamard + per-token", "GPTQ + Hadamard + CrossQuant α=0.15".
std::string sweep_method_label(const std::string& quant_method, const std::string& activation, double alpha,
                               const std::string& rotation = "");
// "w4a8-g128" -> "W4A8-g128".
std::string sweep_setting_label(const std::string& scheme);

// Decimals of the table's perplexity column: 4, or more (up to kMaxPerplexityDecimals) until
// every two different finite values print differently.
inline constexpr int kMaxPerplexityDecimals = 8;
int sweep_perplexity_decimals(const std::vector<double>& values);
std::string render_sweep_table(const std::vector<SweepRow>& rows);
std::string render_sweep_csv(const std::vector<SweepRow>& rows);
nlohmann::json sweep_json(const std::vector<SweepRow>& rows);
// Two panels, perplexity and kernel %. Several CrossQuant α: against α, one polyline per
// scheme (and --method when several), per-token and FP32 rows as dashed horizontal reference
// lines. At most one α: grouped bars, one group per scheme, one bar (one colour) per method
// ("RTN + per-token", "SmoothQuant + CrossQuant", ...), values written on the bars, FP32 as
// a dotted reference line.
std::string render_sweep_svg(const std::vector<SweepRow>& rows, const std::string& title = "");
// The bar label of a row: weights ("RTN", "SmoothQuant", "AWQ") + " + " + activations
// ("per-token", "CrossQuant", ...).
std::string sweep_bar_label(const std::string& quant_method, const std::string& activation, const std::string& rotation = "");

}  // namespace cq
