"""Writes PyTorch checkpoints (torch.save) of a Hugging Face model directory, and hostile or
broken ones, for tests/unit/test_torch_checkpoint.cpp. Never committed: the tests run this
at test time into the build tree.

    /usr/bin/python3 torch_checkpoints.py OUT_DIR MODEL_DIR...

Each MODEL_DIR holds config.json + model.safetensors (read by hf_checkpoint.py, no
safetensors package). OUT_DIR/<model>/ receives one model directory per variant, each with
the source's config and tokenizer files and either a PyTorch checkpoint or a safetensors
copy to compare with:

  bin_f32           pytorch_model.bin, every tensor as stored; lm_head.weight is the very
                    tensor object embed_tokens.weight is (one shared storage, as HF saves
                    tied weights)
  bin_sharded       pytorch_model-0000k-of-00003.bin + pytorch_model.bin.index.json
  bin_views         like bin_f32, but every q/k/v projection is a row slice of one fused
                    storage (views with storage offsets) and every o_proj/out_proj weight a
                    transposed view of a contiguous tensor (non-contiguous strides)
  bin_no_prefix     names without the "model." prefix (a base model's state dict, as
                    facebook/opt-* ship it); lm_head.weight left out
  bin_f16, bin_bf16 all float tensors converted; st_f16, st_bf16: the same values as
                    model.safetensors (written by hand), the expected results
  both              model.safetensors (the source) and a pytorch_model.bin of zeros: the
                    safetensors must win
Bad inputs go to OUT_DIR/bad/<case>/ (model directories of the first MODEL_DIR whose
pytorch_model.bin is the case); the marker file that the malicious pickle would create is
OUT_DIR/bad/pwned (checked here: torch.load of the same bytes does create it). The case
zip64 is a valid archive whose end record needs ZIP64 (65538 entries).
"""
import collections
import io
import json
import os
import shutil
import struct
import sys
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_checkpoint  # noqa: E402

SIDE_FILES = ["config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
              "special_tokens_map.json", "generation_config.json"]


def model_dir(out, name, source):
    path = os.path.join(out, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    for f in SIDE_FILES:
        if os.path.exists(os.path.join(source, f)):
            shutil.copy(os.path.join(source, f), path)
    return path


def tie(state):
    """lm_head.weight as the same tensor as the input embeddings (HF's tied weights)."""
    embed = [k for k in state if k.endswith("embed_tokens.weight")][0]
    out = collections.OrderedDict(state)
    out["lm_head.weight"] = out[embed]
    return out


def write_safetensors(path, state):
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    header, blobs, offset = {}, [], 0
    for name, t in state.items():
        raw = t.contiguous().view(torch.int16 if t.element_size() == 2 else torch.int32).numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def with_views(state):
    out = collections.OrderedDict()
    for name, t in state.items():
        if name.endswith("q_proj.weight"):
            base = name[: -len("q_proj.weight")]
            parts = [state[base + p + "_proj.weight"] for p in "qkv"]
            fused, first = torch.cat(parts), 0
            for p, part in zip("qkv", parts):
                out[base + p + "_proj.weight"] = fused[first:first + part.shape[0]]
                first += part.shape[0]
        elif name.endswith(("k_proj.weight", "v_proj.weight")):
            continue
        elif name.endswith(("o_proj.weight", "out_proj.weight")):
            out[name] = t.t().contiguous().t()
            assert not out[name].is_contiguous()
        else:
            out[name] = t
    assert out["lm_head.weight"].data_ptr() == [v for k, v in out.items() if k.endswith("embed_tokens.weight")][0].data_ptr()
    return out


def save_sharded(path, state, shards):
    names = list(state)
    weight_map = {}
    for s in range(shards):
        part = collections.OrderedDict((n, state[n]) for n in names[s::shards])
        file = f"pytorch_model-{s + 1:05d}-of-{shards:05d}.bin"
        torch.save(part, os.path.join(path, file))
        weight_map.update({n: file for n in part})
    with open(os.path.join(path, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)


# --- hand-made pickles and archives for the bad inputs
def archive(pickle_bytes, storages=None, compress=False, prefix="archive"):
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", method) as z:
        z.writestr(prefix + "/data.pkl", pickle_bytes)
        for key, raw in (storages or {}).items():
            z.writestr(prefix + "/data/" + key, raw)
        z.writestr(prefix + "/version", "3\n")
    return buffer.getvalue()


def unicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def tensor_pickle(entries, storage_type="FloatStorage"):
    """A state dict pickle: entries = [(name, key, numel, offset, size, stride)]."""
    p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01("
    for name, key, numel, offset, size, stride in entries:
        p += unicode(name) + b"ctorch._utils\n_rebuild_tensor_v2\n(("
        p += unicode("storage") + b"ctorch\n" + storage_type.encode() + b"\n" + unicode(key) + unicode("cpu")
        p += b"J" + struct.pack("<i", numel) + b"tQ"
        p += b"J" + struct.pack("<i", offset)
        p += b"(" + b"".join(b"J" + struct.pack("<i", d) for d in size) + b"t"
        p += b"(" + b"".join(b"J" + struct.pack("<i", d) for d in stride) + b"t"
        p += b"\x89ccollections\nOrderedDict\n)Rt" + b"R"
    return p + b"u."


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + self.marker,))


def bad_inputs(out, source):
    bad = os.path.join(out, "bad")
    shutil.rmtree(bad, ignore_errors=True)
    os.makedirs(bad)
    marker = os.path.join(bad, "pwned")
    good = archive(tensor_pickle([("w", "0", 4, 0, [2, 2], [2, 1])]), {"0": struct.pack("<4f", 1, 2, 3, 4)})
    cases = {}
    buffer = io.BytesIO()
    torch.save(collections.OrderedDict([("evil", Evil(marker)), ("w", torch.zeros(2))]), buffer)
    cases["malicious"] = buffer.getvalue()
    check_malicious_runs_in_python(cases["malicious"], bad)
    cases["zip64"] = zip64_archive()
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buffer, _use_new_zipfile_serialization=False)
    cases["legacy"] = buffer.getvalue()
    cases["truncated"] = good[: len(good) // 2]
    cases["compressed"] = archive(tensor_pickle([("w", "0", 4, 0, [2, 2], [2, 1])]), {"0": bytes(16)}, compress=True)
    # The storage entry's size in the central directory says 12 bytes, the local header 16.
    entry_size = good.replace(b"archive/data/0", b"archive/data/0", 1)
    central = entry_size.rfind(b"PK\x01\x02", 0, entry_size.rfind(b"archive/data/0"))
    wrong = bytearray(entry_size)
    struct.pack_into("<II", wrong, central + 20, 12, 12)
    cases["wrong_entry_size"] = bytes(wrong)
    cases["short_storage"] = archive(tensor_pickle([("w", "0", 4, 1, [2, 2], [2, 1])]), {"0": bytes(16)})
    cases["storage_bytes"] = archive(tensor_pickle([("w", "0", 5, 0, [2, 2], [2, 1])]), {"0": bytes(16)})
    cases["unknown_dtype"] = archive(tensor_pickle([("w", "0", 2, 0, [2], [1])], "ComplexFloatStorage"), {"0": bytes(16)})
    cases["int64"] = archive(tensor_pickle([("w", "0", 2, 0, [2], [1])], "LongStorage"), {"0": bytes(16)})
    cases["key_collision"] = archive(tensor_pickle([("w", "0", 4, 0, [4], [1]), ("w", "0", 4, 0, [4], [1])]), {"0": bytes(16)})
    cases["deep"] = archive(b"\x80\x02" + b"]" * 100 + b"a" * 99 + b".")
    cases["huge_string"] = archive(b"\x80\x02X\xff\xff\xff\x7f" + b"x" * 64)
    cases["missing_storage"] = archive(tensor_pickle([("w", "7", 4, 0, [4], [1])]), {"0": bytes(16)})
    cases["not_a_dict"] = archive(b"\x80\x02]q\x00.")
    buffer = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(2)}}, buffer)
    cases["training_checkpoint"] = buffer.getvalue()
    for name, raw in cases.items():
        path = model_dir(bad, name, source)
        with open(os.path.join(path, "pytorch_model.bin"), "wb") as f:
            f.write(raw)
    # The same tensor name in two shards.
    path = model_dir(bad, "two_shards", source)
    for i in (1, 2):
        with open(os.path.join(path, f"pytorch_model-0000{i}-of-00002.bin"), "wb") as f:
            f.write(good)
    with open(os.path.join(path, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"weight_map": {"w": "pytorch_model-00001-of-00002.bin", "v": "pytorch_model-00002-of-00002.bin"}}, f)


