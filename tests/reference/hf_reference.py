"""Plain-PyTorch forward passes of HF OPT and LLaMA checkpoints, with optional fake quantization.

Written from the Hugging Face modeling code's semantics (modeling_opt.py / modeling_llama.py,
transformers 4.40-4.46) and from /work/shared/docs/SPEC.md, independently of the C++ code.
No `transformers` import: every operation is spelled out below.

    model = ReferenceModel.from_dir(dir, dtype=torch.float32, quant=QuantSpec(...))
    logits = model.forward(ids)                    # ids: LongTensor (B, T), equal lengths
    result = perplexity(model, tokens, seqlen=256) # GPTQ protocol (SPEC.md)
    tokens = greedy(model, prompt_ids, 64)

Quantization (SPEC.md): weights of every decoder linear layer quantized once at load
(per-channel or group-wise symmetric); the input X (T x I, the tokens of ONE sequence) of
every decoder linear layer quantized on the fly (per-token or CrossQuant). The embedding,
the OPT projections project_in/project_out and lm_head stay unquantized.

Run `python3 hf_reference.py` for the self-checks (SPEC's Figure 3 example, alpha=1 ==
per-token, all-zero rows/columns).
"""
import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F

from hf_checkpoint import load_model


# ----------------------------------------------------------------------------- quantizers

def qmax_of(bits):
    return 2 ** (bits - 1) - 1


def _safe_codes(x, *scales):
    """round(x / s1 / s2 ...) with code 0 wherever a scale is 0 (all-zero row/column).

    Dividing in the given order is what the paper's code does (x.div_(scale_t).div_(scale_c)).
    A zero scale only happens when every element it covers is 0, so the code is 0 there.
    """
    q = x
    zero = torch.zeros_like(x, dtype=torch.bool)
    for s in scales:
        q = q.div(s)
        zero = zero | (s == 0)
    q = q.round()  # round half to even, like torch.round everywhere
    return q.masked_fill(zero, 0.0)


def quantize_per_token(x, bits):
    """Eq. 1: Δ_i = t_i / qmax, t_i = max_j |X_ij| over the last dim. Returns (fake, codes)."""
    scale = x.abs().amax(dim=-1, keepdim=True) / qmax_of(bits)
    codes = _safe_codes(x, scale)
    return codes * scale, codes


def quantize_per_tensor(x, bits, absmax=None):
    """SmoothQuant's per-tensor option: one Δ = max|X| / qmax per sequence (the last two dims:
    one window's T x C matrix), or, static, Δ = absmax / qmax from calibration with the codes
    clipped to ±qmax. Returns (fake, codes)."""
    qmax = qmax_of(bits)
    if absmax is None:
        scale = x.abs().amax(dim=(-2, -1), keepdim=True) / qmax
    else:
        scale = torch.full((1,) * x.dim(), absmax, dtype=x.dtype) / qmax
    codes = _safe_codes(x, scale).clamp(-qmax, qmax)
    return codes * scale, codes


def quantize_crossquant(x, bits, alpha):
    """Eq. 5 with the paper's code (dim=-2 fixed): scale_t = t^α / qmax per row,
    scale_c = c^(1-α) per column, c over the rows (dim -2) of this matrix only."""
    a = x.abs()
    scale_t = a.amax(dim=-1, keepdim=True).pow(alpha).div(qmax_of(bits))
    scale_c = a.amax(dim=-2, keepdim=True).pow(1.0 - alpha)
    codes = _safe_codes(x, scale_t, scale_c)
    return codes.mul(scale_c).mul(scale_t), codes


def quantize_weight(w, bits, group=None, crossquant_alpha=None):
    """Per-output-channel (eq. 2) or group-wise symmetric fake quantization of W (O x I).

    group=g: each row cut into groups of g consecutive input channels, the last group the
    shorter remainder when I % g != 0. crossquant_alpha: CrossQuant on W (rows = output
    channels, columns = input channels), not used by the goldens.
    """
    if crossquant_alpha is not None:
        return quantize_crossquant(w, bits, crossquant_alpha)[0]
    if group is None or group >= w.shape[1]:
        return quantize_per_token(w, bits)[0]
    pieces = [quantize_per_token(w[:, s:s + group], bits)[0] for s in range(0, w.shape[1], group)]
    return torch.cat(pieces, dim=1)


