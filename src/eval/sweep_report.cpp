#include "eval/sweep_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>

#include "quant/method_table.h"
#include "quant/quant_config.h"
#include "util/error.h"

namespace cq {

namespace {

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  const auto end = s.find_last_not_of(" \t\r\n");
  return s.substr(begin, end - begin + 1);
}

std::vector<std::string> split(const std::string& s, char separator) {
  std::vector<std::string> parts;
  std::string::size_type start = 0;
  while (true) {
    const auto pos = s.find(separator, start);
    parts.push_back(trim(s.substr(start, pos == std::string::npos ? std::string::npos : pos - start)));
    if (pos == std::string::npos) break;
    start = pos + 1;
  }
  return parts;
}

std::string join(const std::vector<std::string>& values) {
  std::string out;
  for (const auto& v : values) out += (out.empty() ? "" : ", ") + v;
  return out;
}

template <typename T>
void add_unique(std::vector<T>& values, const T& value) {
  if (std::find(values.begin(), values.end(), value) == values.end()) values.push_back(value);
}

// The values a grid key takes, from the tables of schemes, activation quantizers and
// weight transformations (quant/quant_config.h, quant/method_table.h).
template <typename Rows, typename Keep>
std::vector<std::string> names_of(const Rows& rows, Keep keep) {
  std::vector<std::string> names;
  for (const auto& row : rows)
    if (keep(row)) names.emplace_back(row.name);
  return names;
}
const std::vector<std::string> kSchemes = names_of(scheme_presets(), [](const SchemePreset&) { return true; });
const std::vector<std::string> kActivations =
    names_of(quant_methods(), [](const QuantMethod& m) { return m.quantizes_activations; });
const std::vector<std::string> kMethods = names_of(weight_transformations(), [](const WeightTransformation&) { return true; });

// Whether the method's activations default to something other than CrossQuant.
bool is_baseline_method(const std::string& method) {
  const WeightTransformation* row = find_weight_transformation(method);
  return row != nullptr && row->default_activation != "crossquant";
}

// Display width of UTF-8 text (one column per code point).
std::size_t display_width(const std::string& s) {
  std::size_t width = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++width;
  return width;
}

std::string pad_right(const std::string& s, std::size_t width) {
  return s + std::string(width - std::min(width, display_width(s)), ' ');
}
std::string pad_left(const std::string& s, std::size_t width) {
  return std::string(width - std::min(width, display_width(s)), ' ') + s;
}

std::string format_ppl(double ppl, int decimals) {
  if (std::isnan(ppl)) return "nan";
  if (std::isinf(ppl)) return "inf";
  return fmt::format("{:.{}f}", ppl, decimals);
}

std::vector<double> perplexities(const std::vector<SweepRow>& rows) {
  std::vector<double> values;
  for (const auto& row : rows) values.push_back(row.perplexity);
  return values;
}
std::string format_kernel(double fraction) { return fraction < 0 ? "-" : fmt::format("{:.3f}", 100 * fraction); }

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// Round numbers of a linear axis between lo and hi (about `target` of them).
std::vector<double> linear_ticks(double lo, double hi, int target = 5) {
  const double range = hi - lo;
  const double raw = range / target;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double residual = raw / magnitude;
  const double step = (residual < 1.5 ? 1 : residual < 3 ? 2 : residual < 7 ? 5 : 10) * magnitude;
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

std::string tick_label(double value) {
  if (value != 0 && (std::abs(value) >= 1e5 || std::abs(value) < 1e-3)) return fmt::format("{:.0e}", value);
  return fmt::format("{:g}", value);
}

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;
  // Position in [0, 1] of a value.
  double unit(double v) const {
    if (log) return (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
    return (v - lo) / (hi - lo);
  }
};

// Perplexity: log scale when the values span more than a factor 20 (W4A4 per-token).
Axis perplexity_axis(const std::vector<double>& values) {
  Axis axis;
  double lo = INFINITY, hi = -INFINITY;
  for (double v : values)
    if (std::isfinite(v) && v > 0) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!std::isfinite(lo)) lo = 1, hi = 10;
  if (hi / lo > 20) {
    axis.log = true;
    axis.lo = std::pow(10.0, std::floor(std::log10(lo)));
    axis.hi = std::pow(10.0, std::ceil(std::log10(hi)));
    if (axis.hi <= axis.lo) axis.hi = axis.lo * 10;
    const int decades = static_cast<int>(std::lround(std::log10(axis.hi / axis.lo)));
    for (double t = axis.lo; t <= axis.hi * 1.0001; t *= 10) {
      axis.ticks.push_back(t);
      if (decades <= 2 && t * 10 <= axis.hi * 1.0001) axis.ticks.push_back(t * 3);
    }
    std::sort(axis.ticks.begin(), axis.ticks.end());
    return axis;
  }
  const double margin = std::max((hi - lo) * 0.08, hi * 0.01);
  axis.ticks = linear_ticks(std::max(0.0, lo - margin), hi + margin);
  axis.lo = std::min(axis.ticks.front(), std::max(0.0, lo - margin));
  axis.hi = std::max(axis.ticks.back(), hi + margin);
  return axis;
}

Axis kernel_axis(const std::vector<double>& percents) {
  double hi = 0;
  for (double v : percents)
    if (std::isfinite(v)) hi = std::max(hi, v);
  Axis axis;
  if (hi <= 0) hi = 1;
  axis.ticks = linear_ticks(0, hi * 1.08);
  axis.lo = 0;
  axis.hi = std::max(axis.ticks.back(), hi * 1.08);
  return axis;
}

}  // namespace

