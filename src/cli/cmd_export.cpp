// `cq export`: a model quantized with cq's flags, written in a format another runtime serves
// (compressed-tensors for vLLM; docs/EXPORT.md says which settings export and how faithfully).
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/output_paths.h"
#include "cli/run_options.h"
#include "model/transformer.h"
#include "ptq/compressed_tensors.h"
#include "ptq/quantized_checkpoint.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace cq::cli {

void add_export_command(CLI::App& app) {
  struct Options {
    std::string model, out, format;
    QuantOptions quant;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("export", "quantize a model and write it in a format vLLM serves (compressed-tensors W8A8 or W4A16)");
  command->add_option("--model", options->model, "Hugging Face model directory (unquantized)")->required();
  command->add_option("--format", options->format, "output format")->required()->check(CLI::IsMember({"compressed-tensors"}));
  command->add_option("--out", options->out, "output directory (model.safetensors, config.json with quantization_config, tokenizer)")
      ->required();
  add_quant_options(*command, options->quant);
  add_run_options(*command);
  command->callback([options] {
    const QuantConfig quant = options->quant.resolve();
    // A quantized checkpoint first (the flags would describe a second quantization): export
    // quantizes from the source model, exactly as cq quantize did, with the same flags.
    Transformer model = load_model(options->model);
    if (const StoredQuantization* stored = stored_quantization(model))
      fail("--model {}: is already quantized ({}); export from the unquantized model with the same flags", options->model,
           stored->config.describe());
    if (const std::string refusal = compressed_tensors_refusal(quant); !refusal.empty())
      fail("cq export --format compressed-tensors: {} ({})", refusal, quant.describe());
    check_output_directory("--out", options->out);
    const auto tokenizer = load_tokenizer(options->model);
    export_compressed_tensors(model, quant, options->quant.calibration_tokens(*tokenizer), options->out);
    fmt::print("wrote {} (compressed-tensors {}, from {})\n", options->out,
               exports_pack_quantized(quant) ? "pack-quantized W4A16" : "int-quantized W8A8", quant.describe());
  });
}

}  // namespace cq::cli
