#pragma once
// Options shared by every command that runs a model: the quantization flags and --json.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "quant/flag_effects.h"
#include "quant/quant_config.h"

namespace cq {
class Tokenizer;
}

namespace cq::cli {

struct QuantOptions {
  QuantConfig config;
  std::string scheme;
  std::string calib;  // calibration text (SmoothQuant, AWQ, static activation scales)
  bool static_activations = false;
  const CLI::App* command = nullptr;  // where the flags were registered (add_quant_options)
  // The flags as a QuantRequest, resolved by the library (quant/resolve_config.h): explicit
  // flags win over --scheme, which wins over --method's defaults; with check_effects, a
  // given flag that changes nothing is an error (quant/flag_effects.h).
  QuantConfig resolve(bool check_effects = true) const;
  // The quantization flags given on the command line.
  GivenFlags given_flags() const;
  // Token ids of the --calib text (empty when none was given).
  std::vector<int32_t> calibration_tokens(const Tokenizer& tokenizer) const;
};

// The help section of the quantization flags (cq sweep lists the flags given through it).
inline constexpr const char* kQuantizationGroup = "Quantization";
void add_quant_options(CLI::App& command, QuantOptions& options);
// --epochs, --lr-lwc, --lr-let (OmniQuant's calibration), shared with cq omniquant-calibrate.
void add_omniquant_training_options(CLI::App& command, QuantConfig& config);

// Commands that run several configurations (cq sweep, cq eval --compare) resolve each one as
// a command line: the quantization flags the user gave (given_quant_arguments, without those
// the configurations set) followed by the configuration's own flags. --calib is kept only
// where every row has a use for it: a calibrating --method (smoothquant, awq) or
// --static-activations (alone, it would make per-token rows an error). Errors start with `where`.
std::vector<std::string> given_quant_arguments(CLI::App& command, const std::vector<std::string>& skipped);
// The flags given are not checked for effect here: the command checks them across all its
// configurations (require_flags_take_effect_somewhere).
QuantConfig resolve_configuration(std::vector<std::string> arguments, const std::string& where);

// Validator for counts (--seqlen, --max-windows, -n, --limit, ...): an integer >= 1.
const CLI::Validator& positive_count();

// Writes `text` to `path` atomically (temporary file, then rename), or to stdout for "-".
void write_output(const std::string& path, const std::string& text);

}  // namespace cq::cli