@dataclass
class QuantSpec:
    """What to quantize. w_bits=None: weights stay full precision; a_bits=None: activations do."""
    w_bits: Optional[int] = None
    w_group: Optional[int] = None          # None = per-channel
    w_crossquant_alpha: Optional[float] = None
    a_bits: Optional[int] = None
    a_method: str = "per_token"            # "per_token" | "crossquant" | "per_tensor"
    alpha: float = 0.15
    static_absmax: Optional[dict] = None   # per_tensor: linear name -> calibrated max|X| (static Δ)

    def describe(self):
        w = "W16" if self.w_bits is None else f"W{self.w_bits}" + (f"-g{self.w_group}" if self.w_group else "")
        a = "A16" if self.a_bits is None else f"A{self.a_bits}"
        m = "" if self.a_bits is None else (" per-token" if self.a_method == "per_token" else f" CrossQuant a={self.alpha}")
        return w + a + m


@dataclass
class KernelStats:
    """Per linear layer (its input): elements, kernel (code 0), exact zeros, c_j >= t_i share."""
    layers: dict = field(default_factory=dict)

    def add(self, name, codes, x, c_ge_t):
        entry = self.layers.setdefault(name, [0, 0, 0, 0])
        entry[0] += codes.numel()
        entry[1] += int((codes == 0).sum())
        entry[2] += int((x == 0).sum())
        entry[3] += c_ge_t

    def summary(self):
        total = [sum(v[i] for v in self.layers.values()) for i in range(4)]
        return {
            "elements": total[0],
            "kernel": total[1],
            "exact_zeros": total[2],
            "kernel_proportion": total[1] / total[0] if total[0] else 0.0,
            "share_c_ge_t": total[3] / total[0] if total[0] else 0.0,
            "per_layer": {k: {"elements": v[0], "kernel": v[1], "exact_zeros": v[2],
                              "kernel_proportion": v[1] / v[0]} for k, v in self.layers.items()},
        }


# ----------------------------------------------------------------------------- model

def _strip_prefix(state, family):
    """Accepts both "model.decoder.x" and bare "decoder.x" (old OPT checkpoints) names."""
    out = {}
    for k, v in state.items():
        if family == "opt" and k.startswith("decoder."):
            k = "model." + k
        out[k] = v
    return out


