// `cq quantize`: runs a quantization method (CrossQuant / RTN, SmoothQuant, AWQ) on a model
// and writes a self-describing quantized checkpoint that every `cq` command loads directly.
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/output_paths.h"
#include "cli/run_options.h"
#include "ptq/apply_quantization.h"
#include "model/transformer.h"
#include "ptq/quantized_checkpoint.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace cq::cli {

void add_quantize_command(CLI::App& app) {
  struct Options {
    std::string model, out;
    QuantOptions quant;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("quantize", "quantize a model (--method crossquant|rtn|smoothquant|awq|gptq|omniquant) and save it");
  command->add_option("--model", options->model, "Hugging Face model directory")->required();
  command->add_option("--out", options->out, "output directory (model.safetensors, config.json with quantization_config)")->required();
  add_quant_options(*command, options->quant);
  add_run_options(*command);
  command->callback([options] {
    const QuantConfig quant = options->quant.resolve();
    check_output_directory("--out", options->out);
    if (quant.engine != "fake")
      fail("cq quantize: --engine is chosen when the checkpoint runs (cq ppl/generate/kernel --engine int), not stored");
    Transformer model = load_model(options->model);
    if (stored_quantization(model)) fail("{} is already a quantized checkpoint", options->model);
    const auto tokenizer = load_tokenizer(options->model);
    const std::vector<int32_t> calibration = options->quant.calibration_tokens(*tokenizer);
    const QuantizationRecord record = apply_transformation(model, quant, calibration);
    const auto static_absmax = calibrate_static_activations(model, quant, calibration);
    write_quantized_checkpoint(model, quant, record, static_absmax, options->out);
    fmt::print("wrote {} ({})\n", options->out, quant.describe());
  });
}

}  // namespace cq::cli
