"""Loads a compressed-tensors W8A8 or W4A16 directory from the format's specification and runs
it as vLLM's int8 W8A8 path (or its weight-only WNA16 path) defines it, in plain PyTorch;
prints its perplexity as JSON.

Written from compressed-tensors (vllm-project/compressed-tensors 0.18) and vLLM's
CompressedTensorsW8A8Int8 scheme, not from cq's code:
  - config.json `quantization_config`: quant_method "compressed-tensors", format
    "int-quantized", one config group targeting "Linear" whose `weights` are int8 symmetric,
    strategy "channel", static, and whose `input_activations` are int8 symmetric, strategy
    "token", dynamic; modules named in `ignore` (lm_head) stay in floating point.
  - per quantized module m: `m.weight` I8 [out][in] codes, `m.weight_scale` [out][1];
    the weight is codes * scale (compressed-tensors' dequantize: x_q.to(scale.dtype) * scale).
    Symmetric quantization stores no zero point.
  - activations (vLLM's dynamic per-token int8): for each row (token) x of a linear's input,
    s = max|x| / 127, q = clamp(round(x / s), -128, 127) with round half to even (torch.round),
    y = (q @ Wq^T) * s * w_scale + b, computed here as (q * s) @ (Wq * w_scale)^T + b in float32.
    A row of zeros gets codes 0 (no 0/0).
  - format "pack-quantized" (W4A16; compressed-tensors' PackedQuantizationCompressor, vLLM's
    CompressedTensorsWNA16): `weights` int4 static, strategy "group" (group_size g) or
    "channel", symmetric or not; `input_activations` null (activations stay in float).
    Per module m: `m.weight_packed` I32 [out][ceil(in/8)], `m.weight_shape` I64 [2] =
    [out, in], `m.weight_scale` [out][in/g] (or [out][1]), and when asymmetric
    `m.weight_zero_point` I32 [ceil(out/8)][in/g]. Bit packing (pack_to_int32 with
    num_bits 4): along the packed dimension element e sits in word e // 8 at bits
    4*(e % 8) .. 4*(e % 8)+3, stored as value + 8; the weight is (q - z) * scale per group
    (z = 0 when symmetric). The zero points are packed along the output dimension.
safetensors is parsed by hand (8-byte little-endian header length, JSON header, raw data).

    /usr/bin/python3 compressed_tensors_reference.py --model DIR --tokens TOKENS.json \
        --seqlen 256 [--max-windows N]
TOKENS.json: a JSON list of token ids (the whole text, tokenized). Output: one JSON line per
--model (repeatable): {"model", "ppl", "mean_nll", "windows"}.
Errors (a malformed or unsupported export) exit non-zero with one line naming what is wrong.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_reference import ReferenceModel, perplexity  # noqa: E402  (plain-PyTorch OPT / LLaMA forward)

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I8": np.int8, "I32": np.int32, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length].decode("utf-8"))
    data = memoryview(raw)[8 + length:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<"))
        if info["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = (info["dtype"], torch.from_numpy(np.array(array).reshape(tuple(info["shape"]))))
    return tensors


def expect(condition, message):
    if not condition:
        raise SystemExit(f"compressed_tensors_reference: {message}")


def check_args(args, strategy, dynamic, where):
    expect(isinstance(args, dict), f"{where} missing")
    expect(args.get("num_bits") == 8 and args.get("type") == "int" and args.get("symmetric") is True,
           f"{where}: not int8 symmetric: {args}")
    expect(args.get("strategy") == strategy and args.get("dynamic") is dynamic, f"{where}: not {strategy} dynamic={dynamic}: {args}")


def unpack_int4(words, count):
    """Signed int4 values from int32 words along the last dimension: nibble p of word w is
    element 8*w + p, stored as value + 8; `count` elements are kept (the rest is padding)."""
    unsigned = words.to(torch.int64) & 0xFFFFFFFF
    nibbles = torch.stack([(unsigned >> (4 * p)) & 0xF for p in range(8)], dim=-1)
    values = nibbles.reshape(*words.shape[:-1], words.shape[-1] * 8)[..., :count]
    return values - 8


def load_pack_quantized(raw, module, weights):
    """The float weight of pack-quantized module `module`: (q - z) * scale."""
    for part in ("weight_packed", "weight_shape", "weight_scale"):
        expect(f"{module}.{part}" in raw, f"{module}.{part} missing")
    expect(module + ".weight" not in raw, f"{module}: both weight and weight_packed stored")
    shape_dtype, shape = raw[module + ".weight_shape"]
    expect(shape_dtype == "I64" and tuple(shape.shape) == (2,), f"{module}.weight_shape: {shape_dtype} {tuple(shape.shape)}")
    out, inp = (int(v) for v in shape.tolist())
    packed_dtype, packed = raw[module + ".weight_packed"]
    expect(packed_dtype == "I32" and tuple(packed.shape) == (out, (inp + 7) // 8),
           f"{module}.weight_packed: {packed_dtype} {tuple(packed.shape)} for [{out}, {inp}]")
    scale_dtype, scale = raw[module + ".weight_scale"]
    expect(scale_dtype in ("F32", "F16", "BF16"), f"{module}.weight_scale dtype {scale_dtype}")
    group = weights["group_size"] if weights["strategy"] == "group" else inp
    expect(inp % group == 0, f"{module}: {inp} columns are not whole groups of {group}")
    groups = inp // group
    expect(tuple(scale.shape) == (out, groups), f"{module}.weight_scale shape {tuple(scale.shape)}, expected {(out, groups)}")
    codes = unpack_int4(packed, inp).to(scale.dtype)  # [out, in]
    zero_name = module + ".weight_zero_point"
    if weights["symmetric"]:
        expect(zero_name not in raw, f"{module}: zero point in a symmetric scheme")
        zero = torch.zeros((out, groups), dtype=scale.dtype)
    else:
        expect(zero_name in raw, f"{module}: asymmetric scheme without weight_zero_point")
        zero_dtype, zero_packed = raw[zero_name]
        expect(zero_dtype == "I32" and tuple(zero_packed.shape) == ((out + 7) // 8, groups),
               f"{zero_name}: {zero_dtype} {tuple(zero_packed.shape)}")
        # Packed along the output dimension: transpose, unpack along it, transpose back.
        zero = unpack_int4(zero_packed.t().contiguous(), out).t().to(scale.dtype)
    per_column = lambda t: t.repeat_interleave(group, dim=1)  # noqa: E731  one value per group, widened to columns
    return (codes - per_column(zero)) * per_column(scale)


def check_int4_args(args, where):
    expect(isinstance(args, dict), f"{where} missing")
    expect(args.get("num_bits") == 4 and args.get("type") == "int" and args.get("dynamic") is False,
           f"{where}: not static int4: {args}")
    expect(args.get("strategy") in ("group", "channel"), f"{where}: strategy {args.get('strategy')}")
    expect(args.get("strategy") != "group" or (isinstance(args.get("group_size"), int) and args["group_size"] > 0),
           f"{where}: group strategy without a group size")
    expect(args.get("actorder") in (None, "weight"), f"{where}: actorder {args.get('actorder')} (g_idx) not read here")


def load_export(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    q = config["quantization_config"]
    expect(q.get("quant_method") == "compressed-tensors", "quant_method is not compressed-tensors")
    expect(q.get("format") in ("int-quantized", "pack-quantized"), f"format {q.get('format')} is not int- or pack-quantized")
    packed = q["format"] == "pack-quantized"
    expect(q.get("quantization_status") == "compressed", "quantization_status is not compressed")
    groups = q["config_groups"]
    expect(len(groups) == 1, "expected one config group")
    (group,) = groups.values()
    expect(group["targets"] == ["Linear"], "targets are not [Linear]")
    expect(group.get("format", q["format"]) == q["format"], "the group's format differs from the model's")
    if packed:
        check_int4_args(group["weights"], "weights")
        expect(group.get("input_activations") is None, "input_activations set in a weight-only scheme")
    else:
        check_args(group["weights"], "channel", False, "weights")
        check_args(group["input_activations"], "token", True, "input_activations")
    expect(group.get("output_activations") is None, "output_activations set")
    ignore = q.get("ignore") or []
    expect("lm_head" in ignore, "lm_head is not in ignore")

    raw = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    state, quantized = {}, set()
    for name, (dtype, tensor) in raw.items():
        if name.endswith((".weight_scale", ".weight_shape", ".weight_zero_point")):
            continue
        if packed and name.endswith(".weight_packed"):
            module = name[: -len(".weight_packed")]
            expect(module.split(".")[-1] not in ignore and module not in ignore, f"{module} is ignored yet quantized")
            state[module + ".weight"] = load_pack_quantized(raw, module, group["weights"])
            quantized.add(module)
        elif dtype == "I8":
            expect(not packed, f"{name}: int8 tensor in a pack-quantized export")
            expect(name.endswith(".weight"), f"{name}: int8 tensor that is not a weight")
            module = name[: -len(".weight")]
            expect(module.split(".")[-1] not in ignore and module not in ignore, f"{module} is ignored yet quantized")
            scale_dtype, scale = raw[module + ".weight_scale"]
            expect(scale_dtype in ("F32", "F16", "BF16"), f"{module}.weight_scale dtype {scale_dtype}")
            expect(tuple(scale.shape) == (tensor.shape[0], 1), f"{module}.weight_scale shape {tuple(scale.shape)}")
            expect(module + ".weight_zero_point" not in raw, f"{module}: zero point in a symmetric scheme")
            state[name] = tensor.to(scale.dtype) * scale
            quantized.add(module)
        else:
            expect(dtype in ("F32", "F16", "BF16"), f"{name}: dtype {dtype}")
            state[name] = tensor.float()
    return config, state, quantized, not packed


def vllm_per_token_int8(x):
    """vLLM's dynamic per-token symmetric int8 activation quantization, dequantized."""
    scale = x.abs().amax(dim=-1, keepdim=True) / 127.0
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    codes = torch.round(x / safe).clamp(-128, 127)
    return codes * scale


