#pragma once
// The quantization flags of `cq` as Python keyword arguments: `scheme="w8a8"`,
// `act_quant="per-token"`, `alpha=0.3`, `weight_asymmetric=True`, ... (a flag's name without
// "--", '-' written '_'). They are turned back into the command line and parsed by the CLI's
// own add_quant_options and resolved by resolve_quant_config, so names, defaults, validation
// and error messages are those of `cq`.
#include <pybind11/pybind11.h>

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "cli/options.h"

namespace cq::python {

struct QuantArguments {
  CLI::App parser{"quantization keyword arguments"};
  cli::QuantOptions options;  // options.command points into parser
};

// Parses the keyword arguments (None: not given; a flag takes True, False being its default).
// `engine` is the command's default --engine ("fake" for measuring, "auto" for generation).
// Throws cq::Error with cq's message, or for a keyword that is no quantization flag.
std::unique_ptr<QuantArguments> parse_quant_arguments(const pybind11::kwargs& keywords, const std::string& where,
                                                      const std::string& engine = "fake");

// The names accepted, for docstrings: "scheme, wbits, abits, ...".
std::string quant_keyword_names();

}  // namespace cq::python
