#!/usr/bin/env python3
"""Independent PyTorch reference for the quantizers in src/quant/.

Written from /work/shared/docs/SPEC.md and the paper's appendix code (with its
`x.abs(dim=-2)` bug fixed as SPEC.md shows), not from the C++ code. Plain torch,
float32. It builds deterministic random matrices with planted outliers (a few columns
20-100x larger, all-zero rows and columns, scattered exact zeros), quantizes them with
every method, and writes tests/golden/quant/:

  manifest.json          every input and case: method, parameters, file names, counts
  inputs/<name>.f32      the input matrices (raw little-endian float32, row-major)
  outputs/<case>.f32     fake-quantized output (float32)
  outputs/<case>.codes   integer codes (int8; uint8 for asymmetric group-wise)
  outputs/<case>.row / .col   CrossQuant's scale_t (t^a/qmax) and scale_c (c^(1-a)),
                         as torch computed them (float32)

Run with Debian's python (it has torch):  /usr/bin/python3 tests/reference/quant_reference.py
"""
import json
import math
import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).resolve().parents[1] / "golden" / "quant"
SEED = 20241007
BITS = range(2, 9)
ALPHAS = (0.0, 0.15, 0.5, 1.0)


# ---------------------------------------------------------------- inputs
def planted_outliers(gen, rows, cols, base_scale, outlier_columns, zero_rows, zero_columns):
    """Gaussian values (row scales vary 0.5x..2x) with outlier columns 20-100x larger,
    all-zero rows and columns, and about 1% scattered exact zeros."""
    x = torch.randn(rows, cols, generator=gen) * base_scale
    x *= 0.5 + 1.5 * torch.rand(rows, 1, generator=gen)
    for column in outlier_columns:
        x[:, column] *= 20.0 + 80.0 * torch.rand(1, generator=gen).item()
    x[torch.rand(rows, cols, generator=gen) < 0.01] = 0.0
    x[zero_rows, :] = 0.0
    x[:, zero_columns] = 0.0
    return x.float().contiguous()


def make_inputs():
    gen = torch.Generator().manual_seed(SEED)
    inputs = {
        # Activations: T x I; 168 columns is not a multiple of 16, so SIMD tails are exercised.
        "act_a": planted_outliers(gen, 40, 168, 1.0, [3, 77, 150, 161], [5, 31], [10, 99]),
        # Calibration activations for static CrossQuant, slightly smaller than act_a so that
        # some of act_a's values exceed the calibrated c_j (those codes must clip).
        "calib": planted_outliers(gen, 64, 168, 0.8, [3, 77, 150, 161], [], [10]),
        # Weights: O x I (Hugging Face layout); W4A8-g128 style and the I = 172 remainder case.
        "w_a": planted_outliers(gen, 32, 256, 0.02, [17, 200], [7], [64]),
        "w_b": planted_outliers(gen, 40, 172, 0.02, [5, 171], [12], [100]),
        # SPEC.md's worked example (Figure 3).
        "fig3": torch.tensor([[0.09, 43.4, -0.1, 1.4, 1.2],
                              [0.15, 58.7, 0.5, 0.07, 2.7],
                              [-0.2, 68.3, 1.1, 0.02, 3.2],
                              [0.01, 54.8, 0.2, 0.5, 1.5]], dtype=torch.float32),
    }
    # The calibration maxima used by static CrossQuant.
    inputs["calib_column_absmax"] = inputs["calib"].abs().amax(dim=0, keepdim=True)
    return inputs


# ---------------------------------------------------------------- quantizers
def ones_where_zero(scale):
    """SPEC.md: all-zero rows/columns quantize to zeros, never NaN. Their elements are all 0,
    so any non-zero divisor works; 1 keeps 0/0 out."""
    return torch.where(scale == 0, torch.ones_like(scale), scale)


def per_token(x, bits):
    """Eq. 1: delta_i = t_i / qmax, Q = round(x / delta). On W's rows this is eq. 2."""
    q_max = 2 ** (bits - 1) - 1
    delta = ones_where_zero(x.abs().amax(dim=-1, keepdim=True) / q_max)
    codes = torch.round(x / delta)
    return codes * delta, codes, {"clipped": 0}


