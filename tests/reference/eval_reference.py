#!/usr/bin/python3
"""Independent reference for `cq eval`: lm-evaluation-harness v0.4.x scoring of the zero-shot
tasks and MMLU 5-shot, written from $CQ_SHARED/docs/EVAL.md (never from our C++ code).

    /usr/bin/python3 tests/reference/eval_reference.py [--shared /work/shared]
        [--out tests/golden/eval] [--models stories260k,tinyopt] [--limit 100] [--add-bos]

For each shared model and each task in $CQ_SHARED/data, writes
tests/golden/eval/<model>[_bos].json with, per task: every request (doc, choice, the number of
context tokens, the continuation token ids, ll, is_greedy) and the metrics.

Semantics (EVAL.md section 0):
  * requests: multiple_choice -> (ctx, " " + choice); lambada -> (ctx, " " + last word)
  * _encode_pair: trailing whitespace of ctx moves into the continuation; whole = enc(ctx+cont),
    ctx_enc = enc(ctx), cont_enc = whole[len(ctx_enc):]; enc = sentencepiece encode of the
    model's tokenizer.model (HF slow LlamaTokenizer, legacy), no BOS unless --add-bos
  * inp = (ctx_enc + cont_enc)[-(max_length+1):][:-1], max_length = max_position_embeddings
  * ll = sum of log_softmax at the continuation positions; is_greedy = all argmax match
  * acc = argmax(ll) == gold, acc_norm = argmax(ll / len(choice chars)) == gold, ties -> lowest
  * lambada: acc = is_greedy, perplexity = exp(-mean(ll))
  * mmlu: 5 first dev rows as shots, per-subject / per-category / size-weighted overall acc
Every forward runs in float64 (weights widened exactly), one request at a time (no padding,
no shared prefix): the C++ engine's batching must not change the numbers.
"""
import argparse
import csv
import glob
import json
import math
import os
import re
import sys

import sentencepiece as spm
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_reference import ReferenceModel  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODELS = ["stories260k", "tinyopt"]

# lm_eval/tasks/mmlu/_generate_configs.py SUBJECTS
MMLU_CATEGORY = {
    "abstract_algebra": "stem", "anatomy": "stem", "astronomy": "stem", "business_ethics": "other",
    "clinical_knowledge": "other", "college_biology": "stem", "college_chemistry": "stem",
    "college_computer_science": "stem", "college_mathematics": "stem", "college_medicine": "other",
    "college_physics": "stem", "computer_security": "stem", "conceptual_physics": "stem",
    "econometrics": "social_sciences", "electrical_engineering": "stem", "elementary_mathematics": "stem",
    "formal_logic": "humanities", "global_facts": "other", "high_school_biology": "stem",
    "high_school_chemistry": "stem", "high_school_computer_science": "stem",
    "high_school_european_history": "humanities", "high_school_geography": "social_sciences",
    "high_school_government_and_politics": "social_sciences", "high_school_macroeconomics": "social_sciences",
    "high_school_mathematics": "stem", "high_school_microeconomics": "social_sciences",
    "high_school_physics": "stem", "high_school_psychology": "social_sciences", "high_school_statistics": "stem",
    "high_school_us_history": "humanities", "high_school_world_history": "humanities", "human_aging": "other",
    "human_sexuality": "social_sciences", "international_law": "humanities", "jurisprudence": "humanities",
    "logical_fallacies": "humanities", "machine_learning": "stem", "management": "other", "marketing": "other",
    "medical_genetics": "other", "miscellaneous": "other", "moral_disputes": "humanities",
    "moral_scenarios": "humanities", "nutrition": "other", "philosophy": "humanities", "prehistory": "humanities",
    "professional_accounting": "other", "professional_law": "humanities", "professional_medicine": "other",
    "professional_psychology": "social_sciences", "public_relations": "social_sciences",
    "security_studies": "social_sciences", "sociology": "social_sciences", "us_foreign_policy": "social_sciences",
    "virology": "other", "world_religions": "humanities",
}


# ----------------------------------------------------------------------------- documents
# Each task yields docs {"ctx": str, "choices": [str], "gold": int} (multiple choice) or
# {"ctx": str, "target": str} (lambada).

def read_jsonl(path, limit):
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            docs.append(json.loads(line))
            if len(docs) == limit:
                break
    return docs


def lambada_docs(data, limit):
    out = []
    for d in read_jsonl(os.path.join(data, "lambada_openai/lambada_test.first100.jsonl"), limit):
        words = d["text"].split(" ")
        out.append({"ctx": " ".join(words[:-1]), "target": " " + words[-1]})
    return out


