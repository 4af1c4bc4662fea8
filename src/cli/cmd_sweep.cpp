// `cq sweep`: perplexity and kernel proportion over a grid of settings (issue 5 item 6),
// each configuration applied exactly as `cq ppl` applies its flags. Grid syntax: docs/SWEEP.md.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <utility>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/output_paths.h"
#include "cli/run_options.h"
#include "ptq/apply_quantization.h"
#include "ptq/compressed_tensors.h"
#include "quant/checkpoint_format.h"
#include "ptq/quantized_checkpoint.h"
#include "eval/model_samples.h"
#include "eval/perplexity.h"
#include "eval/sweep_report.h"
#include "model/position_limit.h"
#include "model/transformer.h"
#include "ptq/kernel_report.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/parallel.h"
#include "util/text_file.h"

namespace cq::cli {

namespace {

QuantConfig resolve_point(const std::vector<std::string>& base_arguments, const SweepPoint& point) {
  std::vector<std::string> arguments = base_arguments;
  auto add = [&](const char* flag, const std::string& value) {
    arguments.push_back(flag);
    arguments.push_back(value);
  };
  add("--scheme", point.scheme);
  if (!point.method.empty()) add("--method", point.method);
  if (!point.activation.empty()) add("--act-quant", point.activation);
  if (point.has_alpha) add("--alpha", fmt::format("{}", point.alpha));
  if (!point.rotation.empty()) add("--rotate", point.rotation);
  const std::string where = fmt::format("sweep: scheme={}{}{}{}{}", point.scheme,
                                        point.rotation.empty() ? "" : " rotate=" + point.rotation,
                                        point.method.empty() ? "" : " method=" + point.method,
                                        point.activation.empty() ? "" : " act=" + point.activation,
                                        point.has_alpha ? fmt::format(" alpha={}", point.alpha) : "");
  return resolve_configuration(arguments, where);
}

// A grid cell's relative cost, to hand the largest cells out first over MPI ranks: every cell
// runs the same windows; calibration, and AWQ's search above all, add to it.
double cell_cost(const QuantConfig* config) {
  if (!config) return 1;
  double cost = config->quantizes_activations() ? 1.5 : 1;
  if (config->needs_calibration()) cost += 1;
  if (config->method == "awq") cost += 4;
  return cost;
}

// A row between ranks: text fields as JSON, numbers as their bits (exact).
std::string row_message(size_t cell, const SweepRow& row) {
  const auto bits = [](double value) { return std::bit_cast<uint64_t>(value); };
  return nlohmann::json{{"cell", cell}, {"setting", row.setting}, {"method", row.method}, {"scheme", row.scheme},
                        {"quant_method", row.quant_method}, {"activation", row.activation}, {"alpha", bits(row.alpha)},
                        {"perplexity", bits(row.perplexity)}, {"kernel_fraction", bits(row.kernel_fraction)},
                        {"windows", row.windows}, {"seconds", bits(row.seconds)}, {"description", row.description},
                        {"rotation", row.rotation}}
      .dump();
}

std::pair<size_t, SweepRow> row_from_message(const nlohmann::json& message) {
  const auto number = [&](const char* key) { return std::bit_cast<double>(message.at(key).get<uint64_t>()); };
  SweepRow row;
  row.setting = message.at("setting");
  row.method = message.at("method");
  row.scheme = message.at("scheme");
  row.quant_method = message.at("quant_method");
  row.activation = message.at("activation");
  row.alpha = number("alpha");
  row.perplexity = number("perplexity");
  row.kernel_fraction = number("kernel_fraction");
  row.windows = message.at("windows");
  row.seconds = number("seconds");
  row.description = message.at("description");
  row.rotation = message.at("rotation");
  return {message.at("cell").get<size_t>(), std::move(row)};
}

// One token source: --text (tokenized) or --sample-windows (sampled from the FP32 model,
// eval/model_samples.h), and no flag that the chosen source ignores.
void check_token_source(CLI::App& command, bool sampled) {
  const bool text = command.get_option("--text")->count() > 0;
  if (!text && !sampled)
    fail("sweep: give --text FILE, or --sample-windows N for tokens sampled from the model itself (models without a "
         "tokenizer)");
  if (text && sampled) fail("sweep: --text and --sample-windows are two token sources; give one");
  if (!sampled && command.get_option("--sample-seed")->count())
    fail("sweep: --sample-seed has no effect without --sample-windows");
  if (sampled && command.get_option("--max-windows")->count())
    fail("sweep: --max-windows has no effect with --sample-windows (which is the number of windows)");
  if (sampled && command.get_option("--calib")->count())
    fail("sweep: --calib has no effect with --sample-windows: calibrating cells calibrate on windows sampled from the "
         "FP32 model (--calib-samples x --calib-seqlen)");
}

struct SampledTokens {
  std::vector<int32_t> evaluation, calibration;
};

// The evaluation windows (--seqlen tokens each) and, when a cell calibrates, its calibration
// windows, sampled from the FP32 model before any cell runs (in an MPI job, by all ranks).
SampledTokens sample_sweep_tokens(const std::string& model_dir, int64_t seqlen_flag, int64_t windows, uint64_t seed,
                                  const std::vector<QuantConfig>& configs) {
  Transformer model = load_model(model_dir);
  check_position_limit(model.config(), model_dir, seqlen_flag, fmt::format("--seqlen {}", seqlen_flag));
  const int64_t seqlen = seqlen_flag > 0 ? seqlen_flag : std::min<int64_t>(2048, model.config().max_position_embeddings);
  if (seqlen < 2) fail("sweep: --seqlen {} with --sample-windows: a window needs two tokens to score one", seqlen);
  if (!quiet()) fmt::print(stderr, "sampling {} windows of {} tokens from the FP32 model (seed {})\n", windows, seqlen, seed);
  SampledTokens samples;
  samples.evaluation = sample_token_windows(model, windows, seqlen, seed, SampleStream::Evaluation);
  const auto calibrating = std::find_if(configs.begin(), configs.end(), [](const QuantConfig& c) { return c.needs_calibration(); });
  if (calibrating != configs.end()) {
    if (calibrating->calib_seqlen < 2)
      fail("sweep: --calib-seqlen {} with --sample-windows: a sampled window has two tokens or more",
           calibrating->calib_seqlen);
    check_position_limit(model.config(), model_dir, calibrating->calib_seqlen,
                         fmt::format("--calib-seqlen {}", calibrating->calib_seqlen));
    samples.calibration = sample_token_windows(model, calibrating->calib_samples, calibrating->calib_seqlen, seed,
                                               SampleStream::Calibration);
  }
  return samples;
}

}  // namespace

void add_sweep_command(CLI::App& app) {
  struct Options {
    std::string model, text, grid, json, csv, svg;
    int64_t seqlen = 0, max_windows = 0, batch = 1, sample_windows = 0;
    uint64_t sample_seed = 0;
    QuantOptions quant;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand(
      "sweep", "perplexity and kernel proportion over a grid of settings (table, CSV, JSON, SVG; docs/SWEEP.md)");
  command->add_option("--model", options->model, "Hugging Face model directory")->required();
  command->add_option("--text", options->text, "text file, tokenized once as a whole (or --sample-windows)");
  command->add_option("--sample-windows", options->sample_windows,
                      "instead of --text: this many windows of --seqlen tokens sampled from the FP32 model itself "
                      "(temperature 1; for models without a tokenizer; calibration is sampled too)")
      ->check(positive_count());
  command->add_option("--sample-seed", options->sample_seed, "seed of --sample-windows' tokens")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_option("--grid", options->grid,
                      "\"scheme=w8a8,w4a8-g128,w4a4;act=per-token,crossquant;alpha=0.15,0.45,0.75[;method=rtn,awq]\"")
      ->required();
  command->add_option("--seqlen", options->seqlen, "window length in tokens (default: min(2048, max positions))")
      ->check(positive_count());
  command->add_option("--max-windows", options->max_windows, "evaluate at most this many windows (default: all)")
      ->check(positive_count());
  command->add_option("--batch", options->batch, "windows per forward pass")->check(positive_count())->capture_default_str();
  command->add_option("--json", options->json, "write the rows as JSON to this file ('-' for stdout)");
  command->add_option("--csv", options->csv, "write the rows as CSV to this file ('-' for stdout)");
  command->add_option("--svg", options->svg, "plot perplexity and kernel proportion against α (SVG) to this file");
  add_quant_options(*command, options->quant);
  add_run_options(*command);
  command->callback([options, command] {
    const bool sampled = command->get_option("--sample-windows")->count() > 0;
    check_token_source(*command, sampled);
    // A grid of settings applies to full-precision weights; a quantized checkpoint has one
    // setting already (its first row would be labelled FP32 but run that setting).
    if (const auto stored = read_stored_quantization(options->model); stored != nullptr)
      fail("sweep: {} is already quantized ({}); sweep the unquantized model it came from, or run cq ppl/kernel on this one",
           options->model, stored->config.describe());
    if (is_compressed_tensors_directory(options->model))
      fail("sweep: {} is already quantized (compressed-tensors); sweep the unquantized model it came from", options->model);
    const SweepGrid grid = parse_sweep_grid(options->grid);
    // A grid key and its flag together would be ambiguous; a flag alone applies to every row.
    const std::pair<const char*, bool> keyed[] = {{"--scheme", true},
                                                  {"--act-quant", !grid.activations.empty()},
                                                  {"--alpha", !grid.alphas.empty()},
                                                  {"--method", !grid.methods.empty()},
                                                  {"--rotate", !grid.rotations.empty()}};
    std::vector<std::string> skipped;
    for (const auto& [flag, in_grid] : keyed) {
      if (in_grid && command->get_option(flag)->count())
        fail("sweep: {} is also set by --grid; give it in one place", flag);
      if (in_grid) skipped.push_back(flag);
    }
    std::vector<std::string> base_arguments = given_quant_arguments(*command, skipped);
    // Sampled tokens: the cells that calibrate get windows sampled from the FP32 model too (a
    // stream of their own); resolve_configuration drops this --calib from the cells that do not.
    if (sampled) {
      base_arguments.push_back("--calib");
      base_arguments.push_back(fmt::format("sampled from the FP32 model (seed {}, calibration stream)", options->sample_seed));
    }
    const std::vector<SweepPoint> points = expand_sweep_grid(grid);
    // Resolve every configuration before the first model run, so a bad combination fails fast.
    std::vector<QuantConfig> configs;
    for (const SweepPoint& point : points)
      configs.push_back(resolve_point(base_arguments, point));
    GivenFlags given = options->quant.given_flags();
    for (const std::string& flag : skipped) given.erase(flag);
    require_flags_take_effect_somewhere(given, configs);
    check_output_file("--json", options->json);
    check_output_file("--csv", options->csv);
    check_output_file("--svg", options->svg);

    std::vector<int32_t> tokens, calibration;
    if (sampled) {
      SampledTokens samples = sample_sweep_tokens(options->model, options->seqlen, options->sample_windows,
                                                  options->sample_seed, configs);
      tokens = std::move(samples.evaluation);
      calibration = std::move(samples.calibration);
    } else {
      const auto tokenizer = load_tokenizer(options->model);
      tokens = tokenizer->encode(read_text_file(options->text), true);
      calibration = options->quant.calibration_tokens(*tokenizer);
    }
    PerplexityOptions ppl_options;
    ppl_options.max_windows = options->max_windows;
    ppl_options.batch = options->batch;
    ppl_options.show_progress = false;

    std::vector<SweepRow> rows;
    const std::size_t total = points.size() + 1;
    bool first_run = true;
    auto run = [&](size_t cell, const QuantConfig* config, const SweepPoint* point) {
      const auto start = std::chrono::steady_clock::now();
      Transformer model = load_model(options->model);  // fresh weights for every configuration (mmap: cheap)
      if (first_run) check_position_limit(model.config(), options->model, options->seqlen, fmt::format("--seqlen {}", options->seqlen));
      if (std::exchange(first_run, false))  // as `cq ppl`: --seqlen, or min(2048, max positions)
        ppl_options.seqlen = options->seqlen > 0 ? options->seqlen
                                                 : std::min<int64_t>(2048, model.config().max_position_embeddings);
      SweepRow row;
      if (config) {
        apply_quantization(model, *config, calibration);
        row.scheme = point->scheme;
        row.setting = sweep_setting_label(point->scheme);
        row.quant_method = config->method;
        row.activation = config->quantizes_activations() ? config->activation_method : "";
        if (row.activation == "crossquant") row.alpha = config->alpha;
        if (config->rotation != "none") row.rotation = config->rotation;
        row.method = config->quantizes_activations()
                         ? sweep_method_label(config->method, config->activation_method, config->alpha, row.rotation)
                         : sweep_method_label(config->method, "A16", 0, row.rotation);
        row.description = config->describe();
      } else {
        row.setting = "FP32";
        row.method = "-";
        row.description = "FP32 (W16A16)";
      }
      const PerplexityResult result = evaluate_perplexity(model, tokens, ppl_options);
      row.perplexity = result.perplexity;
      row.windows = result.windows;
      if (config && config->quantizes_activations()) row.kernel_fraction = model.total_kernel_stats().kernel_fraction();
      row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (!quiet()) fmt::print(stderr, "[{}/{}] {} | ppl {:.4f}{} | {} windows x {} tokens | {:.1f} s\n", cell + 1, total,
                 row.description, row.perplexity,
                 row.kernel_fraction >= 0 ? fmt::format(" | kernel {:.3f} %", 100 * row.kernel_fraction) : "",
                 result.windows, ppl_options.seqlen, row.seconds);
      rows.push_back(std::move(row));
    };
    // Cell 0 is FP32, cell i + 1 the grid's point i. In an MPI job each rank runs whole cells
    // (largest first, parallel::owners_largest_first), alone, and the rows are gathered in
    // cell order: every number is what one process computes.
    std::vector<double> costs = {cell_cost(nullptr)};
    for (const QuantConfig& config : configs) costs.push_back(cell_cost(&config));
    const std::vector<int> owners = parallel::owners_largest_first(costs, parallel::ranks());
    std::vector<size_t> my_cells;
    const int my_rank = parallel::rank();
    {
      const parallel::SoloScope alone;  // rank() is 0 in here
      for (size_t cell = 0; cell < total; ++cell) {
        if (owners[cell] != my_rank) continue;
        run(cell, cell == 0 ? nullptr : &configs[cell - 1], cell == 0 ? nullptr : &points[cell - 1]);
        my_cells.push_back(cell);
      }
    }
    if (parallel::ranks() > 1) {
      std::string mine = "[";
      for (size_t i = 0; i < my_cells.size(); ++i) mine += (i ? "," : "") + row_message(my_cells[i], rows[i]);
      mine += "]";
      std::vector<SweepRow> all(total);
      for (const std::string& part : parallel::gather(mine))
        for (const auto& message : nlohmann::json::parse(part)) {
          auto [cell, row] = row_from_message(message);
          all.at(cell) = std::move(row);
        }
      rows = std::move(all);
    }

    fmt::print("{}", render_sweep_table(rows));
    if (!options->json.empty()) {
      nlohmann::json json = {{"model", options->model},
                             {"text", sampled ? nlohmann::json(nullptr) : nlohmann::json(options->text)},
                             {"grid", options->grid},
                             {"tokens", tokens.size()},
                             {"seqlen", ppl_options.seqlen},
                             {"max_windows", options->max_windows},
                             {"rows", sweep_json(rows)}};
      if (sampled) {  // only then: the JSON of a --text sweep keeps its keys
        json["sample_windows"] = options->sample_windows;
        json["sample_seed"] = options->sample_seed;
        json["calibration_tokens"] = calibration.size();
      }
      write_output(options->json, json.dump(2) + "\n");
    }
    if (!options->csv.empty()) write_output(options->csv, render_sweep_csv(rows));
    if (!options->svg.empty())
      write_output(options->svg, render_sweep_svg(rows, fmt::format("{} — seqlen {}", options->model, ppl_options.seqlen)));
  });
}

}  // namespace cq::cli
