"""SmoothQuant and AWQ written from their authors' definitions, on the plain-PyTorch forward
pass of hf_reference.py (never from the C++ code). Writes tests/golden/baselines/<model>.json.

SmoothQuant (mit-han-lab/smoothquant, smooth.py `smooth_ln_fcs`): act_scales = per input
channel max|x| over the calibration tokens of the linears' input; weight_scales = max over
the output channels of every linear sharing that input, clamped at 1e-5;
s = (act^α / weight^(1−α)).clamp(min=1e-5); norm weight and bias /= s; weight columns *= s.

AWQ (mit-han-lab/llm-awq, auto_scale.py / auto_clip.py / quantizer.py): per block, inputs
from the unquantized block; groups (prev op, linears, module whose output is compared):
  OPT   (self_attn_layer_norm, q/k/v, self_attn), (v_proj, out_proj, out_proj),
        (final_layer_norm, fc1, fc1), (fc1, fc2, fc2)
  LLaMA (input_layernorm, q/k/v, self_attn), (v_proj, o_proj, o_proj) only if the shapes
        match, (post_attention_layernorm, gate/up, mlp), (up_proj, down_proj, down_proj)
x_max = mean|x| per channel; for ratio in i/20: s = x_max^ratio clamp(1e-4), s /= sqrt(max·min);
W <- Q(W·s)/s; loss = mean (out − out_orig)^2; each group searched against the original
weights; then scales applied (inputs divided by s for the clip search); clip search for every
linear but q/k: per output channel and group, max_val = absmax·(1 − i/20), i < 10, on every
(T // 512)-th token (step at least 1), err = mean over tokens of (x·Q(clamp(W)) − x·W)^2.
Q = pseudo_quantize_tensor, zero_point=True: scale = (max−min).clamp(1e-5)/(2^N−1),
zero = clamp(−round(min/scale), 0, 2^N−1), W' = (clamp(round(W/scale)+zero, 0, 2^N−1) − zero)·scale.
Groups of 128 input channels; where AWQ needs divisibility we follow SPEC.md: the last group
of a row is the shorter remainder (stories260k: I=64 → one group of 64; I=172 → 128 + 44).

Usage: /usr/bin/python3 tests/reference/baselines_reference.py [--shared /work/shared] [--models tinyopt,stories260k]
       [--only-new-settings]  (add the settings of new_settings() the files lack, keeping every existing entry)
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_reference import ReferenceModel, QuantSpec, perplexity, quantize_weight, window_tokens  # noqa: E402

CALIB_TEXT = "data/wikitext2/wikitext2_test_joined.prefix.txt"
EVAL_TEXT = "data/tinystories/TinyStories-valid.first100.txt"
CALIB_SAMPLES, CALIB_SEQLEN, EVAL_SEQLEN = 16, 256, 256


# ----------------------------------------------------------------------------- quantizers

def pseudo_quantize_asym(w, n_bit, group):
    """AWQ's pseudo_quantize_tensor (zero_point=True), groups along the last dim (remainder last)."""
    pieces = []
    max_int = 2 ** n_bit - 1
    for s in range(0, w.shape[-1], group):
        g = w[..., s:s + group]
        max_val = g.amax(dim=-1, keepdim=True)
        min_val = g.amin(dim=-1, keepdim=True)
        scales = (max_val - min_val).clamp(min=1e-5) / max_int
        zeros = (-torch.round(min_val / scales)).clamp_(0, max_int)
        pieces.append((torch.clamp(torch.round(g / scales) + zeros, 0, max_int) - zeros) * scales)
    return torch.cat(pieces, dim=-1)


# ----------------------------------------------------------------------------- model pieces