def rope_inv_freq(config, head_dim, dtype):
    """HF `_compute_default_rope_parameters` (+ linear / llama3 scaling), in `dtype`.

    For float32 this is HF's own arithmetic: base ** (arange(0, d, 2).float() / d).
    """
    base = float(config.get("rope_theta", 10000.0))
    exps = torch.arange(0, head_dim, 2, dtype=torch.int64).to(dtype) / head_dim
    inv_freq = 1.0 / (base ** exps)
    scaling = config.get("rope_scaling") or None
    if scaling is None:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv_freq
    if kind == "linear":
        return inv_freq / scaling["factor"]
    if kind != "llama3":
        raise ValueError(f"rope_scaling type {kind} not supported by the reference")
    # HF _compute_llama3_parameters, line by line.
    factor = scaling["factor"]
    low_freq_factor = scaling["low_freq_factor"]
    high_freq_factor = scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class ReferenceModel:
    def __init__(self, config, state, dtype=torch.float32, quant: Optional[QuantSpec] = None):
        self.config = config
        self.family = config["model_type"]
        if self.family not in ("opt", "llama"):
            raise ValueError(f"model_type {self.family} not supported")
        self.dtype = dtype
        self.state = _strip_prefix(state, self.family)
        self.quant = quant or QuantSpec()
        self.stats = KernelStats()
        self.weights = {}
        self.biases = {}
        self._setup()

    @classmethod
    def from_dir(cls, model_dir, dtype=torch.float32, quant=None):
        config, state = load_model(model_dir, dtype)
        return cls(config, state, dtype, quant)

    # -- parameters
    def _get(self, name, required=True):
        t = self.state.get(name)
        if t is None and required:
            raise KeyError(f"tensor {name} missing from the checkpoint")
        return t

    def _linear_param(self, prefix, has_bias):
        """Registers a decoder linear layer: weight quantized once here."""
        w = self._get(prefix + ".weight")
        q = self.quant
        if q.w_bits is not None:
            w = quantize_weight(w, q.w_bits, q.w_group, q.w_crossquant_alpha)
        self.weights[prefix] = w
        self.biases[prefix] = self._get(prefix + ".bias") if has_bias else None

    def _setup(self):
        c = self.config
        self.hidden = c["hidden_size"]
        self.n_layers = c["num_hidden_layers"]
        self.n_heads = c["num_attention_heads"]
        if self.family == "opt":
            self.prefix = "model.decoder"
            self.head_dim = self.hidden // self.n_heads
            self.n_kv = self.n_heads
            self.pre_ln = c.get("do_layer_norm_before", True)
            self.bias = c.get("enable_bias", True)
            self.ln_affine = c.get("layer_norm_elementwise_affine", True)
            self.proj_dim = c.get("word_embed_proj_dim", self.hidden)
            self.has_final_ln = self.pre_ln and not c.get("_remove_final_layer_norm", False)
            act = c.get("activation_function", "relu")
            self.act = {"relu": F.relu, "gelu": F.gelu}[act]
            self.embed = self._get(self.prefix + ".embed_tokens.weight")
            self.pos_embed = self._get(self.prefix + ".embed_positions.weight")
            if self.proj_dim != self.hidden:
                self.project_in = self._get(self.prefix + ".project_in.weight")
                self.project_out = self._get(self.prefix + ".project_out.weight")
            else:
                self.project_in = self.project_out = None
            for i in range(self.n_layers):
                p = f"{self.prefix}.layers.{i}"
                for n in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                          "self_attn.out_proj", "fc1", "fc2"):
                    self._linear_param(f"{p}.{n}", self.bias)
        else:
            self.prefix = "model"
            self.head_dim = c.get("head_dim") or self.hidden // self.n_heads
            self.n_kv = c.get("num_key_value_heads") or self.n_heads
            self.eps = c.get("rms_norm_eps", 1e-6)
            if c.get("hidden_act", "silu") != "silu":
                raise ValueError("only silu LLaMA MLPs are supported")
            self.embed = self._get("model.embed_tokens.weight")
            attn_bias = c.get("attention_bias", False)
            mlp_bias = c.get("mlp_bias", False)
            for i in range(self.n_layers):
                p = f"model.layers.{i}"
                for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
                    self._linear_param(f"{p}.self_attn.{n}", attn_bias)
                for n in ("gate_proj", "up_proj", "down_proj"):
                    self._linear_param(f"{p}.mlp.{n}", mlp_bias)
            self.inv_freq = rope_inv_freq(c, self.head_dim, self.dtype)
        # lm_head: HF ties by making lm_head.weight the embedding (the embedding wins).
        tie = c.get("tie_word_embeddings", True if self.family == "opt" else False)
        if tie:
            self.lm_head = self.embed
        else:
            self.lm_head = self._get("lm_head.weight")

    # -- building blocks
    def linear(self, name, x):
        """A decoder linear layer: its input quantized per sequence, then X·Wᵀ + b."""
        q = self.quant
        if q.a_bits is not None:
            if q.a_method == "per_token":
                fake, codes = quantize_per_token(x, q.a_bits)
                c_ge_t = 0
            elif q.a_method == "per_tensor":
                fake, codes = quantize_per_tensor(x, q.a_bits, None if q.static_absmax is None else q.static_absmax[name])
                c_ge_t = 0
            elif q.a_method == "crossquant":
                fake, codes = quantize_crossquant(x, q.a_bits, q.alpha)
                a = x.abs()
                c_ge_t = int((a.amax(dim=-2, keepdim=True) >= a.amax(dim=-1, keepdim=True)).sum())
            else:
                raise ValueError(q.a_method)
            self.stats.add(name, codes, x, c_ge_t)
            x = fake
        return F.linear(x, self.weights[name], self.biases[name])

    def layer_norm(self, x, name):
        w = self._get(name + ".weight", required=self.ln_affine)
        b = self._get(name + ".bias", required=False)
        return F.layer_norm(x, (x.shape[-1],), w, b, eps=1e-5)

    def rms_norm(self, x, weight):
        # HF LlamaRMSNorm: variance in float32 (or wider), then weight * normalized.
        h = x.to(torch.float32) if x.dtype in (torch.float16, torch.bfloat16) else x
        variance = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(variance + self.eps)
        return weight * h.to(x.dtype)

    @staticmethod
    def causal_attention(q, k, v, scale):
        """q,k,v: (B, H, T, d). Softmax(q·kᵀ·scale + causal mask)·v. scale=None: q pre-scaled."""
        scores = torch.matmul(q, k.transpose(-1, -2))
        if scale is not None:
            scores = scores * scale
        T = q.shape[-2]
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        return torch.matmul(probs, v)

    # -- forward
    def forward(self, ids):
        ids = torch.as_tensor(ids, dtype=torch.long)
        if ids.dim() == 1:
            ids = ids[None]
        with torch.no_grad():
            return self._forward_opt(ids) if self.family == "opt" else self._forward_llama(ids)

    def _split_heads(self, x, n):
        B, T, _ = x.shape
        return x.view(B, T, n, self.head_dim).transpose(1, 2)

    def _merge_heads(self, x):
        B, H, T, d = x.shape
        return x.transpose(1, 2).reshape(B, T, H * d)

    def _forward_opt(self, ids):
        B, T = ids.shape
        h = self.embed[ids]
        if self.project_in is not None:
            h = F.linear(h, self.project_in)
        # positions = cumsum(mask) * mask - 1 (+ offset 2); unpadded: p + 2.
        positions = torch.arange(T) + 2
        h = h + self.pos_embed[positions][None]
        scaling = self.head_dim ** -0.5
        for i in range(self.n_layers):
            p = f"{self.prefix}.layers.{i}"
            residual = h
            if self.pre_ln:
                h = self.layer_norm(h, f"{p}.self_attn_layer_norm")
            q = self.linear(f"{p}.self_attn.q_proj", h) * scaling
            k = self.linear(f"{p}.self_attn.k_proj", h)
            v = self.linear(f"{p}.self_attn.v_proj", h)
            a = self.causal_attention(self._split_heads(q, self.n_heads), self._split_heads(k, self.n_heads),
                                      self._split_heads(v, self.n_heads), None)
            h = residual + self.linear(f"{p}.self_attn.out_proj", self._merge_heads(a))
            if not self.pre_ln:
                h = self.layer_norm(h, f"{p}.self_attn_layer_norm")
            residual = h
            if self.pre_ln:
                h = self.layer_norm(h, f"{p}.final_layer_norm")
            h = self.linear(f"{p}.fc2", self.act(self.linear(f"{p}.fc1", h)))
            h = residual + h
            if not self.pre_ln:
                h = self.layer_norm(h, f"{p}.final_layer_norm")
        if self.has_final_ln:
            h = self.layer_norm(h, f"{self.prefix}.final_layer_norm")
        if self.project_out is not None:
            h = F.linear(h, self.project_out)
        return F.linear(h, self.lm_head)

    def _forward_llama(self, ids):
        B, T = ids.shape
        h = self.embed[ids]
        positions = torch.arange(T, dtype=self.dtype)
        freqs = positions[:, None] * self.inv_freq[None, :]
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
            # repeat_kv: kv head j serves q heads j*n_rep ... j*n_rep + n_rep - 1
            k = k.repeat_interleave(n_rep, dim=1)
            v = v.repeat_interleave(n_rep, dim=1)
            a = self.causal_attention(q, k, v, 1.0 / math.sqrt(self.head_dim))
            h = residual + self.linear(f"{p}.self_attn.o_proj", self._merge_heads(a))
            residual = h
            x = self.rms_norm(h, self._get(f"{p}.post_attention_layernorm.weight"))
            gate = self.linear(f"{p}.mlp.gate_proj", x)
            up = self.linear(f"{p}.mlp.up_proj", x)
            h = residual + self.linear(f"{p}.mlp.down_proj", F.silu(gate) * up)
        h = self.rms_norm(h, self._get("model.norm.weight"))
        return F.linear(h, self.lm_head)


