#pragma once
// From what a front end was given to the QuantConfig it runs: --scheme presets, the defaults
// each --method brings (the weight-transformation table), static activation scales from
// --calib, validation, and "a flag that would change nothing is an error". Library code, so
// the CLI, the benchmarks and any other front end resolve settings the same way.
#include <string>

#include "quant/flag_effects.h"
#include "quant/quant_config.h"

namespace cq {

struct QuantRequest {
  QuantConfig values;               // every setting, defaults where nothing was given
  std::string scheme;               // --scheme ("": none)
  std::string calib;                // --calib FILE ("": none)
  bool static_activations = false;  // --static-activations
  GivenFlags given;                 // the flags given, as the CLI spells them ("--wbits")
};

// Explicit settings win over the --scheme preset, which wins over the --method defaults.
// Throws cq::Error naming the flag for invalid or contradictory settings, and (with
// check_effects) for a given flag that changes nothing (quant/flag_effects.h).
QuantConfig resolve_quant_config(const QuantRequest& request, bool check_effects = true);

}  // namespace cq
