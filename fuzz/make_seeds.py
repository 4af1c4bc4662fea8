#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: fuzz/make_seeds.py OUT_DIR [CQ_BINARY [SHARED_DIR]].

OUT_DIR/<target>/ receives small hand-made valid inputs for every target, plus (when CQ_BINARY
is given) the files of generated `cq synth` models and (when SHARED_DIR has them) the shared
models' config/tokenizer files and the evaluation data files. Input layouts are described at
the top of each fuzz/fuzz_*.cpp (multi-file inputs are joined with NUL bytes).
"""
import json, os, struct, subprocess, sys, tempfile

out = sys.argv[1]
cq = sys.argv[2] if len(sys.argv) > 2 else None
shared = sys.argv[3] if len(sys.argv) > 3 else os.environ.get("CQ_SHARED", "")
count = {}


def seed(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    n = count.get(target, 0)
    count[target] = n + 1
    with open(os.path.join(d, f"seed-{n:03d}"), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    header, data, offset = {}, b"", 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        size = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I8": 1, "U8": 1}[dtype]
        n = 1
        for s in shape:
            n *= s
        payload = bytes((i * 7) & 0xFF for i in range(n * size))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(payload)]}
        data += payload
        offset += len(payload)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def read(path):
    with open(path, "rb") as f:
        return f.read()


# --- PyTorch checkpoints (torch.save's zip layout, built by hand: this script runs without torch)
def torch_pickle(entries, storage="FloatStorage"):
    """A state dict pickle as torch.save writes it: [(name, key, numel, offset, size, stride)]."""
    def text(s):
        return b"X" + struct.pack("<I", len(s)) + s.encode()
    p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01("
    for name, key, numel, offset, size, stride in entries:
        p += text(name) + b"ctorch._utils\n_rebuild_tensor_v2\n((" + text("storage")
        p += b"ctorch\n" + storage.encode() + b"\n" + text(key) + text("cpu") + b"K" + bytes([numel]) + b"tQ"
        p += b"K" + bytes([offset]) + b"(" + b"".join(b"K" + bytes([d]) for d in size) + b"t"
        p += b"(" + b"".join(b"K" + bytes([d]) for d in stride) + b"t\x89ccollections\nOrderedDict\n)RtR"
    return p + b"u}X\x09\x00\x00\x00_metadata}sb."


def torch_zip(pickle, storages):
    import io, zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle)
        for key, raw in storages.items():
            z.writestr("archive/data/" + key, raw)
        z.writestr("archive/version", "3\n")
    return buffer.getvalue()


state = torch_pickle([("a.weight", "0", 6, 0, [2, 3], [3, 1]), ("lm_head.weight", "0", 6, 0, [2, 3], [3, 1]),
                      ("view", "0", 6, 1, [2, 2], [1, 3]), ("h", "1", 4, 0, [4], [1])])
seed("fuzz_pickle", state)
seed("fuzz_pickle", torch_pickle([("b", "2", 2, 0, [2], [1])], "BFloat16Storage"))
seed("fuzz_pickle", b"\x80\x02}q\x00(X\x05\x00\x00\x00scale]q\x01X\x04\x00\x00\x00clip]q\x02u.")

# Published calibration results for the generated opt-pre model (hidden 32, ffn 64, 2 layers)
# that fuzz_zip_archive also reads them against: SmoothQuant act_scales and llm-awq results.
def pickle_text(s):
    return b"X" + struct.pack("<I", len(s)) + s.encode()


def tensor_expr(key, numel, size):
    stride, n = [], 1
    for d in reversed(size):
        stride.insert(0, n)
        n *= d
    p = b"ctorch._utils\n_rebuild_tensor_v2\n((" + pickle_text("storage") + b"ctorch\nFloatStorage\n"
    p += pickle_text(key) + pickle_text("cpu") + b"K" + bytes([numel]) + b"tQK\x00("
    p += b"".join(b"K" + bytes([d]) for d in size) + b"t(" + b"".join(b"K" + bytes([d]) for d in stride)
    return p + b"t\x89ccollections\nOrderedDict\n)RtR"


ones = struct.pack("<64f", *([1.0] * 64))
prefix = "model.decoder.layers."
act_scales = b"\x80\x02}("
for layer in range(2):
    for name, width in (("self_attn.q_proj", 32), ("fc1", 32), ("fc2", 64)):
        act_scales += pickle_text(f"{prefix}{layer}.{name}") + tensor_expr("w" if width == 64 else "h", width, [width])
seed("fuzz_zip_archive", torch_zip(act_scales + b"u.", {"h": ones[:128], "w": ones}))
qkv = b"(" + b"".join(pickle_text(f"{prefix}0.self_attn.{n}_proj") for n in "qkv") + b"t"
awq = b"\x80\x02}(" + pickle_text("scale") + b"](" + b"(" + pickle_text(prefix + "0.self_attn_layer_norm") + qkv
awq += tensor_expr("h", 32, [32]) + b"t" + b"(" + pickle_text(prefix + "0.fc1") + b"(" + pickle_text(prefix + "0.fc2") + b"t"
awq += tensor_expr("w", 64, [64]) + b"te" + pickle_text("clip") + b"](" + b"(" + pickle_text(prefix + "1.fc2")
awq += tensor_expr("h", 32, [32, 1, 1]) + b"teu."
seed("fuzz_zip_archive", torch_zip(awq, {"h": ones[:128], "w": ones}))
seed("fuzz_zip_archive", torch_zip(state, {"0": struct.pack("<6f", *range(6)), "1": bytes(16)}))
seed("fuzz_zip_archive", torch_zip(torch_pickle([("b", "2", 2, 0, [2], [1])], "BFloat16Storage"), {"2": bytes(4)}))

# --- safetensors, index
small = safetensors([("a", "F32", [2, 3]), ("b", "F16", [4]), ("c", "BF16", [1, 1, 2]), ("e", "F32", [0])], {"format": "pt"})
seed("fuzz_safetensors", small)
seed("fuzz_safetensors", safetensors([]))
# A quantized checkpoint's tensor kinds: I8 codes, U8 packed codes and zero points, I32 shape.
seed("fuzz_safetensors", safetensors([("w.weight_shape", "I32", [2]), ("w.weight_scale", "F32", [4, 1]),
                                      ("w.weight", "U8", [4, 3]), ("v.weight", "I8", [2, 5]), ("w.weight_zero", "U8", [4, 1])]))
index = json.dumps({"metadata": {"total_size": 40}, "weight_map": {"a": "model-00001-of-00001.safetensors",
                                                                   "b": "model-00001-of-00001.safetensors"}})
seed("fuzz_safetensors_index", index.encode() + b"\0" + safetensors([("a", "F32", [2]), ("b", "BF16", [3])]))

# --- config.json
opt = {"model_type": "opt", "vocab_size": 96, "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2,
       "num_attention_heads": 4, "max_position_embeddings": 64, "word_embed_proj_dim": 32,
       "do_layer_norm_before": True, "enable_bias": True, "bos_token_id": 2, "eos_token_id": 2}
llama = {"model_type": "llama", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 172,
         "num_hidden_layers": 5, "num_attention_heads": 8, "num_key_value_heads": 4, "max_position_embeddings": 512,
         "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True,
         "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 8192}}
seed("fuzz_config", json.dumps(opt, indent=2))
seed("fuzz_config", json.dumps(llama, indent=2))
seed("fuzz_config", "\ufeff" + json.dumps(llama, indent=2).replace("\n", "\r\n"))

# --- tokenizers: a small byte-level BPE (GPT-2 style), as vocab.json/merges.txt and tokenizer.json
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


units = bytes_to_unicode()
vocab = {"<|endoftext|>": 0}
for b in range(256):
    vocab[units[b]] = len(vocab)
merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s"]
for m in merges:
    vocab["".join(m.split(" "))] = len(vocab)
merges_txt = "#version: 0.2\n" + "\n".join(merges) + "\n"
tok_config = json.dumps({"add_bos_token": True, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                         "unk_token": "<|endoftext|>"})
text = "Hello, the world! Ünïcödé 漢字 \t\n  spaces   and 123 numbers.\r\n"
seed("fuzz_vocab_merges", "\0".join([text, json.dumps(vocab), merges_txt, tok_config]))
seed("fuzz_vocab_merges", "\0".join(["the", json.dumps(vocab), merges_txt, ""]))
tokenizer_json = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": 0, "content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True}],
    "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
              "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": merges}}
seed("fuzz_tokenizer_json", "\0".join([json.dumps(tokenizer_json), tok_config, text]))

# --- evaluation data (selector byte + file)
seed("fuzz_eval_jsonl", b"\0" + b'{"text": "a"}\n\n{"text": "b\\u00e9"}\r\n')
seed("fuzz_eval_jsonl", b"\1" + b'{"text": "The cat sat on the mat"}\n')
seed("fuzz_eval_jsonl", b"\2" + json.dumps({"id": "x", "question": {"stem": "Q?", "choices": [
    {"text": "a", "label": "A"}, {"text": "b", "label": "B"}]}, "answerKey": "B"}).encode() + b"\n")
seed("fuzz_eval_jsonl", b"\3" + json.dumps({"ind": 1, "activity_label": "Cooking", "ctx_a": "He cuts", "ctx_b": "the",
                                            "ctx": "He cuts the", "endings": ["a", "b", "c", "d"], "label": "2"}).encode() + b"\n")
seed("fuzz_eval_jsonl", b"\4" + json.dumps({"question": "is it", "passage": "It is.", "answer": True}).encode() + b"\n")
seed("fuzz_eval_jsonl", b"\5" + json.dumps({"goal": "g", "sol1": "a", "sol2": "b"}).encode() + b"\n")
seed("fuzz_eval_jsonl", b"\6" + b'{"text": " = Title = \\n"}\n{"text": ""}\n')
seed("fuzz_eval_jsonl", b"\7" + b'{"text": "doc one", "url": "u"}\n{"text": "doc two"}\n')
seed("fuzz_eval_csv", 'What is 1+1?,1,2,3,4,B\n"quoted, field","with ""quotes""",x,y,z,A\r\n')