SweepGrid parse_sweep_grid(const std::string& text) {
  SweepGrid grid;
  std::vector<std::string> seen;
  if (trim(text).empty()) fail("--grid is empty (expected e.g. \"scheme=w8a8,w4a4;act=per-token,crossquant;alpha=0.15,0.45\")");
  for (const std::string& clause : split(text, ';')) {
    if (clause.empty()) continue;  // tolerate "a=b;" and "a=b;;c=d"
    const auto eq = clause.find('=');
    if (eq == std::string::npos) fail("--grid: '{}' is not KEY=VALUE[,VALUE...] (keys: scheme, act, alpha, method, rotate)", clause);
    const std::string key = trim(clause.substr(0, eq));
    const std::vector<std::string> values = split(clause.substr(eq + 1), ',');
    if (key != "scheme" && key != "act" && key != "alpha" && key != "method" && key != "rotate")
      fail("--grid: unknown key '{}' (keys: scheme, act, alpha, method, rotate)", key);
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) fail("--grid: key '{}' is given twice", key);
    seen.push_back(key);
    if (values.size() > kMaxSweepPoints) fail("--grid: key '{}' has {} values (at most {})", key, values.size(), kMaxSweepPoints);
    for (const std::string& value : values) {
      if (value.empty()) fail("--grid: key '{}' has an empty value", key);
      if (key == "alpha") {
        errno = 0;
        char* end = nullptr;
        const double alpha = std::strtod(value.c_str(), &end);
        if (end != value.c_str() + value.size() || errno != 0 || !std::isfinite(alpha))
          fail("--grid: alpha '{}' is not a number", value);
        if (!(alpha >= 0 && alpha <= 1)) fail("--grid: alpha {} is outside [0, 1]", value);
        add_unique(grid.alphas, alpha);
        continue;
      }
      static const std::vector<std::string> kRotations = {"none", "hadamard"};
      const auto& allowed = key == "scheme" ? kSchemes : key == "act" ? kActivations : key == "rotate" ? kRotations : kMethods;
      if (std::find(allowed.begin(), allowed.end(), value) == allowed.end())
        fail("--grid: {} '{}' is not one of {}", key, value, join(allowed));
      add_unique(key == "scheme" ? grid.schemes : key == "act" ? grid.activations : key == "rotate" ? grid.rotations : grid.methods,
                 value);
    }
  }
  if (grid.schemes.empty()) fail("--grid needs a scheme key (e.g. \"scheme=w8a8,w4a8-g128,w4a4\")");
  return grid;
}

