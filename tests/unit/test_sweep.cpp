// `cq sweep`: grid parsing, the report rendering (table, CSV, SVG) and one run end to end.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <map>
#include <regex>
#include <set>

#include "eval/sweep_report.h"
#include "quant/quant_config.h"
#include "test_support.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq {
namespace {

std::size_t count_of(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + needle.size())) ++n;
  return n;
}

void expect_error(const std::string& grid, const std::string& must_contain) {
  try {
    parse_sweep_grid(grid);
    ADD_FAILURE() << "no error for " << grid;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(must_contain), std::string::npos) << e.what();
  }
}

TEST(Sweep, ParsesTheIssueGrid) {
  const SweepGrid grid = parse_sweep_grid("scheme=w8a8,w4a8-g128,w4a4;act=per-token,crossquant;alpha=0.15,0.45,0.75");
  EXPECT_EQ(grid.schemes, (std::vector<std::string>{"w8a8", "w4a8-g128", "w4a4"}));
  EXPECT_EQ(grid.activations, (std::vector<std::string>{"per-token", "crossquant"}));
  EXPECT_EQ(grid.alphas, (std::vector<double>{0.15, 0.45, 0.75}));
  EXPECT_TRUE(grid.methods.empty());
  // alpha only varies for CrossQuant: per scheme 1 per-token + 3 CrossQuant rows.
  const auto points = expand_sweep_grid(grid);
  ASSERT_EQ(points.size(), 12u);
  EXPECT_EQ(points[0].scheme, "w8a8");
  EXPECT_EQ(points[0].activation, "per-token");
  EXPECT_FALSE(points[0].has_alpha);
  EXPECT_EQ(points[3].activation, "crossquant");
  EXPECT_DOUBLE_EQ(points[3].alpha, 0.75);
  EXPECT_EQ(points[4].scheme, "w4a8-g128");
}

TEST(Sweep, ParsesMethodsSpacesAndDuplicates) {
  const SweepGrid grid = parse_sweep_grid(" scheme = w8a8 , w8a8 ; method=rtn,awq ; alpha=0.5;");
  EXPECT_EQ(grid.schemes, (std::vector<std::string>{"w8a8"}));
  EXPECT_EQ(grid.methods, (std::vector<std::string>{"rtn", "awq"}));
  // No act key: the method decides (rtn, awq: per-token), so alpha does not multiply rows.
  EXPECT_EQ(expand_sweep_grid(grid).size(), 2u);
  const SweepGrid cq = parse_sweep_grid("scheme=w4a4;method=crossquant;alpha=0.1,0.2");
  EXPECT_EQ(expand_sweep_grid(cq).size(), 2u);
}

TEST(Sweep, RejectsUnknownKeysAndValues) {
  expect_error("scheme=w8a8;bits=4", "unknown key 'bits'");
  expect_error("scheme=w8a8;act=per-channel", "act 'per-channel' is not one of");
  expect_error("scheme=w3a3", "scheme 'w3a3' is not one of");
  expect_error("scheme=w8a8;method=quarot", "method 'quarot'");
  expect_error("act=per-token", "needs a scheme");
  expect_error("scheme=w8a8;scheme=w4a4", "given twice");
  expect_error("scheme", "KEY=VALUE");
  expect_error("", "empty");
  expect_error("scheme=w8a8,", "empty value");
}

TEST(Sweep, RejectsBadAlpha) {
  expect_error("scheme=w8a8;act=crossquant;alpha=abc", "alpha 'abc' is not a number");
  expect_error("scheme=w8a8;act=crossquant;alpha=0.5x", "not a number");
  expect_error("scheme=w8a8;act=crossquant;alpha=1.5", "outside [0, 1]");
  expect_error("scheme=w8a8;act=crossquant;alpha=-0.1", "outside [0, 1]");
  expect_error("scheme=w8a8;act=crossquant;alpha=nan", "not a number");
}

