"""GPTQ (Frantar et al. 2022, arXiv 2210.17323) written from the paper's definition, in float64,
on the plain-PyTorch forward pass of hf_reference.py / baselines_reference.py (never from the
C++ code). Writes tests/golden/gptq/<model>.json.

Per linear layer, with X its calibration inputs (n rows):
  H = 2/n · XᵀX; dead columns (H_jj = 0): H_jj = 1 and W[:, j] = 0;
  act-order: columns permuted by H_jj descending (stable: ties keep index order);
  H += λI with λ = damp · mean diag(H); U = upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU);
  for each column k in order (no lazy batching: every update is applied at once):
      q_k = Q(w_k) on the column's grid; e = (w_k − q_k) / U_kk; W[:, k+1:] −= e ⊗ U[k, k+1:];
  loss = Σ (w_k − q_k)² / U_kk² / 2.
Grids are the project's weight quantizers (SPEC.md): per-channel Δ = max|w_row| / qmax from the
original row (before dead columns are zeroed), qmax = 2^(b−1) − 1, codes round-half-even in
[−qmax, qmax]; group-wise (g consecutive input channels, remainder last) symmetric likewise, or
asymmetric: scale = max(max − min, 1e-5) / (2^b − 1), zero = clamp(round(−min/scale), 0, 2^b − 1),
code = clamp(round(w/scale) + zero, 0, 2^b − 1), value (code − zero)·scale. A group's grid comes
from the weights as updated when the group's first column is reached; with act-order from the
original weights (after dead-column zeroing), groups staying contiguous in the original order.
Sequential: block l's calibration inputs are the outputs of the already-quantized blocks < l; all
of block l's Hessians come from one pass with its unquantized weights (activations unquantized);
then its linears are quantized and the block is run again, quantized, for block l+1.

Usage: /usr/bin/python3 tests/reference/gptq_reference.py [--shared DIR] [--models tinyopt,stories260k]
       [--dump-codes DIR]  (also write every linear's full code matrix, for comparisons by hand)
"""
import argparse
import json
import os
import sys
import time

import torch
import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_reference import ReferenceModel, QuantSpec, perplexity, window_tokens  # noqa: E402
from baselines_reference import Blocks, CALIB_TEXT, EVAL_TEXT, CALIB_SAMPLES, CALIB_SEQLEN, EVAL_SEQLEN, \
    sha256_file, write_golden  # noqa: E402

GOLDEN_ROWS = 4  # codes of the first rows of every linear go into the golden file

# name -> (bits, group size or None, asymmetric, act-order, dampening)
SETTINGS = {
    "w4_per_channel": (4, None, False, False, 0.01),
    "w4_g32_asym": (4, 32, True, False, 0.01),
    "w3_per_channel_act_order_damp0.05": (3, None, False, True, 0.05),
    "w4_g32_act_order": (4, 32, False, True, 0.01),
}


def grid(w, bits, asym):
    """Scale and zero point per row of w (rows x length), as the project's quantizers define them."""
    if asym:
        max_code = 2 ** bits - 1
        lo, hi = w.amin(dim=1), w.amax(dim=1)
        scale = (hi - lo).clamp(min=torch.tensor(1e-5, dtype=torch.float32).item()) / max_code
        scale = scale.float().double()  # the project keeps scales in float32
        zero = torch.clamp(torch.round(-lo / scale), 0, max_code)
        return scale, zero
    qmax = 2 ** (bits - 1) - 1
    scale = (w.abs().amax(dim=1) / qmax).float().double()
    scale[scale == 0] = 1.0
    return scale, torch.zeros_like(scale)


def round_to_grid(w, scale, zero, bits, asym):
    if asym:
        code = torch.clamp(torch.round(w / scale) + zero, 0, 2 ** bits - 1)
    else:
        qmax = 2 ** (bits - 1) - 1
        code = torch.clamp(torch.round(w / scale), -qmax, qmax)
    return code, (code - zero) * scale


