#!/usr/bin/python3
"""Writes tests/golden/ppl/*.json: perplexity, quantized perplexity + kernel statistics and
greedy generations of the shared models, from the independent reference (hf_reference.py).

    /usr/bin/python3 tests/reference/make_golden_ppl.py [--shared /work/shared] [--out tests/golden/ppl]

Protocol (SPEC.md "Perplexity"): the whole text tokenized once with sentencepiece
(tokenizer.model) and BOS (id 1) prepended once, non-overlapping windows of seqlen tokens,
remainder dropped, ppl = exp(mean over windows of the window's mean NLL).
Every number is computed in float32 and again in float64 (weights widened exactly).
"""
import argparse
import hashlib
import json
import os
import sys
import time

import sentencepiece as spm
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_reference import QuantSpec, ReferenceModel, greedy, perplexity  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

MODELS = ["stories260k", "tinyopt"]
TEXTS = {
    "tinystories": ("data/tinystories/TinyStories-valid.first100.txt", [256, 512]),
    "wikitext2": ("data/wikitext2/wikitext2_test_joined.prefix.txt", [256]),
}
SETTINGS = {
    "fp32": QuantSpec(),
    "w8a8_per_token": QuantSpec(w_bits=8, a_bits=8, a_method="per_token"),
    "w8a8_crossquant_a0.15": QuantSpec(w_bits=8, a_bits=8, a_method="crossquant", alpha=0.15),
    "w8a8_crossquant_a1": QuantSpec(w_bits=8, a_bits=8, a_method="crossquant", alpha=1.0),
    "w4a8_g128_crossquant_a0.15": QuantSpec(w_bits=4, w_group=128, a_bits=8, a_method="crossquant", alpha=0.15),
    "w4a4_crossquant_a0.15": QuantSpec(w_bits=4, a_bits=4, a_method="crossquant", alpha=0.15),
}
PROMPT = "Once upon a time"
NEW_TOKENS = 64


def sig7(x):
    return float(f"{x:.7g}")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def spec_dict(spec):
    return {"weight_bits": spec.w_bits, "weight_group": spec.w_group,
            "weight_granularity": None if spec.w_bits is None else ("group" if spec.w_group else "per_channel"),
            "act_bits": spec.a_bits, "act_method": None if spec.a_bits is None else spec.a_method,
            "alpha": spec.alpha if spec.a_bits is not None and spec.a_method == "crossquant" else None,
            "description": spec.describe()}


# float64 reruns (a precision note) by default only for FP32; --float64-all for every setting.
FLOAT64_SETTINGS = {"fp32"}
CACHE = os.environ.get("CQ_GOLDEN_CACHE", "/tmp/cq_golden_ppl_cache")


