#include "cli/options.h"

#include <algorithm>
#include <cstdio>

#include "quant/method_table.h"
#include "quant/resolve_config.h"
#include "tokenizer/tokenizer.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq::cli {

void add_quant_options(CLI::App& command, QuantOptions& o) {
  const size_t options_before = command.get_options().size();
  o.command = &command;
  CLI::App* group = &command;
  group->add_option("--scheme", o.scheme, "preset: " + scheme_names() + " (bit widths and weight granularity)");
  group->add_option("--wbits", o.config.weight_bits, "weight bits, 2..8 (16 = not quantized)");
  group->add_option("--abits", o.config.activation_bits, "activation bits, 2..8 (16 = not quantized)");
  group->add_option("--weight-quant", o.config.weight_method, weight_method_names());
  group->add_option("--group-size", o.config.group_size, "group size for --weight-quant group")->capture_default_str();
  group->add_flag("--weight-asymmetric", o.config.weight_asymmetric, "group-wise weights with zero points (AWQ's setting)");
  group->add_option("--weight-alpha", o.config.weight_alpha, "α_W for --weight-quant crossquant")->capture_default_str();
  group->add_option("--method", o.config.method,
                    weight_transformation_names() + ": weight transformation and default activations "
                    "(crossquant: CrossQuant activations; rtn, smoothquant, awq, gptq: per-token unless --act-quant)")
      ->capture_default_str();
  group->add_option("--act-quant", o.config.activation_method, activation_method_names() + " (default: by --method)");
  group->add_option("--alpha", o.config.alpha, "CrossQuant α for activations, in [0, 1]")->capture_default_str();
  group->add_option("--kernel-target", o.config.kernel_target,
                    "remove-kernel: share of elements to zero (default: the per-token kernel)");
  group->add_option("--migration-strength", o.config.migration_strength,
                    "SmoothQuant α in [0, 1] (default: 0.5 for OPT, 0.8 for LLaMA)");
  group->add_option("--awq-grid", o.config.awq_grid, "AWQ: grid points of the scale and clip searches")->capture_default_str();
  group->add_option("--awq-clip-tokens", o.config.awq_clip_tokens, "AWQ: calibration tokens sampled for the clip search")
      ->capture_default_str();
  // A callback flag: "!--awq-no-clip" bound to awq_clip would show its negated default ("{false}") in --help.
  group->add_flag_callback("--awq-no-clip", [&o] { o.config.awq_clip = false; }, "AWQ: skip the weight clipping search");
  group->add_option("--smoothquant-scales", o.config.smoothquant_scales,
                    "SmoothQuant: the authors' act_scales .pt (generate_act_scales.py) instead of calibrating on --calib");
  group->add_option("--awq-results", o.config.awq_results,
                    "AWQ: llm-awq's dumped search results .pt (--dump_awq: scales and clips) instead of searching on --calib");
  group->add_option("--gptq-damp", o.config.gptq_dampening, "GPTQ: dampening λ as a share of the mean diagonal of H")
      ->capture_default_str();
  group->add_flag("--act-order", o.config.gptq_act_order, "GPTQ: quantize columns in order of decreasing H_jj");
  group->add_option("--omni-params", o.config.omni_params,
                    "OmniQuant: its learned parameters (omni_parameters.pth) for --method omniquant");
  add_omniquant_training_options(*group, o.config);
  group->add_option("--calib", o.calib,
                    "calibration text: feeds --method smoothquant/awq/gptq/omniquant; with --method crossquant/rtn it makes the "
                    "activation scales static (CrossQuant c_j, per-tensor Δ)");
  group->add_flag("--static-activations", o.static_activations,
                  "static activation scales from --calib (CrossQuant c_j or per-tensor Δ), with any --method");
  group->add_flag("--quantize-bmm-input", o.config.quantize_attention_inputs,
                  "also quantize q, k, v (the inputs of the attention matrix products) with the activation quantizer");
  group->add_option("--calib-samples", o.config.calib_samples, "calibration windows")
      ->check(positive_count())
      ->capture_default_str();
  group->add_option("--calib-seqlen", o.config.calib_seqlen, "tokens per calibration window")
      ->check(positive_count())
      ->capture_default_str();
  group->add_option("--engine", o.config.engine,
                    "int | fake | auto: INT8/INT4 integer GEMMs (W8A8, W4A8, W4A8-g128, W4A4 with per-token, per-tensor "
                    "or CrossQuant activations; an error otherwise), FP32 on fake-quantized values, or int where it "
                    "computes the same model as fake (not dynamic CrossQuant)")
      ->check(CLI::IsMember({"int", "fake", "auto"}))
      ->capture_default_str();
  group->add_option("--rotate", o.config.rotation,
                    "none | hadamard: rotate the residual stream (randomized Hadamard), each attention head and "
                    "down_proj's input (online) before quantizing, as QuaRot (docs/QUANTIZERS.md)")
      ->check(CLI::IsMember({"none", "hadamard"}))
      ->capture_default_str();
  group->add_option("--rotate-seed", o.config.rotation_seed, "seed of the rotation's random signs")->capture_default_str();
  group->add_flag("--quantize-lm-head", o.config.quantize_lm_head,
                  "with --engine int: run lm_head as INT8 too (per-channel weights, per-token activations); off by "
                  "default, as the paper keeps lm_head in full precision");
  // A help section, not a CLI11 option group: CLI11 2.1 takes an option group (a nameless
  // subcommand) for an empty argument and then parses forever (`cq ppl "" --seqlen 5`, fuzz_cli).
  const std::vector<CLI::Option*> options = command.get_options();
  for (size_t i = options_before; i < options.size(); ++i) options[i]->group(kQuantizationGroup);
}