def arc_docs(data, limit):
    out = []
    for d in read_jsonl(os.path.join(data, "arc_easy/ARC-Easy-Test.first100.jsonl"), limit):
        labels = [c["label"] for c in d["question"]["choices"]]
        out.append({"ctx": "Question: " + d["question"]["stem"] + "\nAnswer:",
                    "choices": [c["text"] for c in d["question"]["choices"]],
                    "gold": labels.index(d["answerKey"])})
    return out


def piqa_docs(data, limit):
    docs = read_jsonl(os.path.join(data, "piqa/valid.first100.jsonl"), limit)
    with open(os.path.join(data, "piqa/valid-labels.first100.lst")) as f:
        labels = [int(x) for x in f.read().split()]
    return [{"ctx": "Question: " + d["goal"] + "\nAnswer:", "choices": [d["sol1"], d["sol2"]], "gold": labels[i]}
            for i, d in enumerate(docs)]


def hellaswag_preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def hellaswag_docs(data, limit):
    out = []
    for d in read_jsonl(os.path.join(data, "hellaswag/hellaswag_val.first100.jsonl"), limit):
        ctx = d["ctx_a"] + " " + d["ctx_b"].capitalize()
        out.append({"ctx": hellaswag_preprocess(d["activity_label"] + ": " + ctx),
                    "choices": [hellaswag_preprocess(e) for e in d["endings"]],
                    "gold": int(d["label"])})
    return out


def boolq_docs(data, limit):
    out = []
    for d in read_jsonl(os.path.join(data, "boolq/val.first100.jsonl"), limit):
        label = d["label"]
        if isinstance(label, str):
            label = {"false": 0, "true": 1}[label.lower()]
        out.append({"ctx": d["passage"] + "\nQuestion: " + d["question"] + "?\nAnswer:",
                    "choices": ["no", "yes"], "gold": int(label)})
    return out


def mmlu_question(row):
    q, a, b, c, d = row[:5]
    return q.strip() + "\nA. " + a + "\nB. " + b + "\nC. " + c + "\nD. " + d + "\nAnswer:"