def per_tensor(x, bits):
    q_max = 2 ** (bits - 1) - 1
    delta = ones_where_zero(x.abs().amax() / q_max)
    codes = torch.round(x / delta)
    return codes * delta, codes, {"clipped": 0}


def crossquant(x, bits, alpha, static_column_absmax=None):
    """Eq. 5, computed as the appendix code does (bug fixed):
        scale_t = x.abs().max(dim=-1, keepdim=True)[0].pow(alpha).div_(q_max)
        scale_c = x.abs().max(dim=-2, keepdim=True)[0].pow(1 - alpha)
        x.div_(scale_t).div_(scale_c).round_().mul_(scale_c).mul_(scale_t)
    Static CrossQuant takes c from calibration; codes beyond qmax are then clamped."""
    q_max = 2 ** (bits - 1) - 1
    row_absmax = x.abs().max(dim=-1, keepdim=True)[0]
    column_absmax = (x.abs().max(dim=-2, keepdim=True)[0] if static_column_absmax is None
                     else static_column_absmax)
    scale_t = ones_where_zero(row_absmax.pow(alpha).div_(q_max))
    scale_c = ones_where_zero(column_absmax.pow(1 - alpha))
    raw_codes = x.div(scale_t).div_(scale_c).round_()
    clipped = int((raw_codes.abs() > q_max).sum())
    if static_column_absmax is None:
        assert clipped == 0, "dynamic CrossQuant never clips (SPEC.md)"
    codes = raw_codes.clamp(-q_max, q_max)
    out = codes.mul(scale_c).mul_(scale_t)
    return out, codes, {"clipped": clipped, "scale_t": scale_t, "scale_c": scale_c,
                        "row_absmax": row_absmax, "column_absmax": column_absmax}


def group_symmetric(w, bits, group_size):
    """One delta = max|w| / qmax per group of g consecutive input channels; the last group of
    a row is the shorter remainder when g does not divide I."""
    outs, codes = [], []
    for start in range(0, w.shape[1], group_size):
        out, code, _ = per_token(w[:, start:start + group_size], bits)
        outs.append(out)
        codes.append(code)
    return torch.cat(outs, dim=1), torch.cat(codes, dim=1), {"clipped": 0}


def group_asymmetric(w, bits, group_size):
    """AWQ's pseudo_quantize_tensor (zero point, unsigned codes):
        scales = (max - min).clamp(min=1e-5) / max_int
        zeros  = (-round(min / scales)).clamp(0, max_int)
        w      = (clamp(round(w / scales) + zeros, 0, max_int) - zeros) * scales
    Its kernel is the codes equal to the zero point (they dequantize to 0)."""
    max_int = 2 ** bits - 1
    outs, codes, zeros_all = [], [], []
    clipped = 0
    for start in range(0, w.shape[1], group_size):
        g = w[:, start:start + group_size]
        max_val = g.amax(dim=1, keepdim=True)
        min_val = g.amin(dim=1, keepdim=True)
        scales = (max_val - min_val).clamp(min=1e-5) / max_int
        zeros = (-torch.round(min_val / scales)).clamp_(0, max_int)
        shifted = torch.round(g / scales) + zeros
        clipped += int(((shifted < 0) | (shifted > max_int)).sum())
        code = shifted.clamp(0, max_int)
        outs.append((code - zeros) * scales)
        codes.append(code)
        zeros_all.append(zeros.expand_as(code))
    code = torch.cat(codes, dim=1)
    return torch.cat(outs, dim=1), code, {"clipped": clipped, "zero_point": torch.cat(zeros_all, dim=1)}