// Resource limit: each configuration is a whole perplexity run, so a grid of thousands is refused
// while parsing (O(values) work, not the quadratic de-duplication of a huge list).
TEST(Sweep, RefusesGridsBeyondTheLimit) {
  std::string alphas;
  for (int i = 0; i <= 100000; ++i) alphas += fmt::format("{}0.{:05d}", i ? "," : "", i);
  expect_error("scheme=w8a8;act=crossquant;alpha=" + alphas, "has 100001 values (at most 1000)");
  std::string fine;  // 1000 alphas are accepted, but x 5 schemes x 2 activations is too many runs
  for (int i = 0; i < 1000; ++i) fine += fmt::format("{}0.{:04d}", i ? "," : "", i);
  const SweepGrid grid = parse_sweep_grid("scheme=w8a8,w4a8,w4a8-g128,w4a4,w16a16;act=per-token,crossquant;alpha=" + fine);
  try {
    expand_sweep_grid(grid);
    ADD_FAILURE() << "no error for 5005 configurations";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expands to 5005 configurations (at most 1000"), std::string::npos) << e.what();
  }
}

std::vector<SweepRow> example_rows() {
  std::vector<SweepRow> rows;
  SweepRow fp32;
  fp32.setting = "FP32";
  fp32.method = "-";
  fp32.perplexity = 12.5;
  rows.push_back(fp32);
  const double ppl[3][4] = {{13.0, 12.6, 12.7, 12.9}, {14.0, 13.1, 13.3, 13.8}, {9000, 40, 80, 300}};
  const char* schemes[3] = {"w8a8", "w4a8-g128", "w4a4"};
  for (int s = 0; s < 3; ++s) {
    SweepRow row;
    row.scheme = schemes[s];
    row.setting = sweep_setting_label(schemes[s]);
    row.quant_method = "crossquant";
    row.activation = "per-token";
    row.method = sweep_method_label("crossquant", "per-token", 0);
    row.perplexity = ppl[s][0];
    row.kernel_fraction = 0.1 + 0.1 * s;
    row.windows = 2;
    rows.push_back(row);
    const double alphas[3] = {0.15, 0.45, 0.75};
    for (int a = 0; a < 3; ++a) {
      row.activation = "crossquant";
      row.alpha = alphas[a];
      row.method = sweep_method_label("crossquant", "crossquant", alphas[a]);
      row.perplexity = ppl[s][a + 1];
      row.kernel_fraction = 0.01 * (a + 1) * (s + 1);
      rows.push_back(row);
    }
  }
  rows.back().perplexity = INFINITY;  // a diverged configuration must not break the report
  return rows;
}

TEST(Sweep, LabelsFollowThePaper) {
  EXPECT_EQ(sweep_setting_label("w4a8-g128"), "W4A8-g128");
  EXPECT_EQ(sweep_setting_label("w8a8"), "W8A8");
  EXPECT_EQ(sweep_method_label("crossquant", "crossquant", 0.15), "CrossQuant α=0.15");
  EXPECT_EQ(sweep_method_label("awq", "per-token", 0), "AWQ + per-token");
  EXPECT_EQ(sweep_method_label("gptq", "crossquant", 0.15), "GPTQ + CrossQuant α=0.15");
  EXPECT_EQ(parse_sweep_grid("scheme=w4a4;method=rtn,gptq").methods, (std::vector<std::string>{"rtn", "gptq"}));
  EXPECT_EQ(sweep_method_label("smoothquant", "crossquant", 0.45), "SmoothQuant + CrossQuant α=0.45");
}

TEST(Sweep, TableContainsEveryRowAligned) {
  const auto rows = example_rows();
  const std::string table = render_sweep_table(rows);
  EXPECT_NE(table.find("Setting"), std::string::npos);
  EXPECT_NE(table.find("Kernel %"), std::string::npos);
  for (const auto& row : rows) {
    // Every row is a line with its setting and method.
    const std::regex line("(^|\n)" + row.setting + " +" + std::regex_replace(row.method, std::regex(R"([.+])"), R"(\$&)") + " ");
    EXPECT_TRUE(std::regex_search(table, line)) << row.setting << " " << row.method << "\n" << table;
  }
  EXPECT_NE(table.find("9000.0000"), std::string::npos);
  EXPECT_NE(table.find("inf"), std::string::npos);
  EXPECT_NE(table.find("10.000"), std::string::npos);  // kernel 0.1 -> 10.000 %
  // Aligned: every data line ends at the same column (the numbers are right-aligned).
  std::vector<std::size_t> widths;
  std::size_t start = 0;
  while (start < table.size()) {
    const auto end = table.find('\n', start);
    std::string l = table.substr(start, end - start);
    std::size_t w = 0;
    for (unsigned char c : l) w += (c & 0xC0) != 0x80;
    widths.push_back(w);
    start = end + 1;
  }
  for (std::size_t w : widths) EXPECT_EQ(w, widths.front()) << table;
}

// W8A8 rows differ in the third or fourth decimal: the table must show the difference
// (4 decimals, more where two different values would still print alike).
TEST(Sweep, TablePerplexityShowsTheDifferences) {
  EXPECT_EQ(sweep_perplexity_decimals({6.5874, 6.5793, 6.5718, INFINITY, NAN}), 4);
  EXPECT_EQ(sweep_perplexity_decimals({6.57184, 6.57176, 12.9636}), 5);
  EXPECT_EQ(sweep_perplexity_decimals({6.571841, 6.571836}), 6);
  EXPECT_EQ(sweep_perplexity_decimals({1.0, 1.0 + 1e-12}), kMaxPerplexityDecimals);
  std::vector<SweepRow> rows(3);
  const double ppl[3] = {6.5874, 6.57931, 6.57926};
  for (int i = 0; i < 3; ++i) rows[i].setting = "W8A8", rows[i].method = fmt::format("m{}", i), rows[i].perplexity = ppl[i];
  const std::string table = render_sweep_table(rows);
  for (const char* cell : {"6.58740", "6.57931", "6.57926"}) EXPECT_NE(table.find(cell), std::string::npos) << cell << "\n" << table;
}

// The README's 18-row sweep (one α, three schemes x {RTN, SmoothQuant, AWQ} x {per-token,
// CrossQuant}): grouped bars, one group per scheme, one colour per method in both panels.
std::vector<SweepRow> method_grid_rows() {
  std::vector<SweepRow> rows;
  SweepRow fp32;
  fp32.setting = "FP32";
  fp32.method = "-";
  fp32.perplexity = 6.5874;
  rows.push_back(fp32);
  int i = 0;
  for (const char* scheme : {"w8a8", "w4a8-g128", "w4a4"})
    for (const char* method : {"rtn", "smoothquant", "awq"})
      for (const char* act : {"per-token", "crossquant"}) {
        SweepRow row;
        row.scheme = scheme;
        row.setting = sweep_setting_label(scheme);
        row.quant_method = method;
        row.activation = act;
        row.alpha = std::string(act) == "crossquant" ? 0.15 : -1;
        row.method = sweep_method_label(method, act, 0.15);
        row.perplexity = 6.6 + 0.37 * i;
        row.kernel_fraction = 0.03 + 0.01 * (i++ % 6);
        rows.push_back(row);
      }
  return rows;
}

void expect_balanced_tags(const std::string& svg) {
  std::vector<std::string> stack;
  const std::regex tag(R"(<(/?)([a-zA-Z?][a-zA-Z0-9]*)[^<>]*?(/?)>)");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), tag); it != std::sregex_iterator(); ++it) {
    const std::string name = (*it)[2];
    if (name[0] == '?' || (*it)[3] == "/") continue;
    if ((*it)[1] == "/") {
      ASSERT_FALSE(stack.empty()) << name;
      EXPECT_EQ(stack.back(), name);
      stack.pop_back();
    } else {
      stack.push_back(name);
    }
  }
  EXPECT_TRUE(stack.empty());
}