def gptq(W0, H, bits, group, asym, act_order, damp):
    W = W0.double().clone()
    H = H.clone()
    rows, cols = W.shape
    if group is None:
        row_scale, row_zero = grid(W, bits, asym)  # from the original weights
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    g = group or cols
    n_groups = (cols + g - 1) // g
    scales = torch.zeros(rows, n_groups, dtype=torch.float64)
    zeros = torch.zeros(rows, n_groups, dtype=torch.float64)
    if group is not None and act_order:
        for s in range(n_groups):
            scales[:, s], zeros[:, s] = grid(W[:, s * g:(s + 1) * g], bits, asym)
    perm = torch.argsort(torch.diag(H), descending=True, stable=True) if act_order else torch.arange(cols)
    W = W[:, perm]
    H = H[perm][:, perm]
    H[range(cols), range(cols)] += damp * torch.mean(torch.diag(H))
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    codes = torch.zeros(rows, cols, dtype=torch.float64)
    values = torch.zeros(rows, cols, dtype=torch.float64)
    loss = 0.0
    for k in range(cols):
        j = int(perm[k])
        if group is None:
            scale, zero = row_scale, row_zero
        else:
            s = j // g
            if not act_order and j % g == 0:
                scales[:, s], zeros[:, s] = grid(W[:, k:k + g], bits, asym)
            scale, zero = scales[:, s], zeros[:, s]
        code, q = round_to_grid(W[:, k], scale, zero, bits, asym)
        codes[:, j], values[:, j] = code, q
        e = (W[:, k] - q) / U[k, k]
        loss += float(((W[:, k] - q) ** 2).sum() / U[k, k] ** 2 / 2)
        W[:, k + 1:] -= e[:, None] * U[k, k + 1:][None, :]
    grid_out = {"row_scales": row_scale.tolist()} if group is None else {"group_scales": scales.tolist()}
    if asym:
        grid_out["group_zeros"] = zeros.tolist()
    return codes, values, loss, grid_out


def quantize_model(model, windows, setting):
    bits, group, asym, act_order, damp = setting
    blocks = Blocks(model)
    h = blocks.embed(windows)
    out = {}
    for i in range(model.n_layers):
        rec = {}
        blocks.block(i, h, rec)  # Hessian pass, unquantized block
        for name, xs in rec.items():
            X = torch.cat(xs, 0).double()
            H = 2.0 / X.shape[0] * X.t() @ X
            codes, values, loss, g = gptq(model.weights[name], H, bits, group, asym, act_order, damp)
            model.weights[name] = values.float()
            out[name] = {"codes": codes, "loss": loss, "grid": g}
        h = blocks.block(i, h)  # the quantized block feeds the next
    return out


def run_model(shared, name, out_dir, dump_dir):
    t0 = time.time()
    model_dir = os.path.join(shared, "models", name)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
    read = lambda rel: open(os.path.join(shared, rel), encoding="utf-8").read()
    calib_tokens = [1] + sp.encode(read(CALIB_TEXT))
    eval_tokens = [1] + sp.encode(read(EVAL_TEXT))
    windows = window_tokens(calib_tokens, CALIB_SEQLEN)[:CALIB_SAMPLES]
    out = {"generator": "tests/reference/gptq_reference.py (plain PyTorch, float64, from the paper's definition)",
           "model": f"models/{name}", "model_sha256": sha256_file(os.path.join(model_dir, "model.safetensors")),
           "calibration": {"text": CALIB_TEXT, "samples": CALIB_SAMPLES, "seqlen": CALIB_SEQLEN},
           "eval": {"text": EVAL_TEXT, "seqlen": EVAL_SEQLEN}, "golden_rows": GOLDEN_ROWS, "settings": {}}
    for key, setting in SETTINGS.items():
        m = ReferenceModel.from_dir(model_dir, torch.float32)
        layers = quantize_model(m, windows, setting)
        entry = {"bits": setting[0], "group_size": setting[1], "asymmetric": setting[2], "act_order": setting[3],
                 "dampening": setting[4], "linears": {}}
        for lname, r in layers.items():
            codes = r["codes"]
            entry["linears"][lname] = {
                "loss": r["loss"], "shape": list(codes.shape),
                "code_sum": int(codes.sum()), "abs_code_sum": int(codes.abs().sum()),
                "first_rows": [" ".join(str(int(c)) for c in row) for row in codes[:GOLDEN_ROWS]]}
            if dump_dir:
                os.makedirs(dump_dir, exist_ok=True)
                torch.save(codes.to(torch.int16), os.path.join(dump_dir, f"{name}.{key}.{lname}.pt"))
        ppl = {}
        for label, a_bits, a_method in (("a16", None, "per_token"), ("a8_per_token", 8, "per_token"),
                                        ("a8_crossquant_a0.15", 8, "crossquant")):
            m.quant = QuantSpec(a_bits=a_bits, a_method=a_method, alpha=0.15)
            ppl[label] = perplexity(m, eval_tokens, EVAL_SEQLEN)["ppl"]
        entry["ppl"] = ppl
        out["settings"][key] = entry
        print(name, key, json.dumps(ppl), f"{time.time() - t0:.1f}s", flush=True)
    out["seconds"] = time.time() - t0
    write_golden(os.path.join(out_dir, f"{name}.json"), out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("CQ_SHARED", "/work/shared"))
    ap.add_argument("--models", default="tinyopt,stories260k")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "gptq"))
    ap.add_argument("--dump-codes", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    for name in args.models.split(","):
        run_model(args.shared, name, args.out, args.dump_codes)


if __name__ == "__main__":
    main()
