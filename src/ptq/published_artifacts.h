#pragma once
// Published calibration results, read from the .pt files their authors' tools write with
// torch.save (zip + pickle, read by io/torch_checkpoint's restricted unpickler: nothing is
// imported or run), and used instead of calibrating:
//
//  * SmoothQuant's act_scales (mit-han-lab/smoothquant, generate_act_scales.py): a dict
//    {module name -> 1-D tensor, max |x| per input channel of that nn.Linear}. As the
//    authors' smooth_lm does, the attention norm takes the scales of q_proj (the first linear
//    reading it: qkv_proj when fused) and the MLP norm those of fc1 / gate_proj
//    (gate_up_proj); SmoothQuant's s is then computed from them and the weights as usual.
//  * llm-awq's search results (run_awq, dumped by --dump_awq): a dict
//    {"scale": [(prev op name, (linear names...), scales), ...], "clip": [(linear name, max_val), ...]},
//    applied as apply_awq does: every scale first (a norm: divided, its readers' columns
//    multiplied; a linear: the last len(s) rows and the bias divided, the next linear's
//    columns multiplied; an activation: ReLU's input rows or a gated MLP's up rows divided,
//    which is what llm-awq's ScaledActivation computes), then every clip (weights clamped to
//    ±max_val per output channel and group of in/n_groups columns).
//
// Names are the Hugging Face module names of the whole model ("model.decoder.layers.0.fc1").
// A name the model does not have, a missing one, a wrong shape or structure, and a value that
// is negative, zero where it divides, NaN or Inf are errors naming the file and what is wrong.
#include <filesystem>

#include "model/transformer.h"
#include "ptq/awq.h"
#include "ptq/calibration.h"

namespace cq {

// The act_scales as calibration statistics: column_absmax of the AttentionIn and MlpIn sites
// of every layer (the others empty), windows = 0. Checks every entry of the file.
CalibrationStats read_smoothquant_scales(const Transformer& model, const std::filesystem::path& file);

// Checks the whole file, then folds its scales and clamps its clips into the model (not
// quantized yet). The records carry the file's scales and clips (ratio and loss: NaN).
AwqResult apply_awq_results(Transformer& model, const std::filesystem::path& file);

}  // namespace cq