TEST(Sweep, OneAlphaDrawsGroupedBarsPerSchemeAndMethod) {
  const auto rows = method_grid_rows();
  const std::string svg = render_sweep_svg(rows);
  expect_balanced_tags(svg);
  EXPECT_EQ(count_of(svg, "<polyline"), 0u);
  EXPECT_EQ(count_of(svg, "class=\"bar\""), 2u * 18u);  // every row in both panels
  EXPECT_EQ(count_of(svg, "class=\"panel\""), 2u);
  EXPECT_EQ(count_of(svg, "class=\"fp32\""), 1u);  // FP32 perplexity as a reference line
  EXPECT_NE(svg.find("FP32 perplexity (6.5874)"), std::string::npos);
  EXPECT_NE(svg.find("CrossQuant α = 0.15"), std::string::npos);
  for (const char* label : {"RTN + per-token", "RTN + CrossQuant", "SmoothQuant + per-token", "SmoothQuant + CrossQuant",
                            "AWQ + per-token", "AWQ + CrossQuant"})
    EXPECT_EQ(count_of(svg, ">" + std::string(label) + "<"), 1u) << label;  // one legend entry each
  for (const char* group : {">W8A8<", ">W4A8-g128<", ">W4A4<"}) EXPECT_EQ(count_of(svg, group), 2u) << group;
  EXPECT_EQ(svg.find("--method"), std::string::npos);
  // Values are written on the bars, with the table's decimals.
  EXPECT_NE(svg.find(">6.6000<"), std::string::npos);
  // One colour per method, the same in every group.
  std::map<std::string, std::set<std::string>> colours;
  const std::regex bar(R"re(class="bar"[^>]*fill="(#[0-9a-f]+)"><title>[^ ]+ ([^:]+):)re");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), bar); it != std::sregex_iterator(); ++it)
    colours[(*it)[2]].insert((*it)[1]);
  ASSERT_EQ(colours.size(), 6u);
  std::set<std::string> distinct;
  for (const auto& [label, fill] : colours) {
    EXPECT_EQ(fill.size(), 1u) << label;
    distinct.insert(*fill.begin());
  }
  EXPECT_EQ(distinct.size(), 6u);
  // Several α keep the line plot.
  auto several = rows;
  several.back().alpha = 0.45;
  EXPECT_GT(count_of(render_sweep_svg(several), "<polyline"), 0u);
}

TEST(Sweep, CsvHasAHeaderAndOneLinePerRow) {
  const auto rows = example_rows();
  const std::string csv = render_sweep_csv(rows);
  EXPECT_EQ(count_of(csv, "\n"), rows.size() + 1);
  EXPECT_EQ(csv.rfind("setting,method,scheme,", 0), 0u);
  EXPECT_NE(csv.find("W8A8,CrossQuant α=0.15,w8a8,crossquant,crossquant,0.15,12.6,1,2,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("FP32,-,,,,,12.5,,0,"), std::string::npos) << csv;
  const nlohmann::json json = sweep_json(rows);
  ASSERT_EQ(json.size(), rows.size());
  EXPECT_TRUE(json[0]["kernel_percent"].is_null());
  EXPECT_TRUE(json.back()["perplexity"].is_null());
  EXPECT_DOUBLE_EQ(json[2]["alpha"].get<double>(), 0.15);
}

TEST(Sweep, SvgIsWellFormedWithOnePolylinePerScheme) {
  const auto rows = example_rows();
  const std::string svg = render_sweep_svg(rows, "a <title> & more");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("a &lt;title&gt; &amp; more"), std::string::npos);
  // Two panels, each with one polyline per scheme.
  EXPECT_EQ(count_of(svg, "<polyline"), 2u * 3u);
  EXPECT_EQ(count_of(svg, "class=\"panel\""), 2u);
  // Axis labels and a legend naming every scheme.
  EXPECT_NE(svg.find("kernel proportion (%)"), std::string::npos);
  EXPECT_NE(svg.find("perplexity (log scale)"), std::string::npos);  // 12 .. 9000
  for (const char* name : {"W8A8 CrossQuant", "W4A8-g128 CrossQuant", "W4A4 CrossQuant", "FP32"})
    EXPECT_NE(svg.find(name), std::string::npos) << name;
  // XML-ish well-formedness: tags balance, every element opened is closed or self-closed.
  std::vector<std::string> stack;
  const std::regex tag(R"(<(/?)([a-zA-Z?][a-zA-Z0-9]*)[^<>]*?(/?)>)");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), tag); it != std::sregex_iterator(); ++it) {
    const std::string name = (*it)[2];
    if (name[0] == '?' || (*it)[3] == "/") continue;
    if ((*it)[1] == "/") {
      ASSERT_FALSE(stack.empty()) << name;
      EXPECT_EQ(stack.back(), name);
      stack.pop_back();
    } else {
      stack.push_back(name);
    }
  }
  EXPECT_TRUE(stack.empty());
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
}