# --- quantized checkpoints' config.json (quantization_config), and `cq sweep --grid` texts
quant = {"format": "crossquant-fake-quantized-v1", "method": "awq", "weight_bits": 4, "activation_bits": 8,
         "scheme": "w4a8-g128", "weight_method": "group", "group_size": 128, "weight_asymmetric": True,
         "activation_method": "per-token", "weights_checksum": "fnv1a64:0123456789abcdef",
         "calibration": {"source": "wiki.txt", "samples": 16, "seqlen": 256, "windows_used": 16},
         "awq": {"chosen_ratios": [{"previous": "layers.0.ln", "linears": ["q", "k"], "ratio": 0.5}]}}
seed("fuzz_quantization_config", json.dumps(dict(opt, quantization_config=quant), indent=2))
seed("fuzz_quantization_config", json.dumps(dict(llama, quantization_config=dict(
    quant, method="crossquant", weight_bits=8, scheme="w8a8", weight_method="per-channel", activation_method="crossquant",
    alpha=0.15, crossquant_columns="static (calibrated)", quantize_bmm_input=True))))
for grid in ["scheme=w8a8,w4a8-g128,w4a4;act=per-token,crossquant;alpha=0.15,0.45,0.75",
             " scheme = w8a8 , w8a8 ; method=rtn,awq ; alpha=0.5;", "scheme=w16a16;act=remove-kernel,per-tensor;method=smoothquant"]:
    seed("fuzz_sweep_grid", grid)

