// `cq omniquant-calibrate`: OmniQuant's block-wise calibration (LWC and LET trained with AdamW
// on a calibration text, ptq/omniquant_calibration.h), saved in OmniQuant's own parameter
// format (omni_parameters.pth), which `--method omniquant --omni-params FILE` applies.
#include <fmt/format.h>

#include <cmath>
#include <regex>

#include "cli/commands.h"
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
  struct Options {
    std::string model, calib, out, scheme = "w4a4";
    int64_t samples = 128, seqlen = 0, epochs = 20;
    double lwc_lr = 1e-2, let_lr = 5e-3, weight_decay = 0, alpha = 0.5;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand(
      "omniquant-calibrate", "train OmniQuant's clipping (LWC) and equivalent transformation (LET) block by block; "
                             "write omni_parameters.pth");
  command->add_option("--model", options->model, "Hugging Face model directory (OPT or LLaMA-like)")->required();
  command->add_option("--calib", options->calib, "calibration text")->required();
  command->add_option("--scheme", options->scheme, "wWaA or wWaA-gG: weight / activation bits, weight group size (w4a4, w6a6, w4a16, w3a16-g128)")
      ->capture_default_str();
  command->add_option("--calib-samples", options->samples, "calibration windows (non-overlapping, from the start of the text)")
      ->capture_default_str();
  command->add_option("--calib-seqlen", options->seqlen, "tokens per window (default: 2048, at most the model's positions)");
  command->add_option("--epochs", options->epochs, "passes over the windows per block; 0 writes the initialisation")
      ->capture_default_str();
  command->add_option("--lr-lwc", options->lwc_lr, "AdamW learning rate of the clipping factors")->capture_default_str();
  command->add_option("--lr-let", options->let_lr, "AdamW learning rate of the LET scales and shifts")->capture_default_str();
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
    if (options->samples < 1) fail("--calib-samples must be positive, got {}", options->samples);
    if (options->epochs < 0) fail("--epochs must be zero or positive, got {}", options->epochs);
    for (const auto& [flag, value] : {std::pair{"--lr-lwc", options->lwc_lr}, {"--lr-let", options->let_lr},
                                      {"--weight-decay", options->weight_decay}})
      if (!(value >= 0) || !std::isfinite(value)) fail("{} must be a finite non-negative number, got {}", flag, value);
    if (!(options->alpha >= 0 && options->alpha <= 1)) fail("--alpha must be in [0, 1], got {}", options->alpha);
    check_output_file("--out", options->out);
    Transformer model = load_model(options->model);
    if (stored_quantization(model)) fail("--model {}: is already quantized; calibrate the unquantized model", options->model);
    check_omniquant_calibration_supported(model.config());
    const int64_t positions = model.config().max_position_embeddings;
    const int64_t seqlen = options->seqlen > 0 ? options->seqlen : std::min<int64_t>(2048, positions > 0 ? positions : 2048);
    if (positions > 0 && seqlen > positions)
      fail("--calib-seqlen {} exceeds the model's {} positions", seqlen, positions);
    const auto tokenizer = load_tokenizer(options->model);
    const std::vector<int32_t> tokens = tokenizer->encode(read_text_file(options->calib), true);
    OmniQuantCalibrationOptions calibration;
    calibration.samples = options->samples;
    calibration.seqlen = seqlen;
    calibration.settings = omniquant_default_settings(model.config(), wbits, abits, group);
    calibration.epochs = options->epochs;
    calibration.lwc_lr = options->lwc_lr;
    calibration.let_lr = options->let_lr;
    calibration.weight_decay = options->weight_decay;
    calibration.alpha = options->alpha;
    calibration.show_progress = !quiet();
    if (!quiet())
      calibration.on_epoch = [](int64_t layer, int64_t epoch, double loss) {
        fmt::print(stderr, "omniquant: layer {} epoch {} loss {:.6g}\n", layer, epoch, loss);
      };
    const OmniQuantParameters parameters = calibrate_omniquant(model, tokens, calibration);
    save_omniquant_parameters(parameters, options->out);
    const OmniQuantSettings& s = calibration.settings;
    fmt::print("wrote {} (OmniQuant W{}A{}{}, {}{}, {} epochs on {} x {} tokens)\n", options->out, wbits, abits,
               group > 0 ? fmt::format("-g{}", group) : "", s.lwc ? "LWC" : "", s.let ? (s.shift ? " + LET (scales, shifts)" : " + LET (scales)") : "",
               options->epochs, std::min<int64_t>(static_cast<int64_t>(tokens.size()) / seqlen, options->samples), seqlen);
  });
}

}  // namespace cq::cli