class Blocks:
    """Block-level access to a ReferenceModel (unquantized activations)."""

    def __init__(self, model):
        self.m = model
        self.opt = model.family == "opt"
        c = model.config
        if self.opt:
            self.lin = {k: f"self_attn.{k}" for k in ("q_proj", "k_proj", "v_proj", "out_proj")}
            self.lin.update(fc1="fc1", fc2="fc2")
        else:
            self.lin = {k: f"self_attn.{k}" for k in ("q_proj", "k_proj", "v_proj", "o_proj")}
            self.lin.update({k: f"mlp.{k}" for k in ("gate_proj", "up_proj", "down_proj")})

    def prefix(self, i):
        return f"{self.m.prefix}.layers.{i}." if self.opt else f"model.layers.{i}."

    def norm_names(self, i):
        p = self.prefix(i)
        return (p + "self_attn_layer_norm", p + "final_layer_norm") if self.opt else \
               (p + "input_layernorm", p + "post_attention_layernorm")

    def norm(self, x, name):
        m = self.m
        return m.layer_norm(x, name) if self.opt else m.rms_norm(x, m._get(name + ".weight"))

    def lin_(self, name, x, rec=None):
        if rec is not None:
            rec.setdefault(name, []).append(x.reshape(-1, x.shape[-1]))
        return F.linear(x, self.m.weights[name], self.m.biases[name])

    def attention(self, i, x, rec=None):
        """From the input of q/k/v to the output of o_proj (no residual)."""
        m, p = self.m, self.prefix(i)
        if self.opt:
            q = self.lin_(p + "self_attn.q_proj", x, rec) * m.head_dim ** -0.5
            k = self.lin_(p + "self_attn.k_proj", x, rec)
            v = self.lin_(p + "self_attn.v_proj", x, rec)
            a = m.causal_attention(m._split_heads(q, m.n_heads), m._split_heads(k, m.n_heads),
                                   m._split_heads(v, m.n_heads), None)
            return self.lin_(p + "self_attn.out_proj", m._merge_heads(a), rec)
        T = x.shape[1]
        positions = torch.arange(T, dtype=m.dtype)
        freqs = positions[:, None] * m.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        from hf_reference import rotate_half
        q = m._split_heads(self.lin_(p + "self_attn.q_proj", x, rec), m.n_heads)
        k = m._split_heads(self.lin_(p + "self_attn.k_proj", x, rec), m.n_kv)
        v = m._split_heads(self.lin_(p + "self_attn.v_proj", x, rec), m.n_kv)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        n_rep = m.n_heads // m.n_kv
        k = k.repeat_interleave(n_rep, dim=1)
        v = v.repeat_interleave(n_rep, dim=1)
        a = m.causal_attention(q, k, v, 1.0 / math.sqrt(m.head_dim))
        return self.lin_(p + "self_attn.o_proj", m._merge_heads(a), rec)

    def mlp(self, i, x, rec=None):
        p = self.prefix(i)
        if self.opt:
            return self.lin_(p + "fc2", self.m.act(self.lin_(p + "fc1", x, rec)), rec)
        g = self.lin_(p + "mlp.gate_proj", x, rec)
        u = self.lin_(p + "mlp.up_proj", x, rec)
        return self.lin_(p + "mlp.down_proj", F.silu(g) * u, rec)

    def block(self, i, h, rec=None):
        n1, n2 = self.norm_names(i)
        h = h + self.attention(i, self.norm(h, n1), rec)
        return h + self.mlp(i, self.norm(h, n2), rec)

    def embed(self, ids):
        m = self.m
        h = m.embed[ids]
        if self.opt:
            if m.project_in is not None:
                h = F.linear(h, m.project_in)
            h = h + m.pos_embed[torch.arange(ids.shape[1]) + 2][None]
        return h

    def groups(self, i):
        """(prev op, prev is a norm, linears, inspected module kind, input linear)."""
        p, (n1, n2) = self.prefix(i), self.norm_names(i)
        W = self.m.weights
        if self.opt:
            a = p + "self_attn."
            return [(n1, True, [a + "q_proj", a + "k_proj", a + "v_proj"], "attn"),
                    (a + "v_proj", False, [a + "out_proj"], "linear"),
                    (n2, True, [p + "fc1"], "linear"),
                    (p + "fc1", False, [p + "fc2"], "linear")]
        a, f = p + "self_attn.", p + "mlp."
        out = [(n1, True, [a + "q_proj", a + "k_proj", a + "v_proj"], "attn")]
        if W[a + "v_proj"].shape == W[a + "o_proj"].shape:
            out.append((a + "v_proj", False, [a + "o_proj"], "linear"))
        out += [(n2, True, [f + "gate_proj", f + "up_proj"], "mlp"),
                (f + "up_proj", False, [f + "down_proj"], "linear")]
        return out


def fold_norm(model, norm, linears, s):
    st = model.state
    st[norm + ".weight"] = st[norm + ".weight"] / s
    if st.get(norm + ".bias") is not None:
        st[norm + ".bias"] = st[norm + ".bias"] / s
    for n in linears:
        model.weights[n] = model.weights[n] * s.view(1, -1)