def zip64_archive():
    """A torch-style archive with more than 65535 entries: the end record needs ZIP64."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", tensor_pickle([("w", "0", 4, 0, [2, 2], [2, 1])]))
        z.writestr("archive/data/0", struct.pack("<4f", 1, 2, 3, 4))
        for i in range(0x10000):
            z.writestr(f"archive/pad/{i}", b"")
    return buffer.getvalue()


def check_malicious_runs_in_python(raw, bad):
    """The malicious case is real: torch.load (full unpickling) would run its command."""
    marker = os.path.join(bad, "pwned")
    probe = os.path.join(bad, "probe.bin")
    with open(probe, "wb") as f:
        f.write(raw)
    torch.load(probe)
    assert os.path.exists(marker), "the malicious pickle did not run under torch.load"
    os.remove(marker)
    os.remove(probe)


def main():
    out, sources = sys.argv[1], sys.argv[2:]
    os.makedirs(out, exist_ok=True)
    for source in sources:
        write_variants(source, os.path.join(out, os.path.basename(os.path.normpath(source))))
    bad_inputs(out, sources[0])


def write_variants(source, out):
    os.makedirs(out, exist_ok=True)
    state = collections.OrderedDict(sorted(hf_checkpoint.load_state_dict(source).items()))
    tied = tie(state)

    torch.save(tied, os.path.join(model_dir(out, "bin_f32", source), "pytorch_model.bin"))
    save_sharded(model_dir(out, "bin_sharded", source), tied, 3)
    torch.save(with_views(tied), os.path.join(model_dir(out, "bin_views", source), "pytorch_model.bin"))
    base = collections.OrderedDict((k[len("model."):], v) for k, v in state.items() if k.startswith("model."))
    torch.save(base, os.path.join(model_dir(out, "bin_no_prefix", source), "pytorch_model.bin"))
    for dtype, tag in ((torch.float16, "f16"), (torch.bfloat16, "bf16")):
        converted = collections.OrderedDict((k, v.to(dtype)) for k, v in state.items())
        torch.save(tie(converted), os.path.join(model_dir(out, "bin_" + tag, source), "pytorch_model.bin"))
        write_safetensors(os.path.join(model_dir(out, "st_" + tag, source), "model.safetensors"), converted)
    both = model_dir(out, "both", source)
    shutil.copy(os.path.join(source, "model.safetensors"), both)
    torch.save(collections.OrderedDict((k, torch.zeros_like(v)) for k, v in state.items()), os.path.join(both, "pytorch_model.bin"))


if __name__ == "__main__":
    main()
