#pragma once
// The one table of quantization methods. Each row says what a method is: its name (the
// value of --weight-quant / --act-quant and of QuantizerSpec::method), what it quantizes,
// its factory, the options it reads, whether the integer engine runs it, and what a
// quantized checkpoint stores for it. The CLI help, validation, `cq sweep`, `cq eval
// --compare`, the integer engine and the checkpoint code read this table; a new quantizer
// is one new file (its factory) plus one row in method_table.cpp.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "quant/quantizer.h"

namespace cq {

// QuantizerSpec fields a method reads besides `bits` (any other non-default field is refused).
enum QuantOption : unsigned {
  kOptionAlpha = 1u << 0,              // alpha (CrossQuant α)
  kOptionGroupSize = 1u << 1,          // group_size
  kOptionAsymmetric = 1u << 2,         // asymmetric (zero points)
  kOptionKernelTarget = 1u << 3,       // kernel_target (remove-kernel)
  kOptionStaticColumnAbsmax = 1u << 4, // static_column_absmax (static CrossQuant)
};

// How the integer engine (ptq/integer_linear.h) runs a method.
enum class IntegerSupport {
  None,        // fake quantization only
  Exact,       // INT8/INT4 kernels compute the same model as the fake path
  StaticOnly,  // exact with calibrated (static) statistics; dynamic ones re-quantize per window
};

// What a quantized checkpoint stores for weights quantized with the method
// (quant/checkpoint_format.h); NotStorable for activation-only methods.
enum class WeightStorage {
  NotStorable,
  RowScales,                  // codes + F32 [out][1]
  GroupScales,                // codes + F32 [out][groups] (+ U8 zero points when asymmetric)
  RowScalesColumnFactors,     // codes + F32 [out][1] + F32 [in] column factors c_j^(1−α_W)
};

struct QuantMethod {
  std::string_view name;
  std::string_view summary;  // one line, for help and docs
  bool quantizes_weights = false;
  bool quantizes_activations = false;
  // Its statistics are those of each row alone (per-token): rows of different requests may
  // share a quantization window (cq eval's packed trees) without changing any number.
  bool row_local = false;
  // Its statistics may come from calibration instead of the current window (--calib makes
  // them static): CrossQuant's column maxima c_j, per-tensor's Δ.
  bool calibratable = false;
  std::unique_ptr<Quantizer> (*make)(const QuantizerSpec&) = nullptr;
  unsigned options = 0;  // QuantOption bits
  IntegerSupport integer_weights = IntegerSupport::None;
  IntegerSupport integer_activations = IntegerSupport::None;
  WeightStorage stored_weights = WeightStorage::NotStorable;

  bool reads(QuantOption option) const { return (options & option) != 0; }
};

std::span<const QuantMethod> quant_methods();
// The row named `name`, or nullptr.
const QuantMethod* find_quant_method(std::string_view name);
// The row named `name` that quantizes weights (or activations); throws cq::Error naming
// `flag` and the allowed values otherwise.
const QuantMethod& weight_quant_method(std::string_view name, std::string_view flag = "--weight-quant");
const QuantMethod& activation_quant_method(std::string_view name, std::string_view flag = "--act-quant");
// "per-channel | group | crossquant": the names for weights (or activations), in table order.
std::string weight_method_names(std::string_view separator = " | ");
std::string activation_method_names(std::string_view separator = " | ");
// "per-tensor or crossquant": the activation methods whose statistics --calib can make static.
std::string calibratable_method_names();
// "per-channel, group": the methods the integer engine runs, for &QuantMethod::integer_weights
// (or integer_activations).
std::string integer_method_names(IntegerSupport QuantMethod::*support);

}  // namespace cq
