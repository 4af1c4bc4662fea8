// `cq omniquant-calibrate`: OmniQuant's block-wise calibration (LWC and LET trained with AdamW
// on a calibration text, ptq/omniquant_calibration.h), saved in OmniQuant's own parameter
// format (omni_parameters.pth), which `--method omniquant --omni-params FILE` applies.
#include <fmt/format.h>

#include <cmath>
#include <regex>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/output_paths.h"
#include "cli/run_options.h"
#include "model/transformer.h"
#include "ptq/omniquant_calibration.h"
#include "ptq/quantized_checkpoint.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq::cli {

void add_omniquant_calibrate_command(CLI::App& app) {
  // The calibration is described by a QuantConfig, as `--method omniquant --calib` describes
  // it, so both paths reach calibrate_omniquant through omniquant_calibration_options.
  struct Options {
    std::string model, calib, out, scheme = "w4a4";
    QuantConfig config;
    double weight_decay = 0, alpha = 0.5;
  };
  auto options = std::make_shared<Options>();
  options->config.method = "omniquant";
  options->config.calib_seqlen = 0;  // 2048, at most the model's positions
  auto* command = app.add_subcommand(
      "omniquant-calibrate", "train OmniQuant's clipping (LWC) and equivalent transformation (LET) block by block; "
                             "write omni_parameters.pth");
  command->add_option("--model", options->model, "Hugging Face model directory (OPT or LLaMA-like)")->required();
  command->add_option("--calib", options->calib, "calibration text")->required();
  command->add_option("--scheme", options->scheme, "wWaA or wWaA-gG: weight / activation bits, weight group size (w4a4, w6a6, w4a16, w3a16-g128)")
      ->capture_default_str();
  command->add_option("--calib-samples", options->config.calib_samples, "calibration windows (non-overlapping, from the start of the text)")
      ->capture_default_str();
  command->add_option("--calib-seqlen", options->config.calib_seqlen, "tokens per window (default: 2048, at most the model's positions)");
  add_omniquant_training_options(*command, options->config);
  command->add_option("--weight-decay", options->weight_decay, "AdamW weight decay")->capture_default_str();
  command->add_option("--alpha", options->alpha, "LET's initial migration strength")->capture_default_str();
  command->add_option("--out", options->out, "output file (OmniQuant's omni_parameters.pth format)")->required();
  add_run_options(*command);
  command->callback([options] {
    std::smatch match;
    static const std::regex scheme_pattern("w([0-9]+)a([0-9]+)(?:-g([0-9]+))?");
    if (!std::regex_match(options->scheme, match, scheme_pattern))
      fail("--scheme {}: expected wWaA or wWaA-gG (w4a4, w6a6, w4a16, w3a16-g128)", options->scheme);
    const int wbits = std::stoi(match[1].str()), abits = std::stoi(match[2].str());
    const int64_t group = match[3].matched ? std::stoll(match[3].str()) : 0;
    if (wbits < 2 || wbits > 16 || abits < 2 || abits > 16 || (match[3].matched && group < 1))
      fail("--scheme {}: bits must be 2 to 16 (16: not quantized) and the group positive", options->scheme);
    if (wbits >= 16) fail("--scheme {}: OmniQuant calibration learns weight clipping; quantize the weights (w < 16)", options->scheme);
    QuantConfig& config = options->config;
    if (config.calib_samples < 1) fail("--calib-samples must be positive, got {}", config.calib_samples);
    if (config.calib_seqlen < 0) fail("--calib-seqlen must be positive, got {}", config.calib_seqlen);
    if (config.omni_epochs < 0) fail("--epochs must be zero or positive, got {}", config.omni_epochs);
    for (const auto& [flag, value] : {std::pair{"--lr-lwc", config.omni_lwc_lr}, {"--lr-let", config.omni_let_lr},
                                      {"--weight-decay", options->weight_decay}})
      if (!(value >= 0) || !std::isfinite(value)) fail("{} must be a finite non-negative number, got {}", flag, value);
    if (!(options->alpha >= 0 && options->alpha <= 1)) fail("--alpha must be in [0, 1], got {}", options->alpha);
    check_output_file("--out", options->out);
    Transformer model = load_model(options->model);
    if (stored_quantization(model)) fail("--model {}: is already quantized; calibrate the unquantized model", options->model);
    check_omniquant_calibration_supported(model.config());
    const int64_t positions = model.config().max_position_embeddings;
    if (config.calib_seqlen == 0) config.calib_seqlen = std::min<int64_t>(2048, positions > 0 ? positions : 2048);
    config.weight_bits = wbits;
    config.activation_bits = abits;
    config.weight_method = group > 0 ? "group" : "per-channel";
    if (group > 0) config.group_size = group;
    const auto tokenizer = load_tokenizer(options->model);
    const std::vector<int32_t> tokens = tokenizer->encode(read_text_file(options->calib), true);
    OmniQuantCalibrationOptions calibration = omniquant_calibration_options(config, model.config());
    calibration.weight_decay = options->weight_decay;
    calibration.alpha = options->alpha;
    const OmniQuantParameters parameters = calibrate_omniquant(model, tokens, calibration);
    save_omniquant_parameters(parameters, options->out);
    const OmniQuantSettings& s = calibration.settings;
    fmt::print("wrote {} (OmniQuant W{}A{}{}, {}{}, {} epochs on {} x {} tokens)\n", options->out, wbits, abits,
               group > 0 ? fmt::format("-g{}", group) : "", s.lwc ? "LWC" : "", s.let ? (s.shift ? " + LET (scales, shifts)" : " + LET (scales)") : "",
               config.omni_epochs, std::min<int64_t>(static_cast<int64_t>(tokens.size()) / config.calib_seqlen, config.calib_samples),
               config.calib_seqlen);
  });
}

}  // namespace cq::cli
