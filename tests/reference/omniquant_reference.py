"""OmniQuant's released parameters applied in plain PyTorch, written from OmniQuant's definition
(Shao et al. 2024, arXiv 2308.13137; the order of operations of its smooth_and_quant_inplace and
its UniformAffineQuantizer, as docs/BASELINES.md "OmniQuant" describes them), never from the C++
code. For each shared model it

1. writes random-but-plausible parameters in OmniQuant's file format (torch.save of
   {layer index: OrderedDict {name: float16 tensor}}, the dtype its code saves after .half()):
     <fixtures>/<model>.pth            LET + LWC, per-channel weights (W4A4, W6A6)
     <fixtures>/<model>_g128.pth  LWC only, groups of 128 (W4A16-g128: OmniQuant's
                                                weight-only runs use --lwc without --let)
2. applies them to the model in float32:
     scales truncated (|s| < 1e-2 -> sign(s)·1e-2);
     LET: norm bias <- (bias - shift)/s, norm weight <- weight/s, each reading linear's bias <-
     bias + W·shift then W <- W·diag(s) (qkv: attention norm -> q,k,v; fc1: MLP norm -> fc1 or
     up,gate); v bias <- (bias - shift)/s, v rows /= s, o bias += W_o·shift, W_o columns *= s;
     q rows and bias /= qkt scale, k rows and bias *= qkt scale. GQA (stories260k: 8 heads, 4
     key/value heads): out_* and qkt hold one entry per key/value channel; query head h uses key/value
     head h // (heads / kv_heads) for q rows and o_proj columns.
     weights: per output channel or per group of 128 inputs (last group the shorter remainder),
     xmax <- sigmoid(upbound)·max, xmin <- sigmoid(lowbound)·min, scale = clamp((xmax - xmin) /
     (2^N - 1), 1e-5, 1e4), zero = round(clamp(-xmin/scale, -1e4, 1e4)), code = clamp(round(w /
     scale) + zero, 0, 2^N - 1), w <- (code - zero)·scale;
3. runs the forward with OmniQuant's activation quantizers (the same asymmetric grid per row with
   xmin/xmax the row's min/max, no clipping factors): the input of every decoder linear per token,
   and the inputs of the attention products: LLaMA q and k after RoPE and v, per head and token;
   OPT q after its scaling, k and v, per token across heads. Softmax output unquantized.
4. prints and writes the perplexity (tests/golden/omniquant/<model>.json) of W4A4, W6A6 (LET +
   LWC file) and W4A16-g128 (g128 file) on TinyStories (seqlen 256, every window).

Usage: /usr/bin/python3 tests/reference/omniquant_reference.py [--shared DIR] [--models tinyopt,stories260k]
       /usr/bin/python3 tests/reference/omniquant_reference.py --malicious FILE   (for the refusal test)
"""
import argparse
import tempfile
import collections
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_reference import ReferenceModel, perplexity, rotate_half  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = tempfile.mkdtemp(prefix="omniquant-fixtures-")  # never committed: --write-fixtures recreates them
GOLDEN = os.path.join(HERE, "..", "golden", "omniquant")
EVAL_TEXT = "data/tinystories/TinyStories-valid.first100.txt"
EVAL_SEQLEN = 256
SETTINGS = {  # name: (weight bits, activation bits, group size or None, file suffix)
    "w4a4": (4, 4, None, ""),
    "w6a6": (6, 6, None, ""),
    "w4a16_g128": (4, 16, 128, "_g128"),
}


# ----------------------------------------------------------------------------- the grid

def asym_fake_quant(x, xmin, xmax, bits):
    """OmniQuant's UniformAffineQuantizer.fake_quant with a zero point; xmin/xmax broadcast."""
    qmax = 2 ** bits - 1
    scale = ((xmax - xmin) / qmax).clamp(min=1e-5, max=1e4)
    zero = (-xmin / scale).clamp(min=-1e4, max=1e4).round()
    code = ((x / scale).round() + zero).clamp(0, qmax)
    return (code - zero) * scale


def quant_rows(x, bits):
    """Dynamic per-row (last dimension) asymmetric quantization, no clipping factors."""
    return asym_fake_quant(x, x.amin(-1, keepdim=True), x.amax(-1, keepdim=True), bits)


