"""Read a Hugging Face model directory without `transformers` or `safetensors`.

Independent of the C++ loader: the safetensors format is parsed here from its definition
(8-byte little-endian header length N, N bytes of JSON header, then the raw tensor bytes;
each header entry gives dtype, shape and [begin, end) offsets relative to the data area).

Supported: config.json + model.safetensors, or a sharded model.safetensors.index.json
(its "weight_map" names the shard of every tensor). Dtypes F32, F16, BF16 (and F64), all
converted to float32 (default) or float64 on load. BF16 is widened exactly by putting its
16 bits in the high half of a float32.
"""
import json
import os
import struct

import numpy as np
import torch

_NUMPY_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,  # widened by hand below
    "I64": np.int64,
    "I32": np.int32,
}


def read_safetensors(path, dtype=torch.float32):
    """Returns {name: tensor} for one .safetensors file, every float tensor as `dtype`."""
    with open(path, "rb") as f:
        raw = f.read()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len].decode("utf-8"))
    data = memoryview(raw)[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        kind = info["dtype"]
        if kind not in _NUMPY_DTYPES:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {kind}")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        array = np.frombuffer(data[begin:end], dtype=np.dtype(_NUMPY_DTYPES[kind]).newbyteorder("<"))
        if kind == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        count = int(np.prod(shape)) if shape else 1
        if array.size != count:
            raise ValueError(f"{path}: tensor {name} has {array.size} elements, shape says {count}")
        array = array.reshape(shape)
        tensor = torch.from_numpy(np.array(array))  # copy: the buffer is read-only
        if tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor
    return tensors


def safetensors_dtypes(path):
    """{name: dtype string} of one .safetensors file (for reporting)."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len).decode("utf-8"))
    return {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}


def model_files(model_dir):
    """The weight files of a model directory, in a stable order."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        return [os.path.join(model_dir, s) for s in sorted(set(weight_map.values()))]
    if os.path.exists(single):
        return [single]
    raise FileNotFoundError(f"{model_dir}: neither model.safetensors nor model.safetensors.index.json")


def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)


def load_state_dict(model_dir, dtype=torch.float32):
    """All tensors of the checkpoint as {name: tensor(dtype)}; checks the shard index."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    state = {}
    for path in model_files(model_dir):
        for name, tensor in read_safetensors(path, dtype).items():
            if name in state:
                raise ValueError(f"{path}: tensor {name} appears in two shards")
            state[name] = tensor
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        missing = set(weight_map) - set(state)
        if missing:
            raise ValueError(f"{index}: tensors listed but not found: {sorted(missing)[:5]}")
    return state


def load_model(model_dir, dtype=torch.float32):
    """(config dict, state dict) of a HF model directory."""
    return load_config(model_dir), load_state_dict(model_dir, dtype)