def run_setting(model_dir, spec, tokens, seqlen, with_float64, cache_key=None):
    """float32 (and float64) perplexity runs; results cached per setting so a restart resumes."""
    cache = os.path.join(CACHE, cache_key + (".f64" if with_float64 else "") + ".json") if cache_key else None
    if cache and os.path.exists(cache):
        with open(cache) as f:
            return json.load(f)
    out = {}
    for dtype, tag in ((torch.float32, "float32"), (torch.float64, "float64"))[: 2 if with_float64 else 1]:
        model = ReferenceModel.from_dir(model_dir, dtype=dtype, quant=spec)
        out[tag] = perplexity(model, tokens, seqlen)
    if cache:
        os.makedirs(CACHE, exist_ok=True)
        with open(cache + ".tmp", "w") as f:
            json.dump(out, f)
        os.replace(cache + ".tmp", cache)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("CQ_SHARED", "/work/shared"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests/golden/ppl"))
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--float64-all", action="store_true", help="float64 rerun of every setting, not only a few")
    ap.add_argument("--keep-existing", action="store_true", help="skip perplexity goldens already written")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--texts", nargs="*", default=list(TEXTS))
    ap.add_argument("--no-cache", action="store_true", help=f"recompute instead of reusing {CACHE}")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(args.threads)

    for name in args.models:
        model_dir = os.path.join(args.shared, "models", name)
        sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
        bos = sp.bos_id()

        # greedy generation
        prompt = [bos] + sp.encode(PROMPT)
        greedy_out = os.path.join(args.out, f"greedy_{name}.json")
        if args.keep_existing and os.path.exists(greedy_out):
            prompt = None
        gen = greedy(ReferenceModel.from_dir(model_dir), prompt, NEW_TOKENS) if prompt else None
        gen64 = greedy(ReferenceModel.from_dir(model_dir, dtype=torch.float64), prompt, NEW_TOKENS) if prompt else None
        golden = None if gen is None else {
            "generator": "tests/reference/make_golden_ppl.py (plain PyTorch, HF semantics)",
            "model": f"models/{name}", "model_sha256": sha256_file(os.path.join(model_dir, "model.safetensors")),
            "prompt": PROMPT, "prompt_ids": prompt, "add_bos": True,
            "decoding": "greedy (argmax, lowest index on ties), float32, no EOS stop",
            "new_tokens": NEW_TOKENS, "generated_ids": gen,
            "generated_text": sp.decode(gen), "float64_agrees": gen == gen64,
            "eos_in_output": sp.eos_id() in gen,
        }
        if golden is not None:
            with open(greedy_out, "w") as f:
                json.dump(golden, f, indent=1)
                f.write("\n")
            print(name, "greedy:", repr(sp.decode(gen)), "float64 agrees:", gen == gen64, flush=True)

        for text_name in args.texts:
            rel, seqlens = TEXTS[text_name]
            path = os.path.join(args.shared, rel)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            tokens = [bos] + sp.encode(text)
            for seqlen in seqlens:
                out = os.path.join(args.out, f"{name}_{text_name}_{seqlen}.json")
                if args.keep_existing and os.path.exists(out):
                    print(f"keeping {out}", flush=True)
                    continue
                t0 = time.time()
                # the cache is only reused for the same model, text and reference code
                inputs_digest = hashlib.sha256("".join(
                    [sha256_file(os.path.join(model_dir, "model.safetensors")), sha256_file(path)]
                    + [sha256_file(os.path.join(HERE, f)) for f in ("hf_reference.py", "hf_checkpoint.py")]
                ).encode()).hexdigest()[:12]
                golden = {
                    "generator": "tests/reference/make_golden_ppl.py (plain PyTorch, HF semantics)",
                    "model": f"models/{name}",
                    "model_sha256": sha256_file(os.path.join(model_dir, "model.safetensors")),
                    "text": rel, "text_sha256": sha256_file(path),
                    "tokenizer": "sentencepiece tokenizer.model, BOS id 1 prepended once, no other special tokens",
                    "token_count": len(tokens), "first_token_ids": tokens[:32],
                    "seqlen": seqlen, "windows": len(tokens) // seqlen,
                    "protocol": "non-overlapping windows, remainder dropped, no BOS per window; "
                                "ppl = exp(mean over windows of mean NLL of tokens 1..seqlen-1)",
                    "quantized_layers": "every decoder linear layer (OPT q,k,v,out_proj,fc1,fc2; LLaMA q,k,v,o,gate,up,down); "
                                        "embedding, project_in/out, lm_head unquantized; activations per sequence (window)",
                    "tolerance_note": "float32 vs float64 of the same fake-quantized model: FP32 ~1e-7 relative, W8 settings "
                                      "~2e-4, W4 settings up to ~1% (4-bit codes flipping at rounding boundaries): "
                                      "compare W8 at 0.1%, W4 at 2%",
                    "settings": {},
                }
                for key, spec in SETTINGS.items():
                    r = run_setting(model_dir, spec, tokens, seqlen, args.float64_all or key in FLOAT64_SETTINGS,
                                    None if args.no_cache else f"{name}_{text_name}_{seqlen}_{key}_{inputs_digest}")
                    f32, f64 = r["float32"], r.get("float64")
                    entry = {"spec": spec_dict(spec), "ppl": f32["ppl"], "mean_nll": f32["mean_nll"]}
                    if f64:
                        entry.update({"ppl_float64": f64["ppl"], "mean_nll_float64": f64["mean_nll"],
                                      "ppl_rel_diff_f32_f64": abs(f32["ppl"] - f64["ppl"]) / f64["ppl"]})
                    entry["window_nll"] = [sig7(v) for v in f32["window_nll"]]
                    if spec.a_bits is not None:
                        s32 = f32["stats"]
                        entry["kernel"] = {
                            "elements": s32["elements"], "kernel": s32["kernel"], "exact_zeros": s32["exact_zeros"],
                            "kernel_proportion": s32["kernel_proportion"]}
                        if f64:
                            s64 = f64["stats"]
                            entry["kernel"].update({"kernel_float64": s64["kernel"],
                                                    "kernel_proportion_float64": s64["kernel_proportion"],
                                                    "exact_zeros_float64": s64["exact_zeros"]})
                        entry["kernel"]["per_layer"] = {
                            k: {"elements": v["elements"], "kernel": v["kernel"], "exact_zeros": v["exact_zeros"],
                                "kernel_proportion": sig7(v["kernel_proportion"])}
                            for k, v in s32["per_layer"].items()}
                        if spec.a_method == "crossquant":
                            entry["kernel"]["share_c_ge_t"] = s32["share_c_ge_t"]
                    golden["settings"][key] = entry
                    print(f"{name} {text_name} {seqlen} {key}: ppl {f32['ppl']:.6f}"
                          + (f" (f64 {f64['ppl']:.6f})" if f64 else "")
                          + (f" kernel {entry['kernel']['kernel_proportion']:.5f}" if "kernel" in entry else ""),
                          flush=True)
                s = golden["settings"]
                # alpha = 1 is exactly per-token (same float32 arithmetic): must be identical.
                assert s["w8a8_crossquant_a1"]["ppl"] == s["w8a8_per_token"]["ppl"], "alpha=1 != per-token"
                assert s["w8a8_crossquant_a1"]["kernel"]["kernel"] == s["w8a8_per_token"]["kernel"]["kernel"]
                with open(out, "w") as f:
                    json.dump(golden, f, indent=1)
                    f.write("\n")
                print(f"wrote {out} ({time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
