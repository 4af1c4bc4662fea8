#include "cli/options.h"

#include <cstdio>

#include "tokenizer/tokenizer.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq::cli {

void add_quant_options(CLI::App& command, QuantOptions& o) {
  auto* group = command.add_option_group("Quantization");
  group->add_option("--scheme", o.scheme, "preset: w8a8 | w4a8 | w4a8-g128 | w4a4 | w16a16 (bit widths and weight granularity)");
  o.wbits = group->add_option("--wbits", o.config.weight_bits, "weight bits, 2..8 (16 = not quantized)");
  o.abits = group->add_option("--abits", o.config.activation_bits, "activation bits, 2..8 (16 = not quantized)");
  o.weight_quant = group->add_option("--weight-quant", o.config.weight_method, "per-channel | group | crossquant");
  group->add_option("--group-size", o.config.group_size, "group size for --weight-quant group")->capture_default_str();
  group->add_flag("--weight-asymmetric", o.config.weight_asymmetric, "group-wise weights with zero points (AWQ's setting)");
  group->add_option("--weight-alpha", o.config.weight_alpha, "α_W for --weight-quant crossquant")->capture_default_str();
  group->add_option("--act-quant", o.config.activation_method, "per-token | per-tensor | crossquant | remove-kernel")
      ->capture_default_str();
  group->add_option("--alpha", o.config.alpha, "CrossQuant α for activations, in [0, 1]")->capture_default_str();
  group->add_option("--kernel-target", o.config.kernel_target,
                    "remove-kernel: share of elements to zero (default: the per-token kernel)");
  group->add_option("--calib", o.calib, "calibration text: makes CrossQuant static (c_j from calibration, works for decoding)");
  group->add_option("--calib-samples", o.config.calib_samples, "calibration windows")->capture_default_str();
  group->add_option("--calib-seqlen", o.config.calib_seqlen, "tokens per calibration window")->capture_default_str();
}

std::vector<int32_t> QuantOptions::calibration_tokens(const Tokenizer& tokenizer) const {
  if (calib.empty()) return {};
  return tokenizer.encode(read_text_file(calib), true);
}

QuantConfig QuantOptions::resolve() const {
  QuantConfig resolved = config;
  if (!scheme.empty()) {
    resolved.apply_scheme(scheme);
    if (wbits->count()) resolved.weight_bits = config.weight_bits;
    if (abits->count()) resolved.activation_bits = config.activation_bits;
    if (weight_quant->count()) resolved.weight_method = config.weight_method;
    if (resolved.weight_method == "group" && config.group_size != 128) resolved.group_size = config.group_size;
  }
  if (!calib.empty()) {
    if (!resolved.quantizes_activations() || resolved.activation_method != "crossquant")
      fail("--calib is used by static CrossQuant only (--act-quant crossquant with --abits < 16)");
    resolved.static_columns = true;
    resolved.calib_source = calib;
  }
  resolved.validate();
  return resolved;
}

void write_output(const std::string& path, const std::string& text) {
  if (path == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return;
  }
  write_file_atomically(path, text);
}

}  // namespace cq::cli
