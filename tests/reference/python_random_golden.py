#!/usr/bin/python3
"""Golden for cq::PythonRandom (src/util/python_random.h): what CPython's `random` module
returns, so the C++ port of random.Random(seed).sample is checked against the real thing.

    /usr/bin/python3 tests/reference/python_random_golden.py  # writes tests/golden/eval/python_random.json

lm-evaluation-harness draws few-shot examples with random.Random(1234).sample(docs, n), one
generator per task consumed document after document; the cases cover both branches of
sample() (pool for small populations, a set of selected indices for large ones, the
threshold moving with k > 5), getrandbits widths up to 64 and seeds above 2**32.
"""
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "golden", "eval", "python_random.json")

SEEDS = [0, 1, 42, 1234, 2**32 + 5, 2**40 + 123456789]
SAMPLES = [(10, 3), (10, 10), (21, 5), (22, 5), (85, 6), (86, 6), (100, 7), (1000, 7), (5000, 40), (3, 0), (1, 1),
           (64, 11), (2376, 26)]


def lm_eval_contexts(eval_docs, pool, k, draw_one_more, seed=1234):
    """lm-eval v0.4 ContextSampler.get_context, from its definition: one Random(seed) per task;
    per document sample(pool, k + 1 if fewshot_split == test_split else k), drop drawn docs
    equal to the evaluated one, keep k; doc_to_text + " " + target + "\\n\\n" per example."""
    rnd = random.Random(seed)
    contexts = []
    for doc in eval_docs:
        drawn = rnd.sample(pool, k + 1 if draw_one_more else k)
        selected = [x for x in drawn if x != doc][:k]
        contexts.append("".join(x["text"] + " " + x["target"] + "\n\n" for x in selected) + doc["text"])
    return contexts


def fewshot_cases():
    # lambada_openai: no training split, the test docs are the pool, k draws (no extra one).
    lambada = [{"text": f"story {i} ends with", "target": f" w{i}"} for i in range(12)]
    # piqa/hellaswag/boolq: fewshot_split == test_split (both None): k + 1 draws; eval doc 2
    # equals pool doc 4, so it is dropped when drawn.
    train = [{"text": f"Question: g{i}\nAnswer:", "target": f"s{i}"} for i in range(10)]
    valid = [{"text": f"Question: v{i}\nAnswer:", "target": f"t{i}"} for i in range(6)]
    valid[2] = dict(train[4])
    return [
        {"name": "lambada_like", "k": 3, "draw_one_more": False, "pool": lambada, "eval": lambada,
         "contexts": lm_eval_contexts(lambada, lambada, 3, False)},
        {"name": "piqa_like", "k": 2, "draw_one_more": True, "pool": train, "eval": valid,
         "contexts": lm_eval_contexts(valid, train, 2, True)},
        {"name": "arc_like", "k": 5, "draw_one_more": False, "pool": train, "eval": valid,
         "contexts": lm_eval_contexts(valid, train, 5, False)},
    ]


def main():
    cases = []
    for seed in SEEDS:
        rnd = random.Random(seed)
        bits = {str(k): [rnd.getrandbits(k) for _ in range(4)] for k in (1, 7, 31, 32, 33, 53, 64)}
        rnd = random.Random(seed)
        samples = [{"population": n, "k": k, "indices": rnd.sample(range(n), k)} for n, k in SAMPLES]
        cases.append({"seed": seed, "getrandbits": bits, "samples_in_sequence": samples})
    # lm-eval's use: one Random(1234) per task, sample(docs, n + 1) per evaluated document.
    rnd = random.Random(1234)
    fewshot = [rnd.sample(range(40), 4) for _ in range(25)]
    golden = {"python": sys.version.split()[0], "cases": cases, "fewshot_1234_pool40_k4x25": fewshot,
              "fewshot_contexts": fewshot_cases()}
    with open(OUT, "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
