#!/usr/bin/python3
"""Writes tests/golden/models/<preset>.json: logits of the synthetic test models computed by
the independent reference (hf_reference.py) from the files `cq synth` writes.

    cmake --build build -j2 --target cq
    /usr/bin/python3 tests/reference/make_golden_models.py [--cq build/cq] [--out tests/golden/models]

For each preset: `cq synth --preset P --out TMP/P`, then the sha256 of every file it wrote
(a C++ generator drift shows up as a hash mismatch: regenerate the goldens deliberately),
a fixed batch of 2 sequences x 12 token ids, and the float32 logits of every position
(7 significant digits) plus the same computed in float64 (weights widened exactly) and the
per-sequence max|f32 - f64| / max|logit| (the precision note). The C++ test compares
its logits at max_abs_diff / max|logit| <= 1e-4 per sequence.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_checkpoint import model_files, safetensors_dtypes  # noqa: E402
from hf_reference import ReferenceModel  # noqa: E402
from families_reference import FAMILIES, FamilyModel  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

PRESETS = ["opt-pre", "opt-post-proj", "opt-untied", "opt-nobias", "opt-fp16",
           "llama-gqa", "llama-tied", "llama-bf16-sharded", "llama3-rope-scaling", "llama-fp16",
           "llama-bias-headdim", "qwen2-tied", "mistral-window", "phi3-window", "gemma-mqa"]
BATCH, LENGTH = 2, 12
MAX_BYTES = 300_000


def token_batch(vocab):
    """2 x 12 fixed ids < vocab: BOS-like 1 first in sequence 0, spread over the vocabulary."""
    seq0 = [1] + [(17 * i + 5) % vocab for i in range(1, LENGTH)]
    seq1 = [(vocab - 1 - 13 * i * i - 3 * i) % vocab for i in range(LENGTH)]
    return [seq0, seq1]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def rounded(t, digits):
    return [[[float(f"{v:.{digits}g}") for v in row] for row in seq] for seq in t.tolist()]


def golden_for(preset, model_dir):
    files = sorted(os.listdir(model_dir))
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    dtypes = sorted({d for p in model_files(model_dir) for d in safetensors_dtypes(p).values()})
    ids = token_batch(config["vocab_size"])
    # Mistral, Qwen2, Phi-3, Gemma: families_reference.py; OPT, LLaMA: hf_reference.py.
    reference = FamilyModel if config["model_type"] in FAMILIES else ReferenceModel
    logits32 = reference.from_dir(model_dir, dtype=torch.float32).forward(torch.tensor(ids))
    logits64 = reference.from_dir(model_dir, dtype=torch.float64).forward(torch.tensor(ids))
    # Each sequence alone must give the same logits as the batch (causal, per-sequence).
    alone = reference.from_dir(model_dir, dtype=torch.float64).forward(torch.tensor(ids[1:]))
    assert torch.allclose(alone, logits64[1:], rtol=0, atol=1e-12), "batched != single sequence"
    notes = []
    for s in range(BATCH):
        scale = logits64[s].abs().max().item()
        notes.append({"max_abs_logit": scale,
                      "max_abs_diff_f32_f64": (logits32[s].double() - logits64[s]).abs().max().item(),
                      "rel_diff_f32_f64": (logits32[s].double() - logits64[s]).abs().max().item() / scale})
    return {
        "generator": "tests/reference/make_golden_models.py (plain PyTorch, HF semantics)",
        "preset": preset,
        "synth_command": f"cq synth --preset {preset} --out DIR",
        "files_sha256": {name: sha256_file(os.path.join(model_dir, name)) for name in files},
        "config": config,
        "weight_dtypes": dtypes,
        "compute": "weights widened to float32 (logits) / float64 (logits_float64); causal "
                   "attention (sliding-window where the config has one) over each sequence "
                   "independently; no quantization",
        "tolerance": "max_abs_diff / max|logit| <= 1e-4 per sequence",
        "token_ids": ids,
        "logits_shape": list(logits32.shape),
        "logits": rounded(logits32, 7),
        "precision_note": notes,
        "logits_float64": rounded(logits64, 10),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cq", default=os.path.join(REPO, "build", "cq"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests/golden/models"))
    ap.add_argument("--presets", nargs="*", default=PRESETS)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            model_dir = os.path.join(tmp, preset)
            subprocess.run([args.cq, "synth", "--preset", preset, "--out", model_dir], check=True,
                           stdout=subprocess.DEVNULL)
            golden = golden_for(preset, model_dir)
            text = json.dumps(golden, separators=(",", ":"))
            if len(text) > MAX_BYTES:  # keep the file small: drop the float64 logits, keep the note
                del golden["logits_float64"]
                text = json.dumps(golden, separators=(",", ":"))
            if len(text) > MAX_BYTES:
                raise SystemExit(f"{preset}: golden would be {len(text)} bytes")
            out = os.path.join(args.out, f"{preset}.json")
            with open(out, "w") as f:
                f.write(text + "\n")
            worst = max(n["rel_diff_f32_f64"] for n in golden["precision_note"])
            print(f"{preset}: {golden['logits_shape']} dtypes {golden['weight_dtypes']} "
                  f"f32-vs-f64 rel {worst:.2e}, {len(text)} bytes -> {out}", flush=True)


if __name__ == "__main__":
    main()