class ExportedModel(ReferenceModel):
    """hf_reference's forward with every quantized linear's input quantized as vLLM does."""

    def __init__(self, config, state, quantized, quantize_inputs):
        self.quantized_modules = quantized
        self.quantize_inputs = quantize_inputs
        super().__init__(config, state)

    def linear(self, name, x):
        full = next((m for m in self.quantized_modules if m == name or m.endswith("." + name) or name.endswith("." + m)), None)
        expect(full is not None, f"decoder linear {name} is not quantized in the export")
        inputs = vllm_per_token_int8(x) if self.quantize_inputs else x  # W4A16: activations stay in float
        return F.linear(inputs, self.weights[name], self.biases[name])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, action="append", help="an export directory (repeatable)")
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--seqlen", type=int, required=True)
    parser.add_argument("--max-windows", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with open(args.tokens) as f:
        tokens = json.load(f)
    for model_dir in args.model:
        config, state, quantized, quantize_inputs = load_export(model_dir)
        model = ExportedModel(config, state, quantized, quantize_inputs)
        with torch.no_grad():
            result = perplexity(model, tokens, args.seqlen, max_windows=args.max_windows)
        print(json.dumps({"model": model_dir, "ppl": result["ppl"], "mean_nll": result["mean_nll"], "windows": result["windows"]}))


if __name__ == "__main__":
    main()
