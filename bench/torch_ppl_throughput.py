#!/usr/bin/python3
"""Perplexity throughput of plain PyTorch (float32, no_grad) on a HF model directory.

    /usr/bin/python3 bench/torch_ppl_throughput.py MODEL_DIR --seqlen 512 --windows 4 --threads 2

The same computation as `cq ppl` (GPTQ protocol: non-overlapping windows, mean NLL per
window) through the independent reference forward in tests/reference/hf_reference.py,
one window per forward call (batch 1, like `cq ppl`). Tokens come from --text (tokenized
with the model's sentencepiece tokenizer.model, BOS prepended) or, by default, seeded
random ids below the vocabulary size: throughput does not depend on the content.
Prints one JSON object on stdout; tokens_per_s is computed from the median of --repeats
timed passes after one untimed warm-up window.
"""
import argparse
import json
import os
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1, help="windows per forward call")
    ap.add_argument("--text", default=None, help="text file to tokenize instead of random ids")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    # Debian's torch does its matrix products in the system BLAS (OpenBLAS, pthreads), whose
    # thread count is read once when the library loads: set it before importing torch, and
    # torch's own (OpenMP) thread count after.
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "reference"))
    from hf_reference import ReferenceModel, perplexity, window_tokens

    torch.set_num_threads(args.threads)
    model = ReferenceModel.from_dir(args.model_dir, dtype=torch.float32)
    need = args.seqlen * args.windows
    if args.text:
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model_dir, "tokenizer.model"))
        with open(args.text, encoding="utf-8") as f:
            tokens = [sp.bos_id()] + sp.encode(f.read())
        if len(tokens) < need:
            sys.exit(f"{args.text}: {len(tokens)} tokens, {need} needed")
        tokens = tokens[:need]
        source = args.text
    else:
        g = torch.Generator().manual_seed(args.seed)
        tokens = torch.randint(0, model.config["vocab_size"], (need,), generator=g).tolist()
        source = f"random ids, seed {args.seed}"

    with torch.inference_mode():
        perplexity(model, window_tokens(tokens, args.seqlen)[:1].flatten(), args.seqlen, batch=1)  # warm-up
        times, result = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = perplexity(model, tokens, args.seqlen, batch=args.batch)
            times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    print(json.dumps({
        "tool": "torch", "torch_version": torch.__version__, "model_dir": args.model_dir,
        "threads": args.threads, "seqlen": args.seqlen, "windows": result["windows"], "batch": args.batch,
        "tokens": result["windows"] * args.seqlen, "tokens_source": source,
        "seconds_median": seconds, "seconds_all": times,
        "tokens_per_s": result["windows"] * args.seqlen / seconds, "ppl": result["ppl"],
    }))


if __name__ == "__main__":
    main()
