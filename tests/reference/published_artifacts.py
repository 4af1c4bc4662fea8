"""Writes published calibration results as their authors' tools save them (torch.save), and the
perplexity of a plain-PyTorch application of them, for tests/unit/test_published_artifacts.cpp.
Never committed: the tests run this at test time into the build tree.

    /usr/bin/python3 published_artifacts.py OUT_DIR --calib TEXT --eval TEXT MODEL_DIR...

Per MODEL_DIR (config.json + model.safetensors, read by hf_checkpoint.py), OUT_DIR/<model>/:

  act_scales.pt      SmoothQuant's act_scales as mit-han-lab/smoothquant's get_act_scales
                     computes them: for every nn.Linear of the model (lm_head included), the
                     max over every calibration token of |x| per input channel, float32, in a
                     plain dict keyed by the module's name. The calibration windows are cq's:
                     [BOS] + sentencepiece ids of TEXT, non-overlapping windows of
                     --calib-seqlen from the start, the first --calib-samples of them.
  awq_results.pt     llm-awq's run_awq dump, {"scale": [(prev op, (linears...), scales)],
                     "clip": [(linear, max_val)]}, with plausible values: per scale group (the
                     groups of llm-awq's auto_scale_block for OPT / LLaMA) s = mean|x|^0.5
                     clamped at 1e-4 and divided by sqrt(max·min) (AWQ's formula at ratio 0.5),
                     stored in float16 as llm-awq's fp16 models give them; clips for every
                     linear but q/k (llm-awq's rule), computed on the scaled weights: per
                     output channel and group (128 input channels, or the largest divisor of the
                     width up to 128), absmax·(1 − ((k + g) mod 10)/20), shape [out, groups, 1].
  awq_results_act.pt the same, with the MLP's last group scaled from the activation module
                     (OPT "activation_fn", LLaMA "mlp.act_fn": llm-awq's ScaledActivation
                     case, as for BLOOM / MPT / Falcon) instead of fc1 / up_proj.
  awq_applied/       a model directory (the source's config and tokenizer files, and a
                     pytorch_model.bin) holding the weights after this script's apply_awq of
                     awq_results.pt, unquantized: the same float32 divisions, products and
                     clamps as any exact application, so cq's --awq-results must give exactly
                     the numbers cq gives for this model with the same quantization flags.
  bad/*.pt           (first model only) broken files, and malicious.pt, whose pickle would run
                     os.system to create pwned beside OUT_DIR.

Then prints one JSON line per (file, setting): {"model", "file", "setting", "ppl"}: the file
applied to the model in plain PyTorch exactly as llm-awq's apply_awq does (apply_scale:
scale_ln_fcs, scale_fc_fc on the last len(s) rows of the previous linear, ScaledActivation =
the activation's output divided by s with the next linear's columns times s; then apply_clip),
then weights quantized (w4a8_g128_asym: AWQ's asymmetric pseudo_quantize_tensor in groups of
128, the last group the remainder as SPEC.md says; w8a8: per-channel symmetric) and the input
of every decoder linear quantized per token (or CrossQuant α=0.15) to 8 bits, perplexity on
--eval at --eval-seqlen, first --eval-windows windows (hf_reference.perplexity).
"""
import argparse
import collections
import json
import os
import shutil
import sys

import sentencepiece as spm
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baselines_reference import Blocks, calibration_inputs, pseudo_quantize_asym  # noqa: E402
from hf_reference import QuantSpec, ReferenceModel, perplexity, quantize_weight, window_tokens  # noqa: E402


def tokens_of(model_dir, path):
    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
    return [1] + sp.encode(open(path, encoding="utf-8").read())


def act_scales(model, windows):
    blocks = Blocks(model)
    per_layer = calibration_inputs(blocks, windows)
    scales = collections.OrderedDict()
    for _, feats in per_layer:
        for name, x in feats.items():
            scales[name] = x.abs().amax(dim=0).float()
    # lm_head's input: the last block's output through the final norm (project_out: none here).
    h = blocks.embed(windows)
    for i in range(model.n_layers):
        h = blocks.block(i, h)
    final = model.prefix + (".final_layer_norm" if blocks.opt else ".norm")
    scales["lm_head"] = blocks.norm(h, final).reshape(-1, h.shape[-1]).abs().amax(dim=0).float()
    return scales


def activation_name(blocks, i):
    return blocks.prefix(i) + ("activation_fn" if blocks.opt else "mlp.act_fn")