TEST(Sweep, EndToEndOnTinyopt) {
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED("data/tinystories/TinyStories-valid.first100.txt");
  const auto model = test::shared_dir() / "models/tinyopt";
  const auto text = test::shared_dir() / "data/tinystories/TinyStories-valid.first100.txt";
  const auto dir = test::scratch_dir("sweep-e2e");
  const auto result = test::run_cq("sweep --model '" + model.string() + "' --text '" + text.string() +
                                   "' --grid 'scheme=w8a8,w4a4;act=per-token,crossquant;alpha=0.15,0.75' "
                                   "--seqlen 128 --max-windows 2 --json '" + (dir / "s.json").string() + "' --csv '" +
                                   (dir / "s.csv").string() + "' --svg '" + (dir / "s.svg").string() + "'");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  // Progress: one line per combination (FP32 + 2 schemes x (per-token + 2 α)).
  EXPECT_EQ(count_of(result.output, "] "), 7u) << result.output;
  EXPECT_NE(result.output.find("[7/7]"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("CrossQuant α=0.75"), std::string::npos) << result.output;
  const auto json = nlohmann::json::parse(read_text_file((dir / "s.json").string()));
  ASSERT_EQ(json["rows"].size(), 7u);
  EXPECT_EQ(json["rows"][0]["setting"], "FP32");
  for (const auto& row : json["rows"]) {
    ASSERT_TRUE(row["perplexity"].is_number()) << row;
    EXPECT_GT(row["perplexity"].get<double>(), 1.0);
    EXPECT_EQ(row["windows"], 2);
  }
  // Same windows, more quantization noise: W4A4 per-token is no better than FP32, and
  // CrossQuant shrinks the kernel of per-token.
  EXPECT_GE(json["rows"][4]["perplexity"].get<double>(), json["rows"][0]["perplexity"].get<double>() * 0.99);
  EXPECT_LT(json["rows"][5]["kernel_percent"].get<double>(), json["rows"][4]["kernel_percent"].get<double>());
  EXPECT_EQ(count_of(read_text_file((dir / "s.csv").string()), "\n"), 8u);
  EXPECT_EQ(count_of(read_text_file((dir / "s.svg").string()), "<polyline"), 4u);
}

// Flags given beside --grid reach every cell: on/off flags (no value) as well as valued ones.
TEST(Sweep, OnOffFlagsBesideTheGridReachEveryCell) {
  CQ_NEED_SHARED("models/stories260k");
  CQ_NEED_SHARED("data/tinystories/TinyStories-valid.first100.txt");
  const auto model = test::shared_dir() / "models/stories260k";
  const auto text = test::shared_dir() / "data/tinystories/TinyStories-valid.first100.txt";
  const auto dir = test::scratch_dir("sweep-flags");
  const std::string common = " --model '" + model.string() + "' --text '" + text.string() + "' --seqlen 128 --max-windows 2";
  const auto sweep = test::run_cq("sweep" + common + " --grid 'scheme=w4a8-g128;act=per-token' --weight-asymmetric --json '" +
                                  (dir / "s.json").string() + "'");
  ASSERT_EQ(sweep.exit_code, 0) << sweep.output;
  const auto alone = test::run_cq("ppl" + common + " --scheme w4a8-g128 --act-quant per-token --weight-asymmetric --json '" +
                                  (dir / "p.json").string() + "'");
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  const auto rows = nlohmann::json::parse(read_text_file((dir / "s.json").string()))["rows"];
  ASSERT_EQ(rows.size(), 2u);
  const auto ppl = nlohmann::json::parse(read_text_file((dir / "p.json").string()));
  EXPECT_EQ(rows[1]["perplexity"].get<double>(), ppl["perplexity"].get<double>()) << rows[1] << ppl;
}

TEST(Sweep, GridAndFlagConflictIsAClearError) {
  CQ_NEED_SHARED("models/tinyopt");
  const auto model = test::shared_dir() / "models/tinyopt";
  const auto result = test::run_cq("sweep --model '" + model.string() + "' --text /dev/null --grid 'scheme=w8a8' --scheme w4a4");
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("--scheme is also set by --grid"), std::string::npos) << result.output;
  const auto bad = test::run_cq("sweep --model '" + model.string() + "' --text /dev/null --grid 'scheme=w8a8;colour=red'");
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("unknown key 'colour'"), std::string::npos) << bad.output;
}