std::vector<SweepPoint> expand_sweep_grid(const SweepGrid& grid) {
  std::vector<SweepPoint> points;
  const std::vector<std::string> methods = grid.methods.empty() ? std::vector<std::string>{""} : grid.methods;
  const std::vector<std::string> acts = grid.activations.empty() ? std::vector<std::string>{""} : grid.activations;
  const std::vector<std::string> rotations = grid.rotations.empty() ? std::vector<std::string>{""} : grid.rotations;
  for (const auto& scheme : grid.schemes)
    for (const auto& rotation : rotations)
    for (const auto& method : methods)
      for (const auto& act : acts) {
        SweepPoint point{scheme, method, act, false, 0, rotation};
        // Without act in the grid the method decides (crossquant: CrossQuant, others: per-token).
        const bool crossquant = act == "crossquant" || (act.empty() && !is_baseline_method(method));
        if (!crossquant || grid.alphas.empty()) {
          points.push_back(point);
          continue;
        }
        for (double alpha : grid.alphas) {
          point.has_alpha = true;
          point.alpha = alpha;
          points.push_back(point);
        }
      }
  if (points.size() > kMaxSweepPoints)
    fail("--grid expands to {} configurations (at most {}, each a whole perplexity run)", points.size(), kMaxSweepPoints);
  return points;
}

std::string sweep_setting_label(const std::string& scheme) {
  if (scheme.empty()) return "FP32";
  std::string label = scheme;
  const auto dash = label.find('-');
  std::transform(label.begin(), dash == std::string::npos ? label.end() : label.begin() + static_cast<std::ptrdiff_t>(dash),
                 label.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return label;
}

std::string sweep_method_label(const std::string& quant_method, const std::string& activation, double alpha,
                               const std::string& rotation) {
  const std::string act = activation == "crossquant" ? fmt::format("CrossQuant α={:g}", alpha) : activation;
  const std::string weights = quant_method == "smoothquant" ? "SmoothQuant + "
                              : quant_method == "awq"       ? "AWQ + "
                              : quant_method == "gptq"      ? "GPTQ + "
                              : quant_method == "omniquant" ? "OmniQuant + "
                                                            : "";  // crossquant and rtn: round-to-nearest weights
  return label_with_rotation(weights, rotation) + act;
}

int sweep_perplexity_decimals(const std::vector<double>& values) {
  int decimals = 4;
  const auto collide = [&](int d) {
    for (size_t i = 0; i < values.size(); ++i)
      for (size_t j = i + 1; j < values.size(); ++j)
        if (std::isfinite(values[i]) && std::isfinite(values[j]) && values[i] != values[j] &&
            format_ppl(values[i], d) == format_ppl(values[j], d))
          return true;
    return false;
  };
  while (decimals < kMaxPerplexityDecimals && collide(decimals)) ++decimals;
  return decimals;
}

std::string render_sweep_table(const std::vector<SweepRow>& rows) {
  const std::vector<std::string> header = {"Setting", "Method", "Perplexity", "Kernel %"};
  const int decimals = sweep_perplexity_decimals(perplexities(rows));
  std::vector<std::vector<std::string>> cells;
  for (const auto& row : rows)
    cells.push_back({row.setting, row.method, format_ppl(row.perplexity, decimals), format_kernel(row.kernel_fraction)});
  std::vector<std::size_t> width(header.size());
  for (std::size_t c = 0; c < header.size(); ++c) {
    width[c] = display_width(header[c]);
    for (const auto& line : cells) width[c] = std::max(width[c], display_width(line[c]));
  }
  auto render_line = [&](const std::vector<std::string>& line) {
    return pad_right(line[0], width[0]) + "  " + pad_right(line[1], width[1]) + "  " + pad_left(line[2], width[2]) + "  " +
           pad_left(line[3], width[3]) + "\n";
  };
  const std::size_t total = width[0] + width[1] + width[2] + width[3] + 6;
  std::string out = render_line(header) + std::string(total, '-') + "\n";
  for (std::size_t i = 0; i < cells.size(); ++i) {
    // A rule between settings, as the paper's tables group rows by bit width.
    if (i > 0 && rows[i].setting != rows[i - 1].setting) out += std::string(total, '-') + "\n";
    out += render_line(cells[i]);
  }
  return out;
}

std::string render_sweep_csv(const std::vector<SweepRow>& rows) {
  // The rotation column only when a row is rotated (older tables keep their columns).
  const bool rotated = std::any_of(rows.begin(), rows.end(), [](const SweepRow& row) { return !row.rotation.empty(); });
  std::string out = "setting,method,scheme,quant_method,activation,alpha,perplexity,kernel_percent,windows,seconds";
  out += rotated ? ",rotation\n" : "\n";
  for (const auto& row : rows) {
    out += fmt::format("{},{},{},{},{},{},{},{},{},{:.3f}", csv_field(row.setting), csv_field(row.method),
                       csv_field(row.scheme), csv_field(row.quant_method), csv_field(row.activation),
                       row.alpha >= 0 ? fmt::format("{:g}", row.alpha) : "", fmt::format("{:.6g}", row.perplexity),
                       row.kernel_fraction >= 0 ? fmt::format("{:.6g}", 100 * row.kernel_fraction) : "", row.windows,
                       row.seconds);
    out += rotated ? "," + (row.rotation.empty() ? std::string("none") : row.rotation) + "\n" : "\n";
  }
  return out;
}

nlohmann::json sweep_json(const std::vector<SweepRow>& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& row : rows) {
    nlohmann::json item = {{"setting", row.setting},       {"method", row.method},
                           {"scheme", row.scheme},         {"quant_method", row.quant_method},
                           {"activation", row.activation}, {"windows", row.windows},
                           {"seconds", row.seconds},       {"description", row.description}};
    item["alpha"] = row.alpha >= 0 ? nlohmann::json(row.alpha) : nlohmann::json(nullptr);
    item["perplexity"] = std::isfinite(row.perplexity) ? nlohmann::json(row.perplexity) : nlohmann::json(nullptr);
    item["kernel_percent"] = row.kernel_fraction >= 0 ? nlohmann::json(100 * row.kernel_fraction) : nlohmann::json(nullptr);
    if (!row.rotation.empty()) item["rotation"] = row.rotation;
    out.push_back(std::move(item));
  }
  return out;
}