def awq_like_results(model, windows, via_activation):
    """Plausible llm-awq results (see the module docstring); the model is left as it was."""
    blocks = Blocks(model)
    saved = (dict(model.weights), dict(model.biases), dict(model.state), dict(model.activation_scales))
    scale_list, clip_list = [], []
    for i, (_, feats) in enumerate(calibration_inputs(blocks, windows)):
        groups = blocks.groups(i)
        for n, (prev, _, linears, _) in enumerate(groups):
            x = feats[linears[0]]
            s = x.abs().mean(dim=0).pow(0.5).clamp(min=1e-4)
            s = (s / (s.max() * s.min()).sqrt()).half()
            if via_activation and n == len(groups) - 1:
                prev = activation_name(blocks, i)
            scale_list.append((prev, tuple(linears), s))
        apply_scale(model, blocks, scale_list[-len(groups):])
        for name in feats:
            if name.endswith(("q_proj", "k_proj")):
                continue
            w = model.weights[name]
            out, width = w.shape
            group = max(d for d in range(1, min(128, width) + 1) if width % d == 0)
            absmax = w.abs().reshape(out, width // group, group).amax(dim=-1)
            k = torch.arange(out)[:, None]
            g = torch.arange(width // group)[None, :]
            clip_list.append((name, (absmax * (1 - ((k + g) % 10) / 20)).unsqueeze(-1).half()))
    model.weights, model.biases, model.state, model.activation_scales = saved
    return {"scale": scale_list, "clip": clip_list}


def apply_scale(model, blocks, scale_list):
    """llm-awq's apply_scale on the reference model's tensors."""
    st = model.state
    for prev, linears, s in scale_list:
        s = s.float()
        if prev.endswith(("layer_norm", "layernorm")):  # scale_ln_fcs
            st[prev + ".weight"] = st[prev + ".weight"] / s
            if st.get(prev + ".bias") is not None:
                st[prev + ".bias"] = st[prev + ".bias"] / s
        elif prev in model.weights:  # scale_fc_fc: weight[-len(s):] /= s, bias /= s
            w = model.weights[prev].clone()
            w[-s.numel():] = w[-s.numel():] / s.view(-1, 1)
            model.weights[prev] = w
            if model.biases[prev] is not None:
                model.biases[prev] = model.biases[prev] / s
        else:  # ScaledActivation: the activation's output divided by s, i.e. the next linear's input
            assert len(linears) == 1
            model.activation_scales[linears[0]] = s
        for name in linears:
            model.weights[name] = model.weights[name] * s.view(1, -1)


def apply_clip(model, clip_list):
    for name, max_val in clip_list:
        max_val = max_val.float()
        w = model.weights[name]
        shaped = w.reshape(*max_val.shape[:2], -1)
        model.weights[name] = torch.max(torch.min(shaped, max_val), -max_val).reshape(w.shape)


class ActivationScaledModel(ReferenceModel):
    """ReferenceModel whose linears may see their input divided by s (llm-awq's ScaledActivation
    on the activation that feeds them: (act(gate)/s)·up = (act(gate)·up)/s)."""

    def linear(self, name, x):
        s = self.activation_scales.get(name)
        return super().linear(name, x if s is None else x / s)


def fresh_model(model_dir):
    m = ActivationScaledModel.from_dir(model_dir, torch.float32)
    m.activation_scales = {}
    return m


SETTINGS = {
    "w4a8_g128_asym_per_token": (lambda w: pseudo_quantize_asym(w, 4, 128), "per_token"),
    "w4a8_g128_asym_crossquant": (lambda w: pseudo_quantize_asym(w, 4, 128), "crossquant"),
    "w8a8_per_token": (lambda w: quantize_weight(w, 8), "per_token"),
}


SIDE_FILES = ["config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
              "special_tokens_map.json", "generation_config.json"]


def applied_model(model_dir, results):
    m = fresh_model(model_dir)
    apply_scale(m, Blocks(m), results["scale"])
    apply_clip(m, results["clip"])
    return m


def write_applied(model_dir, results, out):
    """The transformed model as a checkpoint (no ScaledActivation entries: those are no weights)."""
    m = applied_model(model_dir, results)
    assert not m.activation_scales
    state = dict(m.state)
    for name, w in m.weights.items():
        state[name + ".weight"] = w.contiguous()
        if m.biases[name] is not None:
            state[name + ".bias"] = m.biases[name].contiguous()
    os.makedirs(out)
    for f in SIDE_FILES:
        if os.path.exists(os.path.join(model_dir, f)):
            shutil.copy(os.path.join(model_dir, f), out)
    torch.save(collections.OrderedDict(sorted(state.items())), os.path.join(out, "pytorch_model.bin"))


def evaluate(model_dir, results, eval_tokens, args, setting):
    m = applied_model(model_dir, results)
    weight_fn, activations = SETTINGS[setting]
    for name in list(m.weights):
        m.weights[name] = weight_fn(m.weights[name])
    m.quant = QuantSpec(a_bits=8, a_method=activations, alpha=0.15)
    return perplexity(m, eval_tokens, args.eval_seqlen, max_windows=args.eval_windows)["ppl"]


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + self.marker,))