// A quantized checkpoint has its setting already: a grid over it would label that setting FP32.
TEST(Sweep, QuantizedCheckpointIsRefused) {
  CQ_NEED_SHARED("models/tinyopt");
  const auto out = test::scratch_dir("sweep-quantized") / "w8a8";
  std::filesystem::remove_all(out);
  const auto model = test::shared_dir() / "models/tinyopt";
  const auto quantized = test::run_cq("quantize --model '" + model.string() + "' --scheme w8a8 --out '" + out.string() + "'");
  ASSERT_EQ(quantized.exit_code, 0) << quantized.output;
  const auto result = test::run_cq("sweep --model '" + out.string() + "' --text /dev/null --grid 'scheme=w4a4'");
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("is already quantized"), std::string::npos) << result.output;
}

}  // namespace
namespace {
TEST(SweepGrid, RotateKeyMultipliesTheRowsAfterScheme) {
  const SweepGrid grid = parse_sweep_grid("scheme=w4a4;rotate=none,hadamard;act=per-token,crossquant");
  const std::vector<SweepPoint> points = expand_sweep_grid(grid);
  ASSERT_EQ(points.size(), 4u);
  EXPECT_EQ(points[0].rotation, "none");
  EXPECT_EQ(points[2].rotation, "hadamard");
  EXPECT_EQ(points[3].activation, "crossquant");
  EXPECT_THROW(parse_sweep_grid("scheme=w4a4;rotate=qr"), Error);
  EXPECT_EQ(sweep_method_label("rtn", "per-token", 0, "hadamard"), "Hadamard + per-token");
  // One order everywhere (table, progress line = describe(), bars): weights, rotation, activations.
  EXPECT_EQ(sweep_method_label("gptq", "per-token", 0, "hadamard"), "GPTQ + Hadamard + per-token");
  EXPECT_EQ(sweep_bar_label("gptq", "crossquant", "hadamard"), "GPTQ + Hadamard + CrossQuant");
  EXPECT_EQ(sweep_bar_label("rtn", "", "hadamard"), "RTN + Hadamard");
  QuantConfig gptq_rotated;
  gptq_rotated.apply_scheme("w4a4");
  gptq_rotated.method = "gptq";
  gptq_rotated.rotation = "hadamard";
  EXPECT_EQ(gptq_rotated.describe().rfind("GPTQ + Hadamard + W4", 0), 0u) << gptq_rotated.describe();
  SweepRow rotated;
  rotated.rotation = "hadamard";
  EXPECT_NE(render_sweep_csv({SweepRow{}, rotated}).find(",rotation\n"), std::string::npos);
  EXPECT_EQ(render_sweep_csv({SweepRow{}}).find("rotation"), std::string::npos);  // older tables unchanged
}
}  // namespace

}  // namespace cq