def quant_weight(w, bits, group, up, low):
    """LWC weight quantization: rows (or groups, the last one shorter) of w; up/low (rows·groups, 1)."""
    out_features, in_features = w.shape
    width = group or in_features
    chunks = []
    groups = (in_features + width - 1) // width
    for g in range(groups):
        chunk = w[:, g * width:(g + 1) * width]
        xmin = chunk.amin(-1, keepdim=True)
        xmax = chunk.amax(-1, keepdim=True)
        if up is not None:
            xmax = torch.sigmoid(up.view(out_features, groups)[:, g:g + 1]) * xmax
            xmin = torch.sigmoid(low.view(out_features, groups)[:, g:g + 1]) * xmin
        chunks.append(asym_fake_quant(chunk, xmin, xmax, bits))
    return torch.cat(chunks, dim=1)


# ----------------------------------------------------------------------------- parameters

def linear_names(family):
    if family == "opt":
        return ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2"]
    return ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def make_parameters(model, let, group, seed):
    """Random parameters with OmniQuant's names and shapes (float16, as its code saves them)."""
    g = torch.Generator().manual_seed(seed)
    hidden, kv_width = model.hidden, model.n_kv * model.head_dim
    llama = model.family == "llama"

    def scales(n, truncated=False):  # LET scales near 1 (exp of N(0, 0.2))
        s = torch.exp(0.2 * torch.randn(n, generator=g))
        if truncated:
            s[n // 3] = 0.008  # below OmniQuant's 1e-2 truncation: applied as 0.01
        return s

    def shifts(n, zero):
        return torch.zeros(n) if zero else 0.05 * torch.randn(n, generator=g)

    params = {}
    for i in range(model.n_layers):
        layer = collections.OrderedDict()
        if let:
            # LLaMA: OmniQuant keeps the norm-side shifts at 0 (its RMSNorm has no bias); the
            # v -> o shift is made non-zero here to exercise the GQA mapping of o_proj's bias.
            layer["qkv_smooth_scale"] = scales(hidden)
            layer["qkv_smooth_shift"] = shifts(hidden, llama)
            layer["out_smooth_scale"] = scales(kv_width)
            layer["out_smooth_shift"] = shifts(kv_width, False)
            layer["fc1_smooth_scale"] = scales(hidden)
            layer["fc1_smooth_shift"] = shifts(hidden, llama)
            layer["qkt_smooth_scale"] = scales(kv_width, truncated=True)
        prefix = f"{model.prefix}.layers.{i}."
        for name in linear_names(model.family):
            out_features, in_features = model.weights[prefix + name].shape
            rows = out_features * (-(-in_features // group) if group else 1)
            # trained LWC factors in [1.5, 5] around OmniQuant's initial 4.0: sigmoid 0.82 .. 0.99 of the range
            layer[f"{name}.weight_quantizer.upbound_factor"] = 1.5 + 3.5 * torch.rand(rows, 1, generator=g)
            layer[f"{name}.weight_quantizer.lowbound_factor"] = 1.5 + 3.5 * torch.rand(rows, 1, generator=g)
        params[i] = collections.OrderedDict((k, v.to(torch.float16)) for k, v in layer.items())
    return params


# ----------------------------------------------------------------------------- the model

class OmniQuantModel(ReferenceModel):
    """hf_reference's forward with OmniQuant's parameters folded and its quantizers."""

    def apply(self, params, w_bits, a_bits, group):
        self.a_bits = a_bits
        self.norm_bias = {}
        for i in range(self.n_layers):
            p = {k: v.float() for k, v in params[i].items()}
            prefix = f"{self.prefix}.layers.{i}."
            if "qkv_smooth_scale" in p:
                self._fold_let(prefix, p)
            if w_bits < 16:
                for name in linear_names(self.family):
                    up = p.get(f"{name}.weight_quantizer.upbound_factor")
                    low = p.get(f"{name}.weight_quantizer.lowbound_factor")
                    self.weights[prefix + name] = quant_weight(self.weights[prefix + name], w_bits, group, up, low)

    def _expand(self, per_kv_channel):
        """kv_width entries -> hidden entries: query head h takes kv head h // (heads / kv_heads)."""
        rep = self.n_heads // self.n_kv
        return per_kv_channel.view(self.n_kv, self.head_dim).repeat_interleave(rep, dim=0).reshape(-1)

    def _fold_let(self, prefix, p):
        for key in [k for k in p if k.endswith("smooth_scale")]:
            s = p[key]
            small = s.abs() < 1e-2
            p[key] = torch.where(small, s.sign() * 1e-2, s)
        if self.family == "opt":
            attn_norm, mlp_norm = prefix + "self_attn_layer_norm", prefix + "final_layer_norm"
            mlp_readers, o_name = ["fc1"], "self_attn.out_proj"
        else:
            attn_norm, mlp_norm = prefix + "input_layernorm", prefix + "post_attention_layernorm"
            mlp_readers, o_name = ["mlp.up_proj", "mlp.gate_proj"], "self_attn.o_proj"
        self._ln_fcs(attn_norm, [prefix + "self_attn." + n for n in ("q_proj", "k_proj", "v_proj")],
                     p["qkv_smooth_scale"], p["qkv_smooth_shift"])
        self._ln_fcs(mlp_norm, [prefix + n for n in mlp_readers], p["fc1_smooth_scale"], p["fc1_smooth_shift"])
        # v_proj -> o_proj
        v, o = prefix + "self_attn.v_proj", prefix + o_name
        s, shift = p["out_smooth_scale"], p["out_smooth_shift"]
        vb = self.biases[v] if self.biases[v] is not None else torch.zeros(self.weights[v].shape[0])
        self.biases[v] = (vb - shift) / s
        self.weights[v] = self.weights[v] / s.view(-1, 1)
        s_q, shift_q = self._expand(s), self._expand(shift)
        ob = self.biases[o] if self.biases[o] is not None else torch.zeros(self.weights[o].shape[0])
        self.biases[o] = ob + self.weights[o] @ shift_q
        self.weights[o] = self.weights[o] * s_q.view(1, -1)
        # q / k
        q, k = prefix + "self_attn.q_proj", prefix + "self_attn.k_proj"
        t = p["qkt_smooth_scale"]
        self.weights[q] = self.weights[q] / self._expand(t).view(-1, 1)
        self.biases[q] = self.biases[q] / self._expand(t)
        self.weights[k] = self.weights[k] * t.view(-1, 1)
        self.biases[k] = self.biases[k] * t

    def _ln_fcs(self, norm, fcs, s, shift):
        if self.family == "opt":
            self.state[norm + ".bias"] = (self.state[norm + ".bias"] - shift) / s
        elif bool((shift != 0).any()):
            raise ValueError("LLaMA's RMSNorm has no bias: its shifts must be 0")
        self.state[norm + ".weight"] = self.state[norm + ".weight"] / s
        for fc in fcs:
            b = self.biases[fc] if self.biases[fc] is not None else torch.zeros(self.weights[fc].shape[0])
            self.biases[fc] = b + self.weights[fc] @ shift
            self.weights[fc] = self.weights[fc] * s.view(1, -1)

    # -- forward pieces
    def linear(self, name, x):
        if self.a_bits < 16:
            x = quant_rows(x, self.a_bits)
        return F.linear(x, self.weights[name], self.biases[name])

    def quant_act(self, x):
        return quant_rows(x, self.a_bits) if self.a_bits < 16 else x

    def _forward_opt(self, ids):
        B, T = ids.shape
        h = self.embed[ids]
        h = h + self.pos_embed[torch.arange(T) + 2][None]
        scaling = self.head_dim ** -0.5
        for i in range(self.n_layers):
            p = f"{self.prefix}.layers.{i}"
            residual = h
            x = self.layer_norm(h, f"{p}.self_attn_layer_norm")
            q = self.quant_act(self.linear(f"{p}.self_attn.q_proj", x) * scaling)  # per token, all heads
            k = self.quant_act(self.linear(f"{p}.self_attn.k_proj", x))
            v = self.quant_act(self.linear(f"{p}.self_attn.v_proj", x))
            a = self.causal_attention(self._split_heads(q, self.n_heads), self._split_heads(k, self.n_heads),
                                      self._split_heads(v, self.n_heads), None)
            h = residual + self.linear(f"{p}.self_attn.out_proj", self._merge_heads(a))
            residual = h
            x = self.layer_norm(h, f"{p}.final_layer_norm")
            h = residual + self.linear(f"{p}.fc2", F.relu(self.linear(f"{p}.fc1", x)))
        h = self.layer_norm(h, f"{self.prefix}.final_layer_norm")
        return F.linear(h, self.lm_head)

    def _forward_llama(self, ids):
        B, T = ids.shape
        h = self.embed[ids]
        freqs = torch.arange(T, dtype=self.dtype)[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        n_rep = self.n_heads // self.n_kv
        for i in range(self.n_layers):
            p = f"model.layers.{i}"
            residual = h
            x = self.rms_norm(h, self._get(f"{p}.input_layernorm.weight"))
            q = self._split_heads(self.linear(f"{p}.self_attn.q_proj", x), self.n_heads)
            k = self._split_heads(self.linear(f"{p}.self_attn.k_proj", x), self.n_kv)
            v = self._split_heads(self.linear(f"{p}.self_attn.v_proj", x), self.n_kv)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = k.repeat_interleave(n_rep, dim=1)
            v = v.repeat_interleave(n_rep, dim=1)
            q, k, v = self.quant_act(q), self.quant_act(k), self.quant_act(v)  # per head and token (rows of head_dim)
            a = self.causal_attention(q, k, v, 1.0 / math.sqrt(self.head_dim))
            h = residual + self.linear(f"{p}.self_attn.o_proj", self._merge_heads(a))
            residual = h
            x = self.rms_norm(h, self._get(f"{p}.post_attention_layernorm.weight"))
            gate = self.linear(f"{p}.mlp.gate_proj", x)
            up = self.linear(f"{p}.mlp.up_proj", x)
            h = residual + self.linear(f"{p}.mlp.down_proj", F.silu(gate) * up)
        h = self.rms_norm(h, self._get("model.norm.weight"))
        return F.linear(h, self.lm_head)


class _RunsACommand:
    """Unpickling this calls os.system (what a hostile omni_parameters.pth could do)."""

    def __reduce__(self):
        return (os.system, ("true",))


def write_malicious(path):
    """OmniQuant's layout with one value whose unpickling would run a command (for test_omniquant)."""
    torch.save({0: collections.OrderedDict([("qkv_smooth_scale", _RunsACommand())])}, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("CQ_SHARED", "/work/shared"))
    ap.add_argument("--models", default="tinyopt,stories260k")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--malicious", metavar="FILE", help="only write a hostile parameter file to FILE")
    ap.add_argument("--write-fixtures", metavar="DIR",
                    help="only write the parameter files (deterministic: the goldens were computed from them) to DIR")
    args = ap.parse_args()
    if args.malicious:
        write_malicious(args.malicious)
        return
    if args.write_fixtures:
        os.makedirs(args.write_fixtures, exist_ok=True)
        for seed, name in enumerate(args.models.split(",")):
            probe = OmniQuantModel.from_dir(os.path.join(args.shared, "models", name))
            for suffix, params in {"": make_parameters(probe, True, None, 100 + seed),
                                   "_g128": make_parameters(probe, False, 128, 200 + seed)}.items():
                path = os.path.join(args.write_fixtures, f"{name}{suffix}.pth")
                torch.save(params, path + ".tmp")
                os.replace(path + ".tmp", path)
        return
    torch.set_num_threads(args.threads)
    os.makedirs(FIXTURES, exist_ok=True)
    os.makedirs(GOLDEN, exist_ok=True)
    for seed, name in enumerate(args.models.split(",")):
        model_dir = os.path.join(args.shared, "models", name)
        sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
        with open(os.path.join(args.shared, EVAL_TEXT), encoding="utf-8") as f:
            tokens = [1] + sp.encode(f.read())
        probe = OmniQuantModel.from_dir(model_dir)
        files = {"": make_parameters(probe, True, None, 100 + seed),
                 "_g128": make_parameters(probe, False, 128, 200 + seed)}
        for suffix, params in files.items():
            path = os.path.join(FIXTURES, f"{name}{suffix}.pth")
            torch.save(params, path + ".tmp")
            os.replace(path + ".tmp", path)
        out = {"eval": {"text": EVAL_TEXT, "seqlen": EVAL_SEQLEN}, "settings": {}}
        for setting, (w_bits, a_bits, group, suffix) in SETTINGS.items():
            params = torch.load(os.path.join(FIXTURES, f"{name}{suffix}.pth"))
            model = OmniQuantModel.from_dir(model_dir)
            model.apply(params, w_bits, a_bits, group)
            ppl = perplexity(model, tokens, EVAL_SEQLEN)["ppl"]
            out["settings"][setting] = {"file": f"{name}{suffix}.pth", "wbits": w_bits,
                                        "abits": a_bits, "group_size": group, "ppl": ppl}
            print(f"{name} {setting}: ppl {ppl:.4f}", flush=True)
        fp = OmniQuantModel.from_dir(model_dir)
        fp.a_bits = 16
        out["fp32_ppl"] = perplexity(fp, tokens, EVAL_SEQLEN)["ppl"]
        print(f"{name} fp32: ppl {out['fp32_ppl']:.4f}", flush=True)
        path = os.path.join(GOLDEN, f"{name}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(out, f, indent=1)
        os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