# --- command lines (NUL-separated argv; fuzz_cli runs them in an empty directory, so no '/')
for argv in [["info", "--model", "m"], ["ppl", "--model", "m", "--text", "hello", "--json", "out.json"],
             ["ppl", "--model", "m", "--scheme", "w8a8", "--act-quant", "crossquant", "--alpha", "0.15"],
             ["quantize", "--model", "m", "--out", "o", "--wbits", "4", "--group-size", "128"],
             ["eval", "--model", "m", "--tasks", "arc_easy,piqa", "--limit", "5"],
             ["tokenize", "--model", "m", "--text", "hi"], ["kernel", "--help"],
             ["generate", "--model", "m", "--prompt", "Once", "--max-new-tokens", "8"], ["--version"],
             ["bench", "--model", "m", "--engine", "int", "--scheme", "w4a8-g128", "--prompt-tokens", "64", "--gen-tokens", "8"],
             ["sweep", "--model", "m", "--text", "t", "--grid", "scheme=w8a8,w4a4;act=per-token,crossquant;alpha=0.15,0.45",
              "--csv", "t.csv"],
             ["sweep", "--model", "m", "--text", "t", "--calib", "c", "--grid", "scheme=w8a8;method=rtn,smoothquant"],
             ["kernel", "--model", "m", "--text", "t", "--alphas", "0.15,0.45,1"],
             ["quantize", "--model", "m", "--method", "smoothquant", "--calib", "c", "--migration-strength", "0.5", "--out", "o"]]:
    seed("fuzz_cli", "\0".join(argv))