namespace {

std::string weights_label(const std::string& quant_method) {
  if (quant_method == "smoothquant") return "SmoothQuant";
  if (quant_method == "awq") return "AWQ";
  if (quant_method == "gptq") return "GPTQ";
  return "RTN";  // --method crossquant and rtn both round weights to nearest
}

const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                               "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};
// Bars: pairs of a light and a dark shade of one hue (a weight method's per-token and
// CrossQuant bars, in the grid's order).
const char* const kBarColors[] = {"#a6cee3", "#1f78b4", "#b2df8a", "#33a02c", "#fdbf6f",
                                  "#ff7f00", "#cab2d6", "#6a3d9a", "#fb9a99", "#e31a1c"};

std::string svg_header(double width, double height, const std::string& title) {
  std::string svg = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect x=\"0\" y=\"0\" width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n",
      width, height);
  svg += fmt::format("<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n", width / 2,
                     xml_escape(title));
  return svg;
}

std::string render_alpha_svg(const std::vector<SweepRow>& rows, const std::string& title);

// One α (or none): grouped bars, x = scheme, one bar per method in every group.
std::string render_bars_svg(const std::vector<SweepRow>& rows, const std::string& title) {
  std::vector<std::string> settings, labels;
  const SweepRow* fp32 = nullptr;
  double alpha = -1;
  for (const auto& row : rows) {
    if (row.scheme.empty()) {
      fp32 = &row;
      continue;
    }
    add_unique(settings, row.setting);
    add_unique(labels, sweep_bar_label(row.quant_method, row.activation, row.rotation));
    if (row.alpha >= 0) alpha = row.alpha;
  }
  const auto find_row = [&](const std::string& setting, const std::string& label) -> const SweepRow* {
    for (const auto& row : rows)
      if (!row.scheme.empty() && row.setting == setting && sweep_bar_label(row.quant_method, row.activation, row.rotation) == label)
        return &row;
    return nullptr;
  };
  std::vector<double> ppl_values, kernel_values;
  double ppl_max = 0, kernel_max = 0;
  for (const auto& row : rows) {
    if (std::isfinite(row.perplexity)) ppl_values.push_back(row.perplexity), ppl_max = std::max(ppl_max, row.perplexity);
    if (row.kernel_fraction >= 0)
      kernel_values.push_back(100 * row.kernel_fraction), kernel_max = std::max(kernel_max, 100 * row.kernel_fraction);
  }
  // Headroom above the highest bar for its value, written upwards.
  const Axis probe = perplexity_axis(ppl_values);
  ppl_values.push_back(probe.log ? ppl_max * 2.5 : ppl_max + 0.3 * (ppl_max - probe.lo));
  kernel_values.push_back(kernel_max * 1.3);
  const Axis ppl_axis = perplexity_axis(ppl_values);
  const Axis kern_axis = kernel_axis(kernel_values);
  const int decimals = sweep_perplexity_decimals(perplexities(rows));

  constexpr double kWidth = 1160, kPanelWidth = 470, kTop = 70, kPanelHeight = 330;
  const double panel_left[2] = {85, 650};
  const double legend_top = kTop + kPanelHeight + 58;
  // Legend filled column by column, so that a weight method's per-token and CrossQuant
  // entries sit one above the other.
  constexpr std::size_t kLegendColumns = 4;
  const std::size_t legend_entries = labels.size() + (fp32 ? 1 : 0);
  const std::size_t legend_rows = (legend_entries + kLegendColumns - 1) / kLegendColumns;
  const double height = legend_top + 22.0 * static_cast<double>(legend_rows) + 16;
  std::string svg = svg_header(kWidth, height, title.empty() ? "Perplexity and kernel proportion per scheme and method" : title);
  if (alpha >= 0)
    svg += fmt::format("<text x=\"{}\" y=\"42\" text-anchor=\"middle\" font-size=\"12\">CrossQuant α = {:g}</text>\n",
                       kWidth / 2, alpha);

  const Axis* axes[2] = {&ppl_axis, &kern_axis};
  const std::string y_labels[2] = {ppl_axis.log ? "perplexity (log scale)" : "perplexity", "kernel proportion (%)"};
  const char* panel_titles[2] = {"Perplexity (lower is better)", "Kernel proportion (lower is better)"};
  const double group_width = kPanelWidth / static_cast<double>(std::max<std::size_t>(settings.size(), 1));
  const double bar_width = group_width * 0.84 / static_cast<double>(std::max<std::size_t>(labels.size(), 1));
  for (int panel = 0; panel < 2; ++panel) {
    const double left = panel_left[panel], bottom = kTop + kPanelHeight;
    const Axis& axis = *axes[panel];
    const auto y_of = [&](double v) { return kTop + (1 - std::clamp(axis.unit(v), 0.0, 1.0)) * kPanelHeight; };
    svg += fmt::format("<g class=\"panel\" id=\"panel-{}\">\n", panel == 0 ? "perplexity" : "kernel");
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n",
                       left + kPanelWidth / 2, kTop - 12, panel_titles[panel]);
    for (double t : axis.ticks) {
      if (t < axis.lo || t > axis.hi) continue;
      const double y = y_of(t);
      svg += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#e5e5e5\"/>\n", left, y,
                         left + kPanelWidth);
      svg += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"black\"/>\n", left - 5, y, left);
      svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", left - 8, y + 4, tick_label(t));
    }
    svg += fmt::format("<text transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n", left - 58,
                       kTop + kPanelHeight / 2, y_labels[panel]);
    for (std::size_t g = 0; g < settings.size(); ++g) {
      const double group_left = left + group_width * static_cast<double>(g) + group_width * 0.08;
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n",
                         left + group_width * (static_cast<double>(g) + 0.5), bottom + 20, xml_escape(settings[g]));
      if (g > 0)
        svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#bbbbbb\"/>\n",
                           left + group_width * static_cast<double>(g), kTop, bottom);
      for (std::size_t b = 0; b < labels.size(); ++b) {
        const SweepRow* row = find_row(settings[g], labels[b]);
        if (!row) continue;
        const double value = panel == 0 ? row->perplexity : 100 * row->kernel_fraction;
        const double x = group_left + bar_width * static_cast<double>(b);
        if (panel == 1 && row->kernel_fraction < 0) continue;  // activations not quantized
        if (!std::isfinite(value)) {
          svg += fmt::format("<text transform=\"translate({:.1f},{}) rotate(-90)\" font-size=\"10\">diverged</text>\n",
                             x + bar_width / 2 + 3, bottom - 4);
          continue;
        }
        const double y = y_of(value);
        svg += fmt::format("<rect class=\"bar\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\">"
                           "<title>{} {}: {}</title></rect>\n",
                           x, y, bar_width * 0.9, bottom - y, kBarColors[b % std::size(kBarColors)], xml_escape(settings[g]),
                           xml_escape(labels[b]),
                           panel == 0 ? format_ppl(value, decimals) : fmt::format("{:.2f} %", value));
        svg += fmt::format("<text transform=\"translate({:.1f},{:.1f}) rotate(-90)\" font-size=\"10\">{}</text>\n",
                           x + bar_width * 0.45 + 3.5, y - 3,
                           panel == 0 ? format_ppl(value, decimals) : fmt::format("{:.2f}", value));
      }
    }
    svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n", left, kTop,
                       kPanelWidth, kPanelHeight);
    // FP32 on top of the bars, so that it stays visible.
    if (panel == 0 && fp32 && std::isfinite(fp32->perplexity) && fp32->perplexity >= axis.lo && fp32->perplexity <= axis.hi)
      svg += fmt::format("<line class=\"fp32\" x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"black\" "
                         "stroke-width=\"1.5\" stroke-dasharray=\"5,3\"/>\n",
                         left, y_of(fp32->perplexity), left + kPanelWidth);
    svg += "</g>\n";
  }
  svg += "<g class=\"legend\">\n";
  std::size_t entry = 0;
  const auto position = [&] {
    const double x = 85 + static_cast<double>(entry / legend_rows) * 270;
    const double y = legend_top + 22.0 * static_cast<double>(entry % legend_rows);
    ++entry;
    return std::pair{x, y};
  };
  for (std::size_t b = 0; b < labels.size(); ++b) {
    const auto [x, y] = position();
    svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"22\" height=\"12\" fill=\"{}\"/>\n", x, y - 10,
                       kBarColors[b % std::size(kBarColors)]);
    svg += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", x + 30, y, xml_escape(labels[b]));
  }
  if (fp32) {
    const auto [x, y] = position();
    svg += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\" stroke-width=\"1.5\" "
                       "stroke-dasharray=\"5,3\"/>\n",
                       x, y - 4, x + 22, y - 4);
    svg += fmt::format("<text x=\"{}\" y=\"{}\">FP32 perplexity ({})</text>\n", x + 30, y,
                       format_ppl(fp32->perplexity, decimals));
  }
  svg += "</g>\n</svg>\n";
  return svg;
}

}  // namespace

