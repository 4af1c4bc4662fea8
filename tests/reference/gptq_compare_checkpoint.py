"""Counts the codes where a `cq quantize --method gptq` checkpoint differs from the codes that
gptq_reference.py --dump-codes DIR wrote, per linear layer (and how far they are apart).

Usage: /usr/bin/python3 tests/reference/gptq_compare_checkpoint.py CHECKPOINT DIR MODEL SETTING
"""
import json
import os
import struct
import sys

import torch


def read_tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"U8": torch.uint8, "I8": torch.int8, "I32": torch.int32, "F32": torch.float32}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return out


def codes_of(tensors, module, offset):
    w = tensors[module + ".weight"]
    if module + ".weight_shape" not in tensors:
        return w.to(torch.int16)
    rows, cols = tensors[module + ".weight_shape"].tolist()
    low, high = (w & 15).to(torch.int16), (w >> 4).to(torch.int16)
    codes = torch.stack((low, high), dim=-1).reshape(rows, -1)[:, :cols]
    return codes - offset


def main():
    checkpoint, dump_dir, model, setting = sys.argv[1:5]
    config = json.load(open(os.path.join(checkpoint, "config.json")))["quantization_config"]
    offset = 8 if "code + 8" in config["weight_storage"]["codes"] else 0
    tensors = read_tensors(os.path.join(checkpoint, "model.safetensors"))
    total = differ = 0
    for file in sorted(os.listdir(dump_dir)):
        prefix = f"{model}.{setting}."
        if not file.startswith(prefix):
            continue
        module = file[len(prefix):-3]
        ref = torch.load(os.path.join(dump_dir, file))
        ours = codes_of(tensors, module, offset)
        d = (ours != ref)
        total += ref.numel()
        differ += int(d.sum())
        if d.any():
            print(f"{module}: {int(d.sum())} of {ref.numel()} differ (max |diff| {int((ours - ref).abs().max())}, "
                  f"rows {sorted(set(torch.nonzero(d)[:, 0].tolist()))[:8]})")
    print(f"{model} {setting}: {differ} of {total} codes differ ({100.0 * differ / max(total, 1):.4f} %)")


if __name__ == "__main__":
    main()