void add_omniquant_training_options(CLI::App& command, QuantConfig& config) {
  command.add_option("--epochs", config.omni_epochs,
                     "OmniQuant calibration (--method omniquant --calib): AdamW passes over the windows per block; 0 "
                     "keeps its initialisation")
      ->capture_default_str();
  command.add_option("--lr-lwc", config.omni_lwc_lr, "OmniQuant calibration: AdamW learning rate of the clipping factors (LWC)")
      ->capture_default_str();
  command.add_option("--lr-let", config.omni_let_lr,
                     "OmniQuant calibration: AdamW learning rate of the equivalent transformation's scales and shifts (LET)")
      ->capture_default_str();
}

std::vector<int32_t> QuantOptions::calibration_tokens(const Tokenizer& tokenizer) const {
  if (calib.empty()) return {};
  return tokenizer.encode(read_text_file(calib), true);
}

GivenFlags QuantOptions::given_flags() const {
  GivenFlags given;
  if (!command) return given;
  for (const CLI::Option* option : command->get_options([](const CLI::Option* o) { return o->get_group() == kQuantizationGroup; }))
    if (option->count()) given.insert("--" + option->get_single_name());
  return given;
}

const CLI::Validator& positive_count() {
  static const CLI::Validator validator(
      [](std::string& value) -> std::string {
        try {
          std::size_t used = 0;
          const long long count = std::stoll(value, &used);
          if (used == value.size() && count >= 1) return "";
        } catch (const std::exception&) {
        }
        return "must be a count >= 1 (got '" + value + "')";
      },
      "");
  return validator;
}

QuantConfig QuantOptions::resolve(bool check_effects) const {
  return resolve_quant_config(QuantRequest{config, scheme, calib, static_activations, given_flags()}, check_effects);
}

std::vector<std::string> given_quant_arguments(CLI::App& command, const std::vector<std::string>& skipped) {
  std::vector<std::string> arguments;
  for (CLI::Option* option : command.get_options([](CLI::Option* o) { return o->get_group() == kQuantizationGroup; })) {
    if (!option->count()) continue;
    const std::string name = "--" + option->get_single_name();
    if (std::find(skipped.begin(), skipped.end(), name) != skipped.end()) continue;
    // An on/off flag takes no value (CLI11 records "true" as its result, which must not be passed on).
    if (option->get_expected_max() == 0) {
      arguments.push_back(name);
      continue;
    }
    for (const std::string& value : option->results()) arguments.push_back(name), arguments.push_back(value);
  }
  return arguments;
}

QuantConfig resolve_configuration(std::vector<std::string> arguments, const std::string& where) {
  std::string method = QuantConfig{}.method;
  for (std::size_t i = 0; i + 1 < arguments.size(); ++i)
    if (arguments[i] == "--method") method = arguments[i + 1];
  const WeightTransformation* transformation = find_weight_transformation(method);
  // A published results file replaces the method's calibration (then --calib is only for static activations).
  const char* results_flag = method == "smoothquant" ? "--smoothquant-scales"
                             : method == "awq"       ? "--awq-results"
                             : method == "omniquant" ? "--omni-params"
                                                     : "";
  const bool calibrated = transformation != nullptr && transformation->needs_calibration &&
                          std::find(arguments.begin(), arguments.end(), results_flag) == arguments.end();
  const bool static_activations =
      std::find(arguments.begin(), arguments.end(), "--static-activations") != arguments.end();
  if (!calibrated && !static_activations)
    for (auto it = arguments.begin(); it != arguments.end();)
      it = *it == "--calib" && it + 1 != arguments.end() ? arguments.erase(it, it + 2) : it + 1;
  CLI::App parser{"configuration"};
  QuantOptions options;
  add_quant_options(parser, options);
  std::reverse(arguments.begin(), arguments.end());  // CLI11 parses a reversed vector
  try {
    parser.parse(arguments);
    return options.resolve(/*check_effects=*/false);
  } catch (const CLI::ParseError& e) {
    fail("{}: {}", where, e.what());
  } catch (const Error& e) {
    fail("{}: {}", where, e.what());
  }
}

void write_output(const std::string& path, const std::string& text) {
  if (path == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return;
  }
  write_file_atomically(path, text);
}

}  // namespace cq::cli