# --- generated models
if cq:
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ["opt-pre", "llama"]:
            target = os.path.join(tmp, preset)
            r = subprocess.run([cq, "synth", "--preset", preset, "--out", target], capture_output=True)
            if r.returncode != 0:
                continue
            seed("fuzz_config", read(os.path.join(target, "config.json")))
            st = read(os.path.join(target, "model.safetensors"))
            if len(st) <= 1 << 20:
                seed("fuzz_safetensors", st)

# --- shared models and data
if shared and os.path.isdir(shared):
    for model in ["stories260k", "tinyopt"]:
        d = os.path.join(shared, "models", model)
        if not os.path.isdir(d):
            continue
        seed("fuzz_config", read(os.path.join(d, "config.json")))
        if cq:  # a quantized checkpoint of it (cq quantize needs the tokenizer the generated models lack)
            with tempfile.TemporaryDirectory() as tmp:
                quantized = os.path.join(tmp, "q")
                r = subprocess.run([cq, "quantize", "--model", d, "--method", "rtn", "--scheme", "w4a8-g128",
                                    "--out", quantized], capture_output=True)
                if r.returncode == 0:
                    seed("fuzz_quantization_config", read(os.path.join(quantized, "config.json")))
        cfg = os.path.join(d, "tokenizer_config.json")
        cfg_bytes = read(cfg) if os.path.exists(cfg) else b""
        if os.path.exists(os.path.join(d, "tokenizer.json")):
            seed("fuzz_tokenizer_json", read(os.path.join(d, "tokenizer.json")) + b"\0" + cfg_bytes + b"\0" + text.encode())
        if os.path.exists(os.path.join(d, "tokenizer.model")):
            seed("fuzz_sentencepiece", text.encode() + b"\0" + read(os.path.join(d, "tokenizer.model")))
    data = os.path.join(shared, "data")
    for selector, rel in [(1, "lambada_openai/lambada_test.first100.jsonl"), (2, "arc_easy/ARC-Easy-Test.first100.jsonl"),
                          (3, "hellaswag/hellaswag_val.first100.jsonl"), (4, "boolq/val.first100.jsonl"),
                          (7, "c4/c4_validation.first50.jsonl")]:
        p = os.path.join(data, rel)
        if os.path.exists(p):
            lines = read(p).split(b"\n")[:3]  # a few records keep the seeds small
            seed("fuzz_eval_jsonl", bytes([selector]) + b"\n".join(lines) + b"\n")
    mmlu = os.path.join(data, "mmlu", "dev")
    if os.path.isdir(mmlu):
        for name in sorted(os.listdir(mmlu))[:2]:
            seed("fuzz_eval_csv", read(os.path.join(mmlu, name))[:4096])

for target in sorted(count):
    print(f"{target}: {count[target]} seeds")
