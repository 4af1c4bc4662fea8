"""Plain-PyTorch forward passes of Mistral, Qwen2, Phi-3 and Gemma (v1) checkpoints.

Written from the architectures' definitions as Hugging Face transformers implements them
(modeling_mistral.py, modeling_qwen2.py, modeling_phi3.py, modeling_gemma.py and
masking_utils.py), independently of the C++ code; no `transformers` import. What differs
from LLaMA, spelled out:

- Mistral: sliding-window attention. transformers' mask is causal AND
  `kv_idx > q_idx - sliding_window`: the query at position i sees positions i-W+1 .. i
  (W keys, itself included). `sliding_window` absent -> 4096 (MistralConfig's default),
  null -> full causal attention.
- Qwen2: q_proj, k_proj, v_proj carry biases (o_proj and the MLP do not); rope_theta from
  config; tie_word_embeddings (the 0.5B/1.5B models) makes lm_head the embedding.
- Phi-3: qkv_proj's output split as [q | k | v] (num_heads*head_dim, then
  num_key_value_heads*head_dim twice); gate_up_proj's output chunked in two, gate first:
  down(up * silu(gate)); the mask uses `sliding_window` when the config gives one.
- Gemma: embeddings * sqrt(hidden_size) (a tensor of the compute dtype); RMSNorm
  x * rsqrt(mean(x^2) + eps) * (1 + w) in float32; MLP down(gelu_tanh(gate(x)) * up(x));
  head_dim from config; lm_head = the embedding.

    model = FamilyModel.from_dir(dir, dtype=torch.float64)
    logits = model.forward(ids)            # ids (B, T)

`python3 families_reference.py` runs self-checks of the mask (W keys per query) and of the
tanh GELU against torch's own.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_checkpoint import load_model  # noqa: E402

FAMILIES = ("mistral", "qwen2", "phi3", "gemma")


def sliding_window_mask(T, window):
    """(T, T) bool, True where query i may attend key j: j <= i, and j > i - window if window."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = j <= i
    if window:
        allowed = allowed & (j > i - window)
    return allowed


def gelu_tanh(x):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), PyTorch's gelu(approximate='tanh')."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class FamilyModel:
    def __init__(self, config, state, dtype=torch.float32):
        self.c = config
        self.family = config["model_type"]
        if self.family not in FAMILIES:
            raise ValueError(f"model_type {self.family} is not one of {FAMILIES}")
        self.s = state
        self.dtype = dtype
        c = config
        self.hidden = c["hidden_size"]
        self.n_heads = c["num_attention_heads"]
        self.n_kv = c.get("num_key_value_heads") or self.n_heads
        default_head_dim = 256 if self.family == "gemma" else self.hidden // self.n_heads
        self.head_dim = c.get("head_dim") or default_head_dim
        self.eps = c.get("rms_norm_eps", 1e-6)
        if self.family == "mistral":
            self.window = c["sliding_window"] if "sliding_window" in c else 4096
        elif self.family == "phi3":
            self.window = c.get("sliding_window")
        else:
            if c.get("use_sliding_window", False):
                raise ValueError("Qwen2 use_sliding_window is not modelled")
            self.window = None
        if c.get("rope_scaling"):
            raise ValueError("rope_scaling is not modelled here")
        tie_default = self.family == "gemma"
        self.tied = c.get("tie_word_embeddings", tie_default)
        base = float(c.get("rope_theta", 10000.0))
        # transformers: 1 / base ** (arange(0, d, 2, int64).float() / d), here in the compute dtype.
        exps = torch.arange(0, self.head_dim, 2, dtype=torch.int64).to(dtype) / self.head_dim
        self.inv_freq = 1.0 / (base ** exps)

    @classmethod
    def from_dir(cls, model_dir, dtype=torch.float32):
        config, state = load_model(model_dir, dtype)
        return cls(config, state, dtype)

    def w(self, name):
        return self.s[name]

    def linear(self, x, name, bias=False):
        return F.linear(x, self.s[name + ".weight"], self.s[name + ".bias"] if bias else None)

    def rms_norm(self, x, name):
        variance = x.pow(2).mean(-1, keepdim=True)
        h = x * torch.rsqrt(variance + self.eps)
        weight = self.s[name + ".weight"]
        if self.family == "gemma":
            return h * (1.0 + weight)
        return weight * h

    def attention(self, x, p, positions):
        B, T, _ = x.shape
        qw, kw = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        if self.family == "phi3":
            qkv = self.linear(x, p + "self_attn.qkv_proj")
            q, k, v = qkv[..., :qw], qkv[..., qw:qw + kw], qkv[..., qw + kw:]
        else:
            bias = self.family == "qwen2" or (self.family == "gemma" and self.c.get("attention_bias", False))
            q = self.linear(x, p + "self_attn.q_proj", bias)
            k = self.linear(x, p + "self_attn.k_proj", bias)
            v = self.linear(x, p + "self_attn.v_proj", bias)
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        freqs = positions.to(self.dtype)[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.n_heads // self.n_kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~sliding_window_mask(T, self.window), float("-inf"))
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        out = out.transpose(1, 2).reshape(B, T, qw)
        gemma_bias = self.family == "gemma" and self.c.get("attention_bias", False)
        return self.linear(out, p + "self_attn.o_proj", gemma_bias)

    def mlp(self, x, p):
        if self.family == "phi3":
            gate, up = self.linear(x, p + "mlp.gate_up_proj").chunk(2, dim=-1)
        else:
            gate, up = self.linear(x, p + "mlp.gate_proj"), self.linear(x, p + "mlp.up_proj")
        act = gelu_tanh(gate) if self.family == "gemma" else F.silu(gate)
        return self.linear(act * up, p + "mlp.down_proj")

    def forward(self, ids):
        ids = torch.as_tensor(ids, dtype=torch.long)
        if ids.dim() == 1:
            ids = ids[None]
        with torch.no_grad():
            embed = self.w("model.embed_tokens.weight")
            h = embed[ids]
            if self.family == "gemma":
                h = h * torch.tensor(self.hidden ** 0.5, dtype=h.dtype)
            positions = torch.arange(ids.shape[1])
            for i in range(self.c["num_hidden_layers"]):
                p = f"model.layers.{i}."
                h = h + self.attention(self.rms_norm(h, p + "input_layernorm"), p, positions)
                h = h + self.mlp(self.rms_norm(h, p + "post_attention_layernorm"), p)
            h = self.rms_norm(h, "model.norm")
            head = embed if self.tied else self.w("lm_head.weight")
            return F.linear(h, head)


def self_check():
    m = sliding_window_mask(6, 3)
    assert m.sum(dim=1).tolist() == [1, 2, 3, 3, 3, 3], m
    assert m[5].tolist() == [False, False, False, True, True, True]
    assert sliding_window_mask(4, None).sum().item() == 10
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    assert torch.allclose(gelu_tanh(x), F.gelu(x, approximate="tanh"), atol=1e-12) \
        if "approximate" in F.gelu.__doc__ else True
    print("families_reference self-checks passed")


if __name__ == "__main__":
    self_check()
