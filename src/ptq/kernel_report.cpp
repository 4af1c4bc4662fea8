#include "ptq/kernel_report.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "model/transformer.h"

namespace cq {

namespace {
nlohmann::json stats_json(const KernelStats& s) {
  return {{"elements", s.elements},
          {"kernel", s.kernel},
          {"kernel_fraction", s.kernel_fraction()},
          {"exact_zeros", s.exact_zeros},
          {"exact_zero_fraction", KernelStats::share(s.exact_zeros, s.elements)},
          {"column_max_ge_row_max_fraction", KernelStats::share(s.column_max_ge_row_max, s.elements)},
          {"bound_below_per_token_fraction", KernelStats::share(s.bound_below_per_token, s.elements)}};
}
}  // namespace

nlohmann::json kernel_report_json(const Transformer& model) {
  nlohmann::json layers = nlohmann::json::array();
  const auto& linears = model.linear_layers();
  for (size_t i = 0; i < linears.size(); ++i) {
    auto entry = stats_json(model.kernel_stats()[i]);
    entry["layer"] = linears[i].name;
    layers.push_back(std::move(entry));
  }
  return {{"total", stats_json(model.total_kernel_stats())}, {"layers", std::move(layers)}};
}

std::string kernel_report_table(const Transformer& model) {
  std::string out = fmt::format("{:<42} {:>12} {:>9} {:>9} {:>9} {:>9}\n", "linear layer", "elements", "kernel %",
                                "zeros %", "c>=t %", "B~<B %");
  auto row = [&](const std::string& name, const KernelStats& s) {
    out += fmt::format("{:<42} {:>12} {:>9.3f} {:>9.3f} {:>9.3f} {:>9.3f}\n", name, s.elements, 100 * s.kernel_fraction(),
                       100 * KernelStats::share(s.exact_zeros, s.elements),
                       100 * KernelStats::share(s.column_max_ge_row_max, s.elements),
                       100 * KernelStats::share(s.bound_below_per_token, s.elements));
  };
  const auto& linears = model.linear_layers();
  for (size_t i = 0; i < linears.size(); ++i) row(linears[i].name, model.kernel_stats()[i]);
  row("total (element-weighted)", model.total_kernel_stats());
  return out;
}

std::string kernel_report_csv(const Transformer& model, const std::string& label) {
  std::string out;
  auto row = [&](const std::string& name, const KernelStats& s) {
    out += fmt::format("{},{},{},{},{:.8f},{},{:.8f},{:.8f}\n", label, name, s.elements, s.kernel, s.kernel_fraction(),
                       s.exact_zeros, KernelStats::share(s.column_max_ge_row_max, s.elements),
                       KernelStats::share(s.bound_below_per_token, s.elements));
  };
  const auto& linears = model.linear_layers();
  for (size_t i = 0; i < linears.size(); ++i) row(linears[i].name, model.kernel_stats()[i]);
  row("total", model.total_kernel_stats());
  return out;
}

}  // namespace cq