def mmlu_docs(data, limit):
    out = []
    for test in sorted(glob.glob(os.path.join(data, "mmlu/test/*_test.csv"))):
        subject = os.path.basename(test)[:-len("_test.csv")]
        with open(os.path.join(data, "mmlu/dev", subject + "_dev.csv"), newline="", encoding="utf-8") as f:
            shots = list(csv.reader(f))[:5]
        description = ("The following are multiple choice questions (with answers) about "
                       + subject.replace("_", " ") + ".\n\n")
        prefix = description + "".join(mmlu_question(r) + " " + r[5] + "\n\n" for r in shots)
        with open(test, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        for r in rows[:limit]:
            out.append({"ctx": prefix + mmlu_question(r), "choices": ["A", "B", "C", "D"],
                        "gold": "ABCD".index(r[5]), "subject": subject})
    return out


TASKS = {"lambada_openai": lambada_docs, "arc_easy": arc_docs, "piqa": piqa_docs,
         "hellaswag": hellaswag_docs, "boolq": boolq_docs, "mmlu": mmlu_docs}


# ----------------------------------------------------------------------------- scoring

class Scorer:
    def __init__(self, model_dir, add_bos):
        self.model = ReferenceModel.from_dir(model_dir, dtype=torch.float64)
        self.sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
        with open(os.path.join(model_dir, "config.json")) as f:
            self.max_length = json.load(f)["max_position_embeddings"]
        self.add_bos = add_bos

    def tok_encode(self, s):
        ids = self.sp.encode(s)
        return ([self.sp.bos_id()] + ids) if self.add_bos else ids

    def encode_pair(self, context, continuation):
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.tok_encode(context + continuation)
        ctx = self.tok_encode(context)
        return ctx, whole[len(ctx):]

    @torch.no_grad()
    def loglikelihood(self, context, continuation):
        ctx, cont = self.encode_pair(context, continuation)
        inp = (ctx + cont)[-(self.max_length + 1):][:-1]
        logits = self.model.forward(torch.tensor([inp], dtype=torch.long))[0]
        logp = torch.log_softmax(logits.double(), dim=-1)[len(inp) - len(cont):]
        target = torch.tensor(cont, dtype=torch.long)
        ll = logp.gather(1, target[:, None]).sum().item()
        greedy = bool((logp.argmax(dim=-1) == target).all().item())
        return len(ctx), cont, ll, greedy


def first_argmax(values):
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def mean_stderr(values):
    n = len(values)
    if n < 2:
        return float("nan")
    mu = sum(values) / n
    var = sum((v - mu) ** 2 for v in values) / (n - 1)
    return math.sqrt(var) / math.sqrt(n)


def pooled_stderr(stderrs, sizes):
    var = sum((n - 1) * s * s * n for s, n in zip(stderrs, sizes)) / (sum(sizes) - len(sizes))
    return math.sqrt(var / sum(sizes))


def evaluate(scorer, name, docs):
    requests, acc, acc_norm, lls = [], [], [], []
    for i, doc in enumerate(docs):
        if "target" in doc:
            n_ctx, cont, ll, greedy = scorer.loglikelihood(doc["ctx"], doc["target"])
            requests.append({"doc": i, "choice": 0, "context_tokens": n_ctx, "continuation": cont,
                             "ll": ll, "is_greedy": greedy})
            acc.append(1.0 if greedy else 0.0)
            lls.append(ll)
            continue
        doc_lls = []
        for j, choice in enumerate(doc["choices"]):
            n_ctx, cont, ll, greedy = scorer.loglikelihood(doc["ctx"], " " + choice)
            requests.append({"doc": i, "choice": j, "context_tokens": n_ctx, "continuation": cont,
                             "ll": ll, "is_greedy": greedy})
            doc_lls.append(ll)
        acc.append(1.0 if first_argmax(doc_lls) == doc["gold"] else 0.0)
        norm = [ll / float(len(c)) for ll, c in zip(doc_lls, doc["choices"])]
        acc_norm.append(1.0 if first_argmax(norm) == doc["gold"] else 0.0)

    metrics = {"acc": sum(acc) / len(acc), "acc_stderr": mean_stderr(acc), "docs": len(docs),
               "correct": int(sum(acc))}
    if name == "lambada_openai":
        metrics["perplexity"] = math.exp(-sum(lls) / len(lls))
    elif name in ("arc_easy", "piqa", "hellaswag"):
        metrics["acc_norm"] = sum(acc_norm) / len(acc_norm)
        metrics["acc_norm_stderr"] = mean_stderr(acc_norm)
        metrics["correct_norm"] = int(sum(acc_norm))
    if name == "mmlu":
        subjects = {}
        for doc, a in zip(docs, acc):
            subjects.setdefault(doc["subject"], []).append(a)
        metrics["subjects"] = {s: {"acc": sum(v) / len(v), "acc_stderr": mean_stderr(v), "docs": len(v),
                                   "correct": int(sum(v))} for s, v in subjects.items()}
        categories = {}
        for s, m in metrics["subjects"].items():
            categories.setdefault(MMLU_CATEGORY[s], []).append(m)
        metrics["categories"] = {
            c: {"acc": sum(m["correct"] for m in ms) / sum(m["docs"] for m in ms),
                "acc_stderr": pooled_stderr([m["acc_stderr"] for m in ms], [m["docs"] for m in ms]),
                "docs": sum(m["docs"] for m in ms), "correct": sum(m["correct"] for m in ms)}
            for c, ms in categories.items()}
        ms = list(metrics["subjects"].values())
        metrics["acc_stderr"] = pooled_stderr([m["acc_stderr"] for m in ms], [m["docs"] for m in ms])
    return {"requests": requests, "metrics": metrics}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=os.environ.get("CQ_SHARED", "/work/shared"))
    parser.add_argument("--out", default=os.path.join(REPO, "tests/golden/eval"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--add-bos", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)  # tiny models: one thread is fastest on a shared machine
    data = os.path.join(args.shared, "data")
    for model in args.models.split(","):
        scorer = Scorer(os.path.join(args.shared, "models", model), args.add_bos)
        result = {"model": model, "add_bos": args.add_bos, "max_length": scorer.max_length,
                  "limit": args.limit, "dtype": "float64", "tasks": {}}
        for task in args.tasks.split(","):
            result["tasks"][task] = evaluate(scorer, task, TASKS[task](data, args.limit))
            m = result["tasks"][task]["metrics"]
            print(f"{model} {task}: " + ", ".join(f"{k}={v:.6g}" for k, v in m.items()
                                                   if isinstance(v, (int, float))), flush=True)
        path = os.path.join(args.out, f"{model}{'_bos' if args.add_bos else ''}.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        print("wrote", path)


if __name__ == "__main__":
    main()