# ----------------------------------------------------------------------------- protocols

def window_tokens(tokens, seqlen):
    """Non-overlapping windows of seqlen tokens; the remainder is dropped (GPTQ protocol)."""
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    n = tokens.numel() // seqlen
    return tokens[: n * seqlen].view(n, seqlen)


def perplexity(model, tokens, seqlen, batch=8, max_windows=None):
    """exp(mean over windows of the window's mean NLL of tokens 1..seqlen-1). Resets stats."""
    windows = window_tokens(tokens, seqlen)
    if max_windows is not None:
        windows = windows[:max_windows]
    model.stats = KernelStats()
    nlls = []
    for s in range(0, windows.shape[0], batch):
        ids = windows[s:s + batch]
        logits = model.forward(ids)
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        nlls.extend(nll.mean(dim=-1).double().tolist())
    mean_nll = sum(nlls) / len(nlls)
    return {"windows": len(nlls), "window_nll": nlls, "mean_nll": mean_nll, "ppl": math.exp(mean_nll),
            "stats": model.stats.summary()}


def greedy(model, prompt_ids, new_tokens):
    """Greedy decoding (argmax, lowest index on ties), full recompute each step; no EOS stop."""
    ids = list(prompt_ids)
    for _ in range(new_tokens):
        logits = model.forward(torch.tensor([ids]))
        ids.append(int(torch.argmax(logits[0, -1])))
    return ids[len(prompt_ids):]