def bad_files(out_root, out, scales, results):
    bad = os.path.join(out, "bad")
    os.makedirs(bad)
    save = lambda name, obj: torch.save(obj, os.path.join(bad, name))
    first = next(iter(scales))
    save("sq_wrong_names.pt", {k.replace("model.", "", 1): v for k, v in scales.items()})
    save("sq_wrong_shape.pt", {k: (v[:-1] if k == first else v) for k, v in scales.items()})
    last_mlp = [k for k in scales if k.endswith(("fc1", "gate_proj"))][-1]
    save("sq_missing.pt", {k: v for k, v in scales.items() if k != last_mlp})
    save("sq_not_dict.pt", list(scales.values()))
    nan = dict(scales)
    nan[first] = nan[first].clone()
    nan[first][3] = float("nan")
    save("sq_nan.pt", nan)
    sc, cl = results["scale"], results["clip"]
    save("awq_wrong_names.pt", {"scale": [(p.replace("model.", "", 1), l, s) for p, l, s in sc], "clip": cl})
    save("awq_wrong_shape.pt", {"scale": [sc[0][:2] + (sc[0][2][:-1],)] + sc[1:], "clip": cl})
    save("awq_structure.pt", {"scale": [sc[0][:2]] + sc[1:], "clip": cl})
    save("awq_not_list.pt", {"scale": tuple(sc), "clip": cl})
    save("awq_clip_shape.pt", {"scale": sc, "clip": [(cl[0][0], cl[0][1][:-1])] + cl[1:]})
    save("awq_partial_norm.pt", {"scale": [(sc[0][0], sc[0][1][:2], sc[0][2])] + sc[1:], "clip": cl})
    q_name = sc[0][1][0]
    save("awq_wrong_pair.pt", {"scale": [(q_name, (sc[1][1][0],), sc[1][2])] + sc[2:], "clip": cl})
    zero = sc[0][2].clone()
    zero[5] = 0
    save("awq_zero_scale.pt", {"scale": [sc[0][:2] + (zero,)] + sc[1:], "clip": cl})
    save("awq_no_clip_key.pt", {"scale": sc})
    # The marker lies beside OUT_DIR (OUT_DIR itself is renamed by the test once written).
    save("malicious.pt", {"scale": [Evil(os.path.join(os.path.dirname(os.path.abspath(out_root)), "pwned"))], "clip": []})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--calib", required=True)
    ap.add_argument("--calib-samples", type=int, default=4)
    ap.add_argument("--calib-seqlen", type=int, default=128)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--eval-seqlen", type=int, default=128)
    ap.add_argument("--eval-windows", type=int, default=16)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for n, model_dir in enumerate(args.models):
        name = os.path.basename(os.path.normpath(model_dir))
        out = os.path.join(args.out, name)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        model = fresh_model(model_dir)
        windows = window_tokens(tokens_of(model_dir, args.calib), args.calib_seqlen)[: args.calib_samples]
        scales = act_scales(model, windows)
        torch.save(dict(scales), os.path.join(out, "act_scales.pt"))
        eval_tokens = tokens_of(model_dir, args.eval)
        for file, via_activation in (("awq_results.pt", False), ("awq_results_act.pt", True)):
            results = awq_like_results(model, windows, via_activation)
            torch.save(results, os.path.join(out, file))
            if not via_activation:
                write_applied(model_dir, results, os.path.join(out, "awq_applied"))
            if n == 0 and not via_activation:
                bad_files(args.out, out, scales, results)
            # ScaledActivation keeps fc1 / up_proj unscaled; cq folds 1/s into their rows, the same
            # function in real arithmetic. Weights clipped to exactly ±max_val sit on rounding ties of
            # an asymmetric grid ((max − min)/15 with max = −min = max_val), which float noise then
            # breaks either way: compare that variant on W8 per-channel symmetric grids (no ties).
            settings = SETTINGS if not via_activation else ["w8a8_per_token"]
            for setting in settings:
                ppl = evaluate(model_dir, results, eval_tokens, args, setting)
                print(json.dumps({"model": name, "file": file, "setting": setting, "ppl": ppl}), flush=True)


if __name__ == "__main__":
    main()