std::string sweep_bar_label(const std::string& quant_method, const std::string& activation, const std::string& rotation) {
  const std::string weights = label_with_rotation(weights_label(quant_method) + " + ", rotation);
  if (activation.empty()) return weights.substr(0, weights.size() - 3);  // no trailing " + "
  return weights + (activation == "crossquant" ? std::string("CrossQuant") : activation);
}

std::string render_sweep_svg(const std::vector<SweepRow>& rows, const std::string& title) {
  std::vector<double> alphas;
  for (const auto& row : rows)
    if (row.activation == "crossquant" && row.alpha >= 0) add_unique(alphas, row.alpha);
  return alphas.size() <= 1 ? render_bars_svg(rows, title) : render_alpha_svg(rows, title);
}

namespace {

std::string render_alpha_svg(const std::vector<SweepRow>& rows, const std::string& title) {
  // Series: CrossQuant rows per (scheme, --method); baselines: other quantized rows.
  bool several_methods = false;
  for (const auto& row : rows)
    if (!row.quant_method.empty() && (row.quant_method != rows.back().quant_method || row.rotation != rows.back().rotation))
      several_methods = true;
  struct Series {
    std::string key, label;
    std::vector<const SweepRow*> points;     // CrossQuant, sorted by α
    std::vector<const SweepRow*> baselines;  // same setting, other activations
  };
  std::vector<Series> series;
  auto series_key = [&](const SweepRow& row) {
    return row.setting + (several_methods ? " " + row.rotation + row.quant_method : "");
  };
  for (const auto& row : rows)
    if (row.activation == "crossquant" && row.alpha >= 0) {
      const std::string key = series_key(row);
      auto it = std::find_if(series.begin(), series.end(), [&](const Series& s) { return s.key == key; });
      if (it == series.end()) {
        const std::string label = row.setting + " " + (several_methods ? sweep_bar_label(row.quant_method, "crossquant", row.rotation)
                                                                        : std::string("CrossQuant"));
        series.push_back({key, label, {}, {}});
        it = series.end() - 1;
      }
      it->points.push_back(&row);
    }
  for (const auto& row : rows)
    if (!row.scheme.empty() && row.activation != "crossquant")
      for (auto& s : series)
        if (s.key == series_key(row)) s.baselines.push_back(&row);
  for (auto& s : series)
    std::stable_sort(s.points.begin(), s.points.end(), [](const SweepRow* a, const SweepRow* b) { return a->alpha < b->alpha; });
  const SweepRow* fp32 = nullptr;
  for (const auto& row : rows)
    if (row.scheme.empty()) fp32 = &row;

  std::vector<double> ppl_values, kernel_values;
  for (const auto& s : series) {
    for (const auto* p : s.points) ppl_values.push_back(p->perplexity), kernel_values.push_back(100 * p->kernel_fraction);
    for (const auto* b : s.baselines) {
      ppl_values.push_back(b->perplexity);
      if (b->kernel_fraction >= 0) kernel_values.push_back(100 * b->kernel_fraction);
    }
  }
  if (fp32) ppl_values.push_back(fp32->perplexity);
  const Axis ppl_axis = perplexity_axis(ppl_values);
  const Axis kern_axis = kernel_axis(kernel_values);
  Axis alpha_axis;
  alpha_axis.ticks = {0, 0.2, 0.4, 0.6, 0.8, 1.0};

  constexpr double kWidth = 980, kPanelWidth = 380, kTop = 60, kPanelHeight = 280;
  const double panel_left[2] = {80, 560};
  const double legend_top = kTop + kPanelHeight + 60;
  const std::size_t legend_lines = series.size() * 2 + (fp32 ? 1 : 0);
  const double height = legend_top + 20.0 * static_cast<double>((legend_lines + 1) / 2) + 20;

  std::string svg = svg_header(kWidth, height, title.empty() ? "Perplexity and kernel proportion against CrossQuant α" : title);

  auto x_of = [&](int panel, double alpha) { return panel_left[panel] + alpha_axis.unit(alpha) * kPanelWidth; };
  auto y_of = [&](const Axis& axis, double v) { return kTop + (1 - axis.unit(v)) * kPanelHeight; };
  const Axis* axes[2] = {&ppl_axis, &kern_axis};
  const char* y_labels[2] = {ppl_axis.log ? "perplexity (log scale)" : "perplexity", "kernel proportion (%)"};
  const char* panel_titles[2] = {"Perplexity", "Kernel proportion"};
  for (int panel = 0; panel < 2; ++panel) {
    const double left = panel_left[panel], bottom = kTop + kPanelHeight;
    const Axis& axis = *axes[panel];
    svg += fmt::format("<g class=\"panel\" id=\"panel-{}\">\n", panel == 0 ? "perplexity" : "kernel");
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n",
                       left + kPanelWidth / 2, kTop - 10, panel_titles[panel]);
    for (double t : alpha_axis.ticks) {
      const double x = x_of(panel, t);
      svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#e5e5e5\"/>\n", x, kTop, bottom);
      svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"black\"/>\n", x, bottom, bottom + 5);
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", x, bottom + 18, tick_label(t));
    }
    for (double t : axis.ticks) {
      if (t < axis.lo || t > axis.hi) continue;
      const double y = y_of(axis, t);
      svg += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#e5e5e5\"/>\n", left, y, left + kPanelWidth);
      svg += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"black\"/>\n", left - 5, y, left);
      svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", left - 8, y + 4, tick_label(t));
    }
    svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n", left, kTop,
                       kPanelWidth, kPanelHeight);
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">α (CrossQuant activations)</text>\n",
                       left + kPanelWidth / 2, bottom + 38);
    svg += fmt::format("<text transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n", left - 55,
                       kTop + kPanelHeight / 2, y_labels[panel]);
    auto in_range = [&](double v) { return std::isfinite(v) && v >= axis.lo && v <= axis.hi && (!axis.log || v > 0); };
    // Reference lines: FP32 perplexity, and each scheme's other activations (per-token).
    if (panel == 0 && fp32 && in_range(fp32->perplexity))
      svg += fmt::format("<line class=\"fp32\" x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"black\" "
                         "stroke-dasharray=\"2,3\"/>\n",
                         left, y_of(axis, fp32->perplexity), left + kPanelWidth);
    for (std::size_t s = 0; s < series.size(); ++s) {
      const char* color = kColors[s % std::size(kColors)];
      for (const auto* b : series[s].baselines) {
        const double v = panel == 0 ? b->perplexity : 100 * b->kernel_fraction;
        if (!in_range(v)) continue;
        svg += fmt::format("<line class=\"baseline\" x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"{3}\" "
                           "stroke-dasharray=\"6,4\"/>\n",
                           left, y_of(axis, v), left + kPanelWidth, color);
      }
      std::string points, markers;
      for (const auto* p : series[s].points) {
        const double v = panel == 0 ? p->perplexity : 100 * p->kernel_fraction;
        if (!in_range(v)) continue;
        const double x = x_of(panel, p->alpha), y = y_of(axis, v);
        points += fmt::format("{}{:.1f},{:.1f}", points.empty() ? "" : " ", x, y);
        markers += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", x, y, color);
      }
      svg += fmt::format("<polyline class=\"series\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n", color, points);
      svg += markers;
    }
    svg += "</g>\n";
  }
  // Legend, two columns.
  svg += "<g class=\"legend\">\n";
  std::size_t entry = 0;
  auto legend = [&](const std::string& color, const std::string& dash, const std::string& label) {
    const double x = 80 + static_cast<double>(entry % 2) * 480, y = legend_top + 20.0 * static_cast<double>(entry / 2);
    svg += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"{}/>\n", x, y, x + 30, y,
                       color, dash.empty() ? "" : " stroke-dasharray=\"" + dash + "\"");
    svg += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", x + 38, y + 4, xml_escape(label));
    ++entry;
  };
  for (std::size_t s = 0; s < series.size(); ++s) {
    const std::string color = kColors[s % std::size(kColors)];
    legend(color, "", series[s].label);
    if (!series[s].baselines.empty()) {
      std::vector<std::string> names;
      for (const auto* b : series[s].baselines)
        names.push_back(several_methods ? sweep_bar_label(b->quant_method, b->activation, b->rotation) : b->method);
      legend(color, "6,4", series[s].key.substr(0, series[s].key.find(' ')) + " " + join(names) + " (dashed)");
    }
  }
  if (fp32)
    legend("black", "2,3", fmt::format("FP32 ({})", format_ppl(fp32->perplexity, sweep_perplexity_decimals(perplexities(rows)))));
  svg += "</g>\n</svg>\n";
  return svg;
}

}  // namespace

}  // namespace cq