def per_token_asym(x, bits):
    """OmniQuant's dynamic per-token activation quantizer (its UniformAffineQuantizer, asymmetric):
        scale = clamp((max - min) / (2^N - 1), 1e-5, 1e4), zero = round(clamp(-min / scale, -1e4, 1e4)),
        code = clamp(round(x / scale) + zero, 0, 2^N - 1), x <- (code - zero) * scale, per row.
    The range is the row's own [min, max] (0 need not be inside), the zero point is not clamped."""
    max_int = 2 ** bits - 1
    min_val = x.amin(dim=-1, keepdim=True)
    max_val = x.amax(dim=-1, keepdim=True)
    scale = ((max_val - min_val) / max_int).clamp(min=1e-5, max=1e4)
    zero = (-min_val / scale).clamp(min=-1e4, max=1e4).round()
    shifted = torch.round(x / scale) + zero
    clipped = int(((shifted < 0) | (shifted > max_int)).sum())
    code = shifted.clamp(0, max_int)
    return (code - zero) * scale, code, {"clipped": clipped, "zero_point": zero.expand_as(code)}


def remove_kernel(x, bits, kernel_target):
    """SPEC.md "Remove kernel": zero the per-token kernel, leave the rest unquantized; with a
    target p >= 0 zero the floor(p * n) elements with the smallest |x_ij| / t_i, ties in
    row-major order (stable sort)."""
    if kernel_target < 0:
        _, codes, _ = per_token(x, bits)
        return torch.where(codes == 0, torch.zeros_like(x), x), None, {"clipped": 0}
    t = ones_where_zero(x.abs().amax(dim=-1, keepdim=True))
    key = (x.abs() / t).flatten()
    count = math.floor(kernel_target * key.numel())
    order = torch.sort(key, stable=True).indices
    flat = x.flatten().clone()
    flat[order[:count]] = 0.0
    return flat.view_as(x), None, {"clipped": 0}


# ---------------------------------------------------------------- statistics
def column_row_relation(row_absmax, column_absmax, alpha):
    """Table 1: share of c_j >= t_i and of B~_ij < B_ij, B~ = 0.5 t^a c^(1-a)/qmax,
    B = 0.5 t/qmax. For t > 0 and a < 1, B~ < B <=> c^(1-a) < t^(1-a) <=> c < t (paper 4.2,
    case I); counted in that exact form, and cross-checked in float64 away from c == t."""
    t = row_absmax.reshape(-1, 1).double()
    c = column_absmax.reshape(1, -1).double()
    ge = int((c >= t).sum())
    if alpha >= 1.0:
        return ge, 0  # per-token: B~ = B, "not counted" in Table 1
    below = (c < t) & (t > 0)
    numeric = (t.pow(alpha) * c.pow(1 - alpha)) < t
    decided = (c != t) & (t > 0)
    assert bool((below == numeric)[decided].all()), "B~ < B must equal c < t away from c == t"
    return ge, int(below.sum())


def stats_for(method, x, out, codes, extra, alpha, zero_point=None):
    elements = x.numel()
    if method == "remove-kernel":
        kernel = int((out == 0).sum())
    elif zero_point is not None:
        kernel = int((codes == zero_point).sum())
    else:
        kernel = int((codes == 0).sum())
    ge, below = 0, 0
    if method in ("per-token", "per-channel"):
        ge, below = column_row_relation(x.abs().amax(dim=-1), x.abs().amax(dim=0), 1.0)
    elif method == "crossquant":
        ge, below = column_row_relation(extra["row_absmax"], extra["column_absmax"], alpha)
    return {"elements": elements, "kernel": kernel, "exact_zeros": int((x == 0).sum()),
            "column_max_ge_row_max": ge, "bound_below_per_token": below,
            "clipped": extra["clipped"]}


# ---------------------------------------------------------------- writing
def write_floats(path, tensor):
    path.parent.mkdir(parents=True, exist_ok=True)
    tensor.detach().contiguous().numpy().astype("<f4").tofile(path)


def write_codes(path, codes, unsigned):
    """int8 (symmetric, |q| <= 127) or uint8 (asymmetric, 0..255) codes."""
    assert bool((codes == codes.round()).all())
    assert bool(((codes >= 0) & (codes <= 255)).all() if unsigned else (codes.abs() <= 127).all())
    codes.detach().contiguous().numpy().astype("u1" if unsigned else "i1").tofile(path)