def fold_linear(model, prev, linears, s):
    model.weights[prev] = model.weights[prev] / s.view(-1, 1)
    if model.biases[prev] is not None:
        model.biases[prev] = model.biases[prev] / s
    for n in linears:
        model.weights[n] = model.weights[n] * s.view(1, -1)


def calibration_inputs(blocks, windows):
    """Per block, the inputs of each linear over all calibration tokens (unquantized model)."""
    h = blocks.embed(windows)
    per_layer = []
    for i in range(blocks.m.n_layers):
        rec = {}
        h_next = blocks.block(i, h, rec)
        per_layer.append((h, {k: torch.cat(v, 0) for k, v in rec.items()}))
        h = h_next
    return per_layer


# ----------------------------------------------------------------------------- SmoothQuant

def smoothquant(model, blocks, windows, alpha):
    result = []
    for i, (_, feats) in enumerate(calibration_inputs(blocks, windows)):
        n1, n2 = blocks.norm_names(i)
        groups = [(n1, [k for k in feats if k.endswith(("q_proj", "k_proj", "v_proj"))])]
        groups.append((n2, [k for k in feats if k.endswith(("fc1", "gate_proj", "up_proj"))]))
        for norm, fcs in groups:
            act_scales = feats[fcs[0]].abs().amax(dim=0)
            weight_scales = torch.cat([model.weights[n].abs().amax(dim=0, keepdim=True) for n in fcs], 0)
            weight_scales = weight_scales.amax(dim=0).clamp(min=1e-5)
            s = (act_scales.pow(alpha) / weight_scales.pow(1 - alpha)).clamp(min=1e-5)
            fold_norm(model, norm, fcs, s)
            result.append({"layer": i, "norm": norm, "scales": s.tolist()})
    return result


# ----------------------------------------------------------------------------- AWQ

