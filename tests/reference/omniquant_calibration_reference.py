#!/usr/bin/python3
"""OmniQuant's block-wise calibration (Shao et al. 2024, arXiv 2308.13137) in plain PyTorch
with autograd: the independent reference for src/ptq/omniquant_block.cpp (forward, hand-written
backward) and src/ptq/omniquant_calibration.cpp (the training loop).

Written from the algorithm as the paper and docs/BASELINES.md ("OmniQuant calibration") define
it, never from our C++: one decoder block (OPT: LayerNorm, biases, ReLU, q scaled after q_proj;
LLaMA: RMSNorm, RoPE, SwiGLU, grouped-query attention) whose weights and norms go through the
learnable equivalent transformation (LET), whose weights are fake-quantized with learnable
clipping (LWC: sigmoid factors on each range's max and min), whose linear inputs and q/k/v are
fake-quantized per token (LLaMA's q/k/v per head), rounding with a straight-through estimator;
loss = MSE to the full-precision block's output; AdamW (torch.optim.AdamW) per block, the
samples in order, each epoch.

  grad        one block, one sequence: loss and d loss / d every parameter, as JSON
  calibrate   a whole calibration on deterministic token windows: per-layer parameters and
              the mean loss of every epoch, as JSON

Run with Debian's /usr/bin/python3 (torch). Writes tests/golden/omniquant/*.json with --write-goldens.
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_reference import ReferenceModel  # noqa: E402

LINEARS = ["q", "k", "v", "o", "fc1", "up", "fc2"]
LET_NAMES = ["qkv_smooth_scale", "qkv_smooth_shift", "out_smooth_scale", "out_smooth_shift",
             "fc1_smooth_scale", "fc1_smooth_shift", "qkt_smooth_scale"]


def module_name(family, linear):
    if family == "opt":
        return {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
                "o": "self_attn.out_proj", "fc1": "fc1", "fc2": "fc2"}[linear]
    return {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
            "fc1": "mlp.gate_proj", "up": "mlp.up_proj", "fc2": "mlp.down_proj"}[linear]


def round_ste(x):
    return (x.round() - x).detach() + x


def fake_quant(x, bits, up=None, low=None):
    """Asymmetric min/max fake quantization along the last dimension (OmniQuant's quantizer)."""
    if bits >= 16:
        return x
    xmax = x.amax(-1, keepdim=True)
    xmin = x.amin(-1, keepdim=True)
    if up is not None:
        xmax = torch.sigmoid(up) * xmax
        xmin = torch.sigmoid(low) * xmin
    qmax = 2 ** bits - 1
    scale = ((xmax - xmin) / qmax).clamp(min=1e-5, max=1e4)
    zero = (-xmin / scale).clamp(min=-1e4, max=1e4).round()
    codes = (round_ste(x / scale) + zero).clamp(0, qmax)
    return (codes - zero) * scale


class Settings:
    def __init__(self, wbits, abits, group=0, lwc=True, let=True, shift=True):
        self.wbits, self.abits, self.group, self.lwc, self.let, self.shift = wbits, abits, group, lwc, let, shift

    def as_json(self):
        return dict(wbits=self.wbits, abits=self.abits, group=self.group, lwc=self.lwc, let=self.let, shift=self.shift)


class Block:
    """One decoder layer's full-precision tensors, from hf_reference's loaded model."""

    def __init__(self, model, layer, dtype):
        self.family = model.family
        self.llama = self.family == "llama"
        self.hidden = model.hidden
        self.heads = model.n_heads
        self.kv_heads = model.n_kv
        self.head_dim = model.head_dim
        p = f"{model.prefix}.layers.{layer}"
        self.w, self.b = {}, {}
        for lin in LINEARS:
            if lin == "up" and not self.llama:
                continue
            name = f"{p}.{module_name(self.family, lin)}"
            self.w[lin] = model.weights[name].to(dtype)
            bias = model.biases[name]
            self.b[lin] = None if bias is None else bias.to(dtype)
        if self.llama:
            self.n1 = (model._get(f"{p}.input_layernorm.weight").to(dtype), None)
            self.n2 = (model._get(f"{p}.post_attention_layernorm.weight").to(dtype), None)
            self.eps = model.eps
            self.inv_freq = model.inv_freq.to(dtype)
        else:
            self.n1 = tuple(model._get(f"{p}.self_attn_layer_norm.{n}").to(dtype) for n in ("weight", "bias"))
            self.n2 = tuple(model._get(f"{p}.final_layer_norm.{n}").to(dtype) for n in ("weight", "bias"))
            self.eps = 1e-5

    def kv_expand(self, v):
        """A key/value-width vector read by query-width rows or columns (query head h → kv head h // rep)."""
        rep = self.heads // self.kv_heads
        return v.view(self.kv_heads, self.head_dim).repeat_interleave(rep, 0).reshape(-1)

    def norm(self, x, weight, bias):
        if self.llama:
            h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
            return weight * h + bias if bias is not None else weight * h
        return F.layer_norm(x, (x.shape[-1],), weight, bias, eps=self.eps)

    def effective(self, params, s):
        """The block's norms and weights after LET, weights then fake-quantized with LWC."""
        w = dict(self.w)
        b = dict(self.b)
        n1, n2 = self.n1, self.n2
        if s.let:
            s1, t1 = params["qkv_smooth_scale"], params["qkv_smooth_shift"]
            s2, t2 = params["out_smooth_scale"], params["out_smooth_shift"]
            s3, t3 = params["fc1_smooth_scale"], params["fc1_smooth_shift"]
            s4 = params["qkt_smooth_scale"]
            zero = lambda bias: 0 if bias is None else bias  # noqa: E731
            n1 = (self.n1[0] / s1, (zero(self.n1[1]) - t1) / s1)
            n2 = (self.n2[0] / s3, (zero(self.n2[1]) - t3) / s3)
            for lin in ("q", "k", "v"):
                b[lin] = zero(self.b[lin]) + self.w[lin] @ t1
                w[lin] = self.w[lin] * s1.view(1, -1)
            # smooth_fc_fc: v_proj rows over s2 (after subtracting the shift), o_proj columns times s2
            b["v"] = (b["v"] - t2) / s2
            w["v"] = w["v"] / s2.view(-1, 1)
            b["o"] = zero(self.b["o"]) + self.w["o"] @ self.kv_expand(t2)
            w["o"] = self.w["o"] * self.kv_expand(s2).view(1, -1)
            # smooth_q_k: q rows over s4, k rows times s4
            w["q"] = w["q"] / self.kv_expand(s4).view(-1, 1)
            b["q"] = b["q"] / self.kv_expand(s4)
            w["k"] = w["k"] * s4.view(-1, 1)
            b["k"] = b["k"] * s4
            for lin in ("fc1", "up"):
                if lin in self.w:
                    b[lin] = zero(self.b[lin]) + self.w[lin] @ t3
                    w[lin] = self.w[lin] * s3.view(1, -1)
        if s.wbits < 16:
            for lin in w:
                out, inp = w[lin].shape
                g = s.group or inp
                up = params.get(f"{lin}.up") if s.lwc else None
                low = params.get(f"{lin}.low") if s.lwc else None
                w[lin] = fake_quant(w[lin].reshape(-1, g), s.wbits, up, low).reshape(out, inp)
        return n1, n2, w, b

    def forward(self, x, params, s, quantized=True):
        """x: [L, hidden], one sequence. Returns (output, site inputs for the act statistics)."""
        if quantized:
            n1, n2, w, b = self.effective(params, s)
            abits = s.abits
        else:
            n1, n2, w, b = self.n1, self.n2, self.w, self.b
            abits = 16
        L = x.shape[0]
        hd = self.head_dim
        h1 = self.norm(x, *n1)
        a1 = fake_quant(h1, abits)
        q = F.linear(a1, w["q"], b["q"])
        k = F.linear(a1, w["k"], b["k"])
        v = F.linear(a1, w["v"], b["v"])
        q = q.view(L, self.heads, hd).transpose(0, 1)
        k = k.view(L, self.kv_heads, hd).transpose(0, 1)
        v = v.view(L, self.kv_heads, hd).transpose(0, 1)
        if self.llama:
            pos = torch.arange(L, dtype=x.dtype)
            freqs = pos[:, None] * self.inv_freq[None, :]
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos(), emb.sin()
            rot = lambda t: torch.cat((-t[..., hd // 2:], t[..., :hd // 2]), dim=-1)  # noqa: E731
            q = q * cos + rot(q) * sin
            k = k * cos + rot(k) * sin
            rep = self.heads // self.kv_heads
            k = k.repeat_interleave(rep, 0)
            v = v.repeat_interleave(rep, 0)
            q, k, v = fake_quant(q, abits), fake_quant(k, abits), fake_quant(v, abits)
            scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
        else:
            q = q * hd ** -0.5
            # OPT: per token across all heads
            flat = lambda t: t.transpose(0, 1).reshape(L, -1)  # noqa: E731
            unflat = lambda t: t.view(L, self.heads, hd).transpose(0, 1)  # noqa: E731
            q, k, v = (unflat(fake_quant(flat(t), abits)) for t in (q, k, v))
            scores = q @ k.transpose(-1, -2)
        mask = torch.ones(L, L, dtype=torch.bool).triu(1)
        probs = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        o_in = (probs @ v).transpose(0, 1).reshape(L, -1)
        x1 = x + F.linear(fake_quant(o_in, abits), w["o"], b["o"])
        h2 = self.norm(x1, *n2)
        a3 = fake_quant(h2, abits)
        if self.llama:
            m = F.silu(F.linear(a3, w["fc1"], b["fc1"])) * F.linear(a3, w["up"], b["up"])
        else:
            m = F.relu(F.linear(a3, w["fc1"], b["fc1"]))
        out = x1 + F.linear(fake_quant(m, abits), w["fc2"], b["fc2"])
        return out, (h1, o_in, h2)


def initial_parameters(block, s, site_stats, alpha, dtype):
    """OmniQuant's start: LWC factors 4; LET scales act^α / w^(1−α) (clamped at 1e-5) from the
    full-precision site inputs' column maxima, shifts from their (max+min)/2 running average."""
    params = {}
    if s.let:
        absmax, shifts = site_stats

        def scale(act, weight_colmax):
            act = act.clamp(min=1e-5)
            wmax = weight_colmax.clamp(min=1e-5)
            return (act.pow(alpha) / wmax.pow(1 - alpha)).clamp(min=1e-5)

        def kv_reduce(v):
            rep = block.heads // block.kv_heads
            return v.view(block.kv_heads, rep, block.head_dim).amax(1).reshape(-1)

        params["qkv_smooth_scale"] = scale(absmax[0], block.w["q"].abs().amax(0))
        params["out_smooth_scale"] = scale(kv_reduce(absmax[1]), kv_reduce(block.w["o"].abs().amax(0)))
        key = "up" if block.llama else "fc1"
        params["fc1_smooth_scale"] = scale(absmax[2], block.w[key].abs().amax(0))
        use = s.shift and not block.llama
        params["qkv_smooth_shift"] = shifts[0].clone() if use else torch.zeros_like(params["qkv_smooth_scale"])
        params["out_smooth_shift"] = shifts[1].clone() if use else torch.zeros_like(params["out_smooth_scale"])
        params["fc1_smooth_shift"] = shifts[2].clone() if use else torch.zeros_like(params["fc1_smooth_scale"])
        params["qkt_smooth_scale"] = torch.ones(block.kv_heads * block.head_dim, dtype=dtype)
    if s.lwc and s.wbits < 16:
        for lin, w in block.w.items():
            ranges = w.numel() // (s.group or w.shape[1])
            params[f"{lin}.up"] = torch.full((ranges, 1), 4.0, dtype=dtype)
            params[f"{lin}.low"] = torch.full((ranges, 1), 4.0, dtype=dtype)
    return params


def site_statistics(block, inputs):
    """Column max |x| over all samples; (max+min)/2 per sample, averaged 0.99/0.01 in order."""
    absmax, shifts = [None] * 3, [None] * 3
    with torch.no_grad():
        for x in inputs:
            _, sites = block.forward(x, None, None, quantized=False)
            for i, site in enumerate(sites):
                m = site.abs().amax(0)
                absmax[i] = m if absmax[i] is None else torch.maximum(absmax[i], m)
                mid = (site.amax(0) + site.amin(0)) / 2
                shifts[i] = mid if shifts[i] is None else 0.99 * shifts[i] + 0.01 * mid
    return absmax, shifts


def truncate_scales(params):
    with torch.no_grad():
        for name, p in params.items():
            if name.endswith("smooth_scale"):
                small = p.abs() < 1e-2
                p[small] = p[small].sign() * 1e-2


def omniquant_names(family, params):
    """Our short names → OmniQuant's state-dict names (LWC factors under each linear's quantizer)."""
    out = {}
    for name, v in params.items():
        if "." in name:
            lin, which = name.split(".")
            out[f"{module_name(family, lin)}.weight_quantizer.{'upbound' if which == 'up' else 'lowbound'}_factor"] = v
        else:
            out[name] = v
    return out


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


# ----------------------------------------------------------------------------------- grad

def grad_case(model_dir, layer, s, length, seed, dtype):
    model = ReferenceModel.from_dir(model_dir, dtype=torch.float32)
    block = Block(model, layer, dtype)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(length, block.hidden, generator=gen, dtype=dtype)
    x[:, 3] *= 8  # an outlier channel, as LET is made for
    with torch.no_grad():
        target, _ = block.forward(x, None, None, quantized=False)
    params = initial_parameters(block, s, site_statistics(block, [x]), 0.5, dtype)
    # Move away from the initialisation so every term of the gradient is exercised.
    for name, p in params.items():
        noise = torch.randn(p.shape, generator=gen, dtype=dtype)
        if name.endswith("scale"):
            params[name] = p * torch.exp(0.3 * noise)
        elif name.endswith("shift"):
            params[name] = p + 0.1 * noise if s.shift and not block.llama else p
        else:
            params[name] = p + noise
    for p in params.values():
        p.requires_grad_(True)
    out, _ = block.forward(x, params, s)
    loss = F.mse_loss(out, target)
    loss.backward()
    return {
        "model": os.path.basename(os.path.normpath(model_dir)), "layer": layer, "settings": s.as_json(),
        "length": length, "x": flat(x), "target": flat(target), "loss": float(loss),
        "parameters": {k: flat(v) for k, v in omniquant_names(block.family, params).items()},
        "gradients": {k: flat(v.grad) for k, v in omniquant_names(block.family, params).items()},
    }


# ------------------------------------------------------------------------------ calibrate

def calibration_tokens(vocab, samples, seqlen):
    """Deterministic pseudo-text: token i = (i·7919 + 13) mod vocab (the C++ test makes the same)."""
    ids = [(i * 7919 + 13) % vocab for i in range(samples * seqlen)]
    return torch.tensor(ids, dtype=torch.long).view(samples, seqlen)


def embed(model, ids):
    h = model.embed[ids]
    if model.family == "opt":
        if model.project_in is not None:
            h = F.linear(h, model.project_in)
        h = h + model.pos_embed[torch.arange(ids.shape[-1]) + 2][None]
    return h


def calibrate(model_dir, s, samples, seqlen, epochs, lwc_lr, let_lr, wd, alpha, dtype):
    model = ReferenceModel.from_dir(model_dir, dtype=dtype)
    ids = calibration_tokens(model.config["vocab_size"], samples, seqlen)
    fp_inputs = [t for t in embed(model, ids)]
    quant_inputs = [t.clone() for t in fp_inputs]
    layers, losses = [], []
    for layer in range(model.n_layers):
        block = Block(model, layer, dtype)
        params = initial_parameters(block, s, site_statistics(block, fp_inputs), alpha, dtype)
        with torch.no_grad():
            fp_outputs = [block.forward(x, None, None, quantized=False)[0] for x in fp_inputs]
        if epochs > 0:
            let_group = [p for n, p in params.items() if n.endswith("scale") or (s.shift and n.endswith("shift"))]
            lwc_group = [p for n, p in params.items() if "." in n]
            for p in let_group + lwc_group:
                p.requires_grad_(True)
            groups = [g for g in ({"params": let_group, "lr": let_lr}, {"params": lwc_group, "lr": lwc_lr}) if g["params"]]
            optimizer = torch.optim.AdamW(groups, weight_decay=wd)
            for epoch in range(epochs):
                total = 0.0
                for j in range(len(quant_inputs)):
                    if s.let:
                        truncate_scales(params)
                    out, _ = block.forward(quant_inputs[j], params, s)
                    loss = F.mse_loss(out, fp_outputs[j])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += float(loss)
                losses.append({"layer": layer, "epoch": epoch, "loss": total / len(quant_inputs)})
            if s.let:
                truncate_scales(params)
            with torch.no_grad():
                quant_inputs = [block.forward(x, params, s)[0] for x in quant_inputs]
        fp_inputs = fp_outputs
        layers.append({k: flat(v) for k, v in omniquant_names(block.family, params).items()})
    return {"model": os.path.basename(os.path.normpath(model_dir)), "settings": s.as_json(), "samples": samples,
            "seqlen": seqlen, "epochs": epochs, "lwc_lr": lwc_lr, "let_lr": let_lr, "weight_decay": wd, "alpha": alpha,
            "layers": layers, "losses": losses}


def calibrate_with_drift(*args):
    """The float64 calibration, plus how far PyTorch's own float32 run of the same algorithm lands
    from it (per layer: the worst |Δ| / max(1, |p|) over all parameters; per epoch: |Δloss| / loss).
    Rounding decisions that flip in float32 change straight-through gradients and AdamW then turns
    small gradient differences into whole steps, so this drift is what float32 arithmetic itself
    costs; the C++ test allows twice it."""
    exact = calibrate(*args, torch.float64)
    single = calibrate(*args, torch.float32)
    layer_drift = []
    for la, lb in zip(single["layers"], exact["layers"]):
        layer_drift.append(max(max(abs(x - y) / max(1.0, abs(y)) for x, y in zip(la[k], lb[k])) for k in lb))
    loss_drift = [abs(a["loss"] - b["loss"]) / b["loss"] for a, b in zip(single["losses"], exact["losses"])]
    exact["float32_drift"] = {"layers": layer_drift, "losses": loss_drift}
    return exact


def golden_cases(shared):
    models = os.path.join(shared, "models")
    w4a4 = Settings(4, 4, 0, True, True, True)
    return {
        "grad_tinyopt_w4a4.json": lambda: grad_case(os.path.join(models, "tinyopt"), 1, w4a4, 24, 1, torch.float64),
        "grad_tinyopt_w4a16g32.json": lambda: grad_case(os.path.join(models, "tinyopt"), 0, Settings(4, 16, 32, True, True, False), 24, 2, torch.float64),
        "grad_stories260k_w4a4.json": lambda: grad_case(os.path.join(models, "stories260k"), 1, Settings(4, 4, 0, True, True, False), 24, 3, torch.float64),
        "calib_tinyopt_w4a4.json": lambda: calibrate_with_drift(os.path.join(models, "tinyopt"), w4a4, 4, 32, 2, 1e-2, 5e-3, 0.0, 0.5),
        "calib_tinyopt_w4a4_init.json": lambda: calibrate_with_drift(os.path.join(models, "tinyopt"), w4a4, 4, 32, 0, 1e-2, 5e-3, 0.0, 0.75),
        "calib_stories260k_w6a6_init.json": lambda: calibrate_with_drift(os.path.join(models, "stories260k"), Settings(6, 6, 0, True, True, False), 4, 32, 0, 1e-2, 5e-3, 0.0, 0.5),
        "calib_stories260k_w4a4.json": lambda: calibrate_with_drift(os.path.join(models, "stories260k"), Settings(4, 4, 0, True, True, False), 4, 32, 2, 1e-2, 5e-3, 0.0, 0.5),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.environ.get("CQ_SHARED", "../shared"))
    ap.add_argument("--write-goldens", action="store_true", help="write tests/golden/omniquant/*.json")
    ap.add_argument("--only", default="", help="comma-separated golden file names")
    ap.add_argument("--load", help="print an omni_parameters.pth file read by torch.load as JSON and exit")
    args = ap.parse_args()
    if args.load:
        data = torch.load(args.load)
        print(json.dumps({str(layer): {name: {"shape": list(t.shape), "dtype": str(t.dtype), "values": flat(t)}
                                       for name, t in entries.items()} for layer, entries in data.items()}))
        return
    torch.set_num_threads(1)
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "omniquant")
    os.makedirs(out_dir, exist_ok=True)
    for name, make in golden_cases(args.shared).items():
        if args.only and name not in args.only.split(","):
            continue
        result = make()
        if args.write_goldens:
            with open(os.path.join(out_dir, name), "w") as f:
                json.dump(result, f)
        print(name, "loss", result.get("loss", [e["loss"] for e in result.get("losses", [])][-1:]))


if __name__ == "__main__":
    main()