def main():
    inputs = make_inputs()
    manifest = {"seed": SEED, "torch": torch.__version__, "inputs": {}, "cases": []}
    for name, tensor in inputs.items():
        write_floats(OUT / "inputs" / f"{name}.f32", tensor)
        manifest["inputs"][name] = {"file": f"inputs/{name}.f32", "rows": tensor.shape[0],
                                    "cols": tensor.shape[1]}

    def add(method, input_name, bits, alpha=None, group_size=None, asymmetric=False,
            kernel_target=None, static=None):
        x = inputs[input_name].clone()
        if method in ("per-token", "per-channel"):
            out, codes, extra = per_token(x, bits)
        elif method == "per-tensor":
            out, codes, extra = per_tensor(x, bits)
        elif method == "crossquant":
            static_c = inputs[static] if static else None
            out, codes, extra = crossquant(x, bits, alpha, static_c)
        elif method == "group":
            quantize = group_asymmetric if asymmetric else group_symmetric
            out, codes, extra = quantize(x, bits, group_size)
        elif method == "remove-kernel":
            out, codes, extra = remove_kernel(x, bits, kernel_target)
        elif method == "per-token-asym":
            out, codes, extra = per_token_asym(x, bits)
        else:
            raise ValueError(method)
        assert torch.isfinite(out).all(), f"{method} produced NaN/Inf"
        if codes is not None and not asymmetric:
            assert codes.abs().max() <= 2 ** (bits - 1) - 1
        name = f"{method}_{input_name}_b{bits}"
        if alpha is not None:
            name += f"_a{alpha:g}"
        if group_size is not None:
            name += f"_g{group_size}{'_asym' if asymmetric else ''}"
        if kernel_target is not None:
            name += f"_p{kernel_target:g}"
        if static:
            name += "_static"
        case = {"name": name, "method": method, "input": input_name, "bits": bits,
                "output": f"outputs/{name}.f32",
                "stats": stats_for(method, x, out, codes, extra, alpha if alpha is not None else 1.0,
                                   extra.get("zero_point"))}
        write_floats(OUT / case["output"], out)
        if codes is not None:
            case["codes"] = f"outputs/{name}.codes"
            case["codes_type"] = "uint8" if asymmetric else "int8"
            write_codes(OUT / case["codes"], codes, asymmetric)
        if alpha is not None:
            case["alpha"] = alpha
        if group_size is not None:
            case["group_size"] = group_size
            case["asymmetric"] = asymmetric
        if kernel_target is not None:
            case["kernel_target"] = kernel_target
        if static:
            case["static_column_absmax"] = static
        if method == "crossquant":
            case["row_scales"] = f"outputs/{name}.row"
            case["column_factors"] = f"outputs/{name}.col"
            write_floats(OUT / case["row_scales"], extra["scale_t"].flatten())
            write_floats(OUT / case["column_factors"], extra["scale_c"].flatten())
        manifest["cases"].append(case)

    for bits in BITS:
        add("per-token", "act_a", bits)
        add("per-channel", "w_b", bits)
        for alpha in ALPHAS:
            add("crossquant", "act_a", bits, alpha=alpha)
        for asymmetric in (False, True):
            add("group", "w_a", bits, group_size=128, asymmetric=asymmetric)
            add("group", "w_b", bits, group_size=64, asymmetric=asymmetric)
    for bits in (4, 8):
        add("per-tensor", "act_a", bits)
        add("per-channel", "w_a", bits)
        for alpha in (0.0, 0.15, 0.5, 0.55, 1.0):  # CrossQuant on weights (alpha_W 0.55, 0)
            add("crossquant", "w_b", bits, alpha=alpha)
        for alpha in (0.15, 0.5):
            add("crossquant", "act_a", bits, alpha=alpha, static="calib_column_absmax")
        for kernel_target in (-1.0, 0.0, 0.3):
            add("remove-kernel", "act_a", bits, kernel_target=kernel_target)
        add("per-token-asym", "act_a", bits, asymmetric=True)  # uint8 codes with zero points
    add("per-token", "fig3", 8)
    add("crossquant", "fig3", 8, alpha=0.15)

    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(manifest['cases'])} cases, {total / 1e6:.2f} MB to {OUT}")


if __name__ == "__main__":
    main()