def awq(model, blocks, windows, n_bit=4, group=128, n_grid=20, max_shrink=0.5, n_sample_token=512):
    scales_out, clips_out = [], []
    B, T = windows.shape
    for i, (h_in, feats) in enumerate(calibration_inputs(blocks, windows)):
        n1, n2 = blocks.norm_names(i)
        records = []
        for prev, prev_is_norm, linears, kind in blocks.groups(i):
            x = feats[linears[0]]
            def inspect():
                xb = x.view(B, T, -1)
                if kind == "attn":
                    return blocks.attention(i, xb)
                if kind == "mlp":
                    return blocks.mlp(i, xb)
                return F.linear(xb, model.weights[linears[0]], model.biases[linears[0]])
            org_out = inspect()
            x_max = x.abs().view(-1, x.shape[-1]).mean(0)
            originals = {n: model.weights[n] for n in linears}
            best = (float("inf"), -1, None)
            history = []
            for r in range(n_grid):
                ratio = r * 1 / n_grid
                s = x_max.pow(ratio).clamp(min=1e-4).view(-1)
                s = s / (s.max() * s.min()).sqrt()
                for n in linears:
                    model.weights[n] = pseudo_quantize_asym(originals[n] * s.view(1, -1), n_bit, group) / s.view(1, -1)
                loss = (org_out - inspect()).float().pow(2).mean().item()
                history.append(loss)
                if loss < best[0]:
                    best = (loss, ratio, s)
                model.weights.update(originals)
            assert best[1] >= 0, history
            records.append((prev, prev_is_norm, linears, best))
            scales_out.append({"layer": i, "previous": prev, "linears": linears, "ratio": best[1], "loss": best[0],
                               "scales": best[2].tolist(), "loss_history": history})
        for prev, prev_is_norm, linears, (_, _, s) in records:
            (fold_norm if prev_is_norm else fold_linear)(model, prev, linears, s)
            for n in linears:
                feats[n] = feats[n] / s.view(1, -1)
        # auto_clip_block
        for name in feats:
            if any(t in name for t in ("q_", "k_")):
                continue
            w = model.weights[name]
            xf = feats[name]
            step = max(1, xf.shape[0] // n_sample_token)
            xs = xf[0::step]
            I = w.shape[1]
            max_vals = []
            for s0 in range(0, I, group):
                wg = w[:, s0:s0 + group]                      # co, g
                xg = xs[:, s0:s0 + group]                     # n, g
                org_max = wg.abs().amax(dim=-1, keepdim=True)  # co, 1
                best_max = org_max.clone()
                min_errs = torch.ones_like(org_max) * 1e9
                org_out = xg @ wg.t()                         # n, co
                for i_s in range(int(max_shrink * n_grid)):
                    mv = org_max * (1 - i_s / n_grid)
                    cur = torch.max(torch.min(wg, mv), -mv)
                    q = pseudo_quantize_asym(cur, n_bit, group)
                    err = (xg @ q.t() - org_out).pow(2).mean(dim=0).view(-1, 1)
                    better = err < min_errs
                    min_errs[better] = err[better]
                    best_max[better] = mv[better]
                max_vals.append(best_max)
            mv = torch.cat(max_vals, dim=1)  # co, groups
            pieces = [torch.max(torch.min(w[:, g * group:(g + 1) * group], mv[:, g:g + 1]), -mv[:, g:g + 1])
                      for g in range(mv.shape[1])]
            model.weights[name] = torch.cat(pieces, dim=1)
            clips_out.append({"linear": name, "max_values": mv.tolist()})
    return scales_out, clips_out


# ----------------------------------------------------------------------------- driver

def quantize_all_weights(model, fn):
    for n in list(model.weights):
        model.weights[n] = fn(model.weights[n])


def evaluate(model, tokens, a_method=None, alpha=0.15, a_bits=8, static_absmax=None):
    model.quant = QuantSpec(a_bits=a_bits if a_method else None, a_method=a_method or "per_token", alpha=alpha,
                            static_absmax=static_absmax)
    r = perplexity(model, tokens, EVAL_SEQLEN)
    return {"ppl": r["ppl"], "kernel_proportion": r["stats"]["kernel_proportion"] if a_method else None}


def write_golden(path, out):
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(path + ".tmp", path)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


README_SCHEMES = (("w8a8", lambda w: quantize_weight(w, 8), 8),
                  ("w4a8_g128", lambda w: quantize_weight(w, 4, 128), 8),
                  ("w4a4", lambda w: quantize_weight(w, 4), 4))


def readme_settings(fresh, windows, alpha, eval_tokens, fp_logits, out):
    """The README's table rows (cq sweep, method rtn and smoothquant) that make_golden_ppl.py
    lacks: plain symmetric rounding with per-token activations at W4A8-g128 and W4A4, and
    SmoothQuant's factors once, then the smoothed weights rounded per scheme (W8 per-channel,
    W4 groups of 128 symmetric as for plain rounding, W4 per-channel) with per-token and
    CrossQuant α=0.15 activations."""
    S = out["settings"]
    for scheme, weight_fn, a_bits in README_SCHEMES[1:]:
        m = fresh()
        quantize_all_weights(m, weight_fn)
        S[f"{scheme}_per_token"] = evaluate(m, eval_tokens, "per_token", a_bits=a_bits)
    m = fresh()
    out["smoothquant"] = smoothquant(m, Blocks(m), windows, alpha)
    out["smoothquant_fp32_max_rel_logit_diff"] = float(
        ((m.forward(window_tokens(eval_tokens, EVAL_SEQLEN)[:2]) - fp_logits).abs().max() / fp_logits.abs().max()))
    smoothed = dict(m.weights)
    for scheme, weight_fn, a_bits in README_SCHEMES:
        m.weights = dict(smoothed)
        quantize_all_weights(m, weight_fn)
        S[f"smoothquant_{scheme}_per_token"] = evaluate(m, eval_tokens, "per_token", a_bits=a_bits)
        S[f"smoothquant_{scheme}_crossquant_a0.15"] = evaluate(m, eval_tokens, "crossquant", a_bits=a_bits)


def per_tensor_settings(fresh, windows, eval_tokens, out):
    """W8 per-channel weights with per-tensor activations: dynamic (Δ = max|X| of each window /
    qmax) and static (Δ = max|X| over the calibration tokens at that linear's input, from the
    unquantized model, / qmax; codes clipped)."""
    S = out["settings"]
    m = fresh()
    static_absmax = {}
    for _, feats in calibration_inputs(Blocks(m), windows):
        static_absmax.update({n: float(x.abs().max()) for n, x in feats.items()})
    quantize_all_weights(m, lambda w: quantize_weight(w, 8))
    S["w8a8_per_tensor"] = evaluate(m, eval_tokens, "per_tensor")
    S["w8a8_per_tensor_static"] = evaluate(m, eval_tokens, "per_tensor", static_absmax=static_absmax)


def new_settings(fresh, windows, alpha, eval_tokens, fp_logits, out):
    readme_settings(fresh, windows, alpha, eval_tokens, fp_logits, out)
    per_tensor_settings(fresh, windows, eval_tokens, out)


def run_model(shared, name, out_dir, only_new=False):
    t0 = time.time()
    model_dir = os.path.join(shared, "models", name)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
    read = lambda rel: open(os.path.join(shared, rel), encoding="utf-8").read()
    calib_tokens = [1] + sp.encode(read(CALIB_TEXT))
    eval_tokens = [1] + sp.encode(read(EVAL_TEXT))
    windows = window_tokens(calib_tokens, CALIB_SEQLEN)[:CALIB_SAMPLES]
    fresh = lambda: ReferenceModel.from_dir(model_dir, torch.float32)
    family = fresh().family
    alpha = 0.5 if family == "opt" else 0.8
    out = {"generator": "tests/reference/baselines_reference.py (plain PyTorch, authors' definitions)",
           "model": f"models/{name}", "model_sha256": sha256_file(os.path.join(model_dir, "model.safetensors")),
           "calibration": {"text": CALIB_TEXT, "samples": CALIB_SAMPLES, "seqlen": CALIB_SEQLEN,
                           "tokenizer": "sentencepiece, BOS id 1 prepended once, windows from the start"},
           "eval": {"text": EVAL_TEXT, "seqlen": EVAL_SEQLEN, "windows": len(eval_tokens) // EVAL_SEQLEN},
           "migration_strength": alpha, "settings": {}}
    S = out["settings"]
    path = os.path.join(out_dir, f"{name}.json")

    m = fresh()
    fp_logits = m.forward(window_tokens(eval_tokens, EVAL_SEQLEN)[:2])
    if only_new:  # add the settings of new_settings() the file lacks; keep every existing entry
        with open(path) as f:
            out = json.load(f)
        assert out["model_sha256"] == sha256_file(os.path.join(model_dir, "model.safetensors")), "model changed"
        computed = json.loads(json.dumps(out))
        new_settings(fresh, windows, alpha, eval_tokens, fp_logits, computed)
        for key, value in computed["settings"].items():
            out["settings"].setdefault(key, value)
        write_golden(path, out)
        print(name, json.dumps(out["settings"], indent=1), f"{time.time() - t0:.1f}s")
        return
    S["fp32"] = evaluate(m, eval_tokens)
    quantize_all_weights(m, lambda w: quantize_weight(w, 8))
    S["w8a8_per_token"] = evaluate(m, eval_tokens, "per_token")

    readme_settings(fresh, windows, alpha, eval_tokens, fp_logits, out)
    per_tensor_settings(fresh, windows, eval_tokens, out)

    m = fresh()
    quantize_all_weights(m, lambda w: pseudo_quantize_asym(w, 4, 128))
    S["w4a8_g128_asym_per_token"] = evaluate(m, eval_tokens, "per_token")
    S["w4a8_g128_asym_crossquant_a0.15"] = evaluate(m, eval_tokens, "crossquant")

    m = fresh()
    out["awq_scales"], out["awq_clips"] = awq(m, Blocks(m), windows)
    quantize_all_weights(m, lambda w: pseudo_quantize_asym(w, 4, 128))
    S["awq_w4a8_g128_per_token"] = evaluate(m, eval_tokens, "per_token")
    S["awq_w4a8_g128_crossquant_a0.15"] = evaluate(m, eval_tokens, "crossquant")

    out["seconds"] = time.time() - t0
    write_golden(path, out)
    print(name, json.dumps(S, indent=1), f"{out['seconds']:.1f}s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("CQ_SHARED", "/work/shared"))
    ap.add_argument("--models", default="tinyopt,stories260k")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "baselines"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only-new-settings", action="store_true",
                    help="add the settings of new_settings() (README rows, per-tensor) that the golden files lack")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    for name in args.models.split(","):
        run_model(args.shared, name, args.out, args.only_new_settings)


if __name__ == "__main__":
    main()