# ----------------------------------------------------------------------------- self-checks

def _selftest():
    x = torch.tensor([[0.09, 43.4, -0.1, 1.4, 1.2], [0.15, 58.7, 0.5, 0.07, 2.7],
                      [-0.2, 68.3, 1.1, 0.02, 3.2], [0.01, 54.8, 0.2, 0.5, 1.5]], dtype=torch.float64)
    _, pt = quantize_per_token(x, 8)
    assert pt.tolist() == [[0, 127, 0, 4, 4], [0, 127, 1, 0, 6], [0, 127, 2, 0, 6], [0, 127, 0, 1, 3]], pt
    _, cq = quantize_crossquant(x, 8, 0.15)
    assert cq.tolist() == [[26, 86, -7, 76, 32], [41, 112, 32, 4, 69], [-53, 127, 68, 1, 80],
                           [3, 105, 13, 26, 39]], cq
    g = torch.Generator().manual_seed(0)
    y = torch.randn(3, 7, 33, generator=g)
    y[:, 2] = 0
    y[:, :, 5] = 0
    for bits in (8, 4):
        f1, c1 = quantize_per_token(y, bits)
        f2, c2 = quantize_crossquant(y, bits, 1.0)
        assert torch.equal(c1, c2) and torch.equal(f1, f2)
        f3, c3 = quantize_crossquant(y, bits, 0.15)
        assert torch.isfinite(f3).all() and (c3[:, 2] == 0).all() and (c3[:, :, 5] == 0).all()
        assert c3.abs().max() <= qmax_of(bits)
    w = torch.randn(5, 172, generator=g)
    wq = quantize_weight(w, 4, 128)
    for blk in (slice(0, 128), slice(128, 172)):
        scale = w[:, blk].abs().amax(-1, keepdim=True) / 7
        assert torch.equal(wq[:, blk], (w[:, blk] / scale).round() * scale)
    # Per-tensor: one Δ per sequence (max |x| of that T x C matrix); static Δ clips the codes.
    _, pten = quantize_per_tensor(x, 8)
    assert pten.tolist() == [[0, 81, 0, 3, 2], [0, 109, 1, 0, 5], [0, 127, 2, 0, 6], [0, 102, 0, 1, 3]], pten
    _, pstat = quantize_per_tensor(x, 8, absmax=34.15)
    assert pstat[:, 1].tolist() == [127, 127, 127, 127] and pstat[0, 3].item() == 5, pstat
    f4, c4 = quantize_per_tensor(torch.stack([x, 2 * x]), 8)
    assert torch.equal(c4[0], c4[1]) and torch.equal(f4[1], 2 * f4[0])
    print("hf_reference self-checks passed")


if __name__ == "__main__":
    _selftest()
