#!/usr/bin/env python3
"""Every figure published in README.md and docs/RESULTS.md, from one run of `cq`.

Runs `cq demo`, `cq sweep` (both shared models, seqlen 256 and 512, and OmniQuant's calibrated
rows at 256), `cq ppl` (tinyopt's
kernel report) and `cq eval --compare` (tinyopt, 100 documents per task), reads their
--json outputs (full precision; the printed tables round), and rewrites the text between
the marker comments

    <!-- figures:NAME -->  ...  <!-- /figures:NAME -->

in README.md and docs/RESULTS.md, with the machine (lscpu model name), the thread count and
the commit. Nothing else in those files is touched. tests/unit/test_published_figures.cpp
checks the published numbers against the PyTorch goldens' tolerances.

Usage (from the repository root, after building cq):
    python3 scripts/make_figures.py [--cq build/cq] [--shared ../shared] [--out build/figures] [--reuse]
                                    [--only outlier]
--reuse takes the JSON of an earlier run from --out instead of running cq again (to change
the text only). A full run takes about 15 minutes on 2 cores. --only outlier runs and writes
only the outlier model's rotation sweeps (`cq sweep --sample-windows`, about two minutes), with
the machine and commit of that run.
"""
import argparse
import datetime
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = (("stories260k", "stories260k (LLaMA)"), ("tinyopt", "tinyopt (OPT)"))
TINYSTORIES = "data/tinystories/TinyStories-valid.first100.txt"
CALIB = "data/wikitext2/wikitext2_test_joined.prefix.txt"
README_GRID = "scheme=w8a8,w4a8-g128,w4a4;method=rtn,smoothquant,awq;act=per-token,crossquant"
RESULTS_512_GRID = "scheme=w8a8,w4a8-g128,w4a4;method=rtn;act=per-token,crossquant"
# OmniQuant calibrated natively (its own per-token asymmetric activations, q/k/v too), one sweep
# per model: OmniQuant's 20 epochs and learning rates, on the calibration text of the rows above.
OMNI_GRID = "scheme=w4a4,w6a6,w4a16-g128;method=omniquant"
OMNI_SCHEMES = (("w4a4", "W4A4"), ("w6a6", "W6A6"), ("w4a16-g128", "W4A16-g128"))
OMNI_CALIB_SAMPLES, OMNI_CALIB_SEQLEN, OMNI_EPOCHS = 16, 256, 20
EVAL_MODEL, EVAL_LIMIT = "tinyopt", 100
EVAL_TASKS = "lambada_openai,arc_easy,piqa,hellaswag,boolq"
EVAL_COMPARE = "fp32,w8a8-per-token,w8a8-crossquant"
SCHEMES = (("w8a8", "W8A8"), ("w4a8-g128", "W4A8-g128"), ("w4a4", "W4A4"))
METHODS = (("rtn", ""), ("smoothquant", "SmoothQuant + "), ("awq", "AWQ + "))
# The outlier demo model's rotation sweep (issue 16): the shared models' rotation grid
# (docs/RESULTS.md), on tokens sampled from the FP32 model itself (docs/SWEEP.md).
OUTLIER_GRID = "scheme=w4a8,w4a4;rotate=none,hadamard;method=rtn,gptq;act=per-token,crossquant"
OUTLIER_SAMPLING = ["--sample-windows", "8", "--seqlen", "512", "--sample-seed", "0",
                    "--calib-samples", "16", "--calib-seqlen", "256"]
OUTLIER_SETTINGS = (("rtn", "none", "per-token", "per-token"), ("rtn", "none", "crossquant", "CrossQuant α=0.15"),
                    ("rtn", "hadamard", "per-token", "Hadamard + per-token"),
                    ("rtn", "hadamard", "crossquant", "Hadamard + CrossQuant α=0.15"),
                    ("gptq", "none", "per-token", "GPTQ + per-token"), ("gptq", "none", "crossquant", "GPTQ + CrossQuant α=0.15"),
                    ("gptq", "hadamard", "per-token", "GPTQ + Hadamard + per-token"),
                    ("gptq", "hadamard", "crossquant", "GPTQ + Hadamard + CrossQuant α=0.15"))


def run(command, out_dir, name, reuse):
    """Runs cq with --json written to out_dir/name.json (or reuses that file); returns the JSON."""
    path = out_dir / f"{name}.json"
    if not (reuse and path.exists()):
        print("make_figures: " + " ".join(command), file=sys.stderr, flush=True)
        subprocess.run(command + ["--json", str(path)], check=True, stdout=subprocess.DEVNULL)
    return json.loads(path.read_text())


def machine():
    """lscpu's model name, with family/model and the SIMD extensions that change float sums."""
    fields = {}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    flags = fields.get("Flags", "").split()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        simd += " VNNI"
    return (f"{fields.get('Model name', 'unknown CPU')} (family {fields.get('CPU family', '?')}, model "
            f"{fields.get('Model', '?')}, {simd}), {os.cpu_count()} threads")


def commit():
    sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "CMakeLists.txt"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return sha + (" with uncommitted changes under src/" if dirty else "")


def sweep_row(rows, scheme, method="rtn", activation=None, rotation="none"):
    """The row of a `cq sweep --json` for scheme ('' = FP32), method, activation and rotation."""
    for row in rows["rows"] if isinstance(rows, dict) else rows:
        if (row.get("scheme") or "") != scheme:
            continue
        if scheme and ((row.get("quant_method") or "rtn") != method or row.get("activation") != activation
                       or (row.get("rotation") or "none") != rotation):
            continue
        return row
    raise SystemExit(f"make_figures: no sweep row scheme={scheme!r} method={method} act={activation}")


def ppl(row):
    return f"{row['perplexity']:.4f}"


def kernel(row):
    return f"{row['kernel_percent']:.2f}"


def activation_label(activation):
    return "CrossQuant α=0.15" if activation == "crossquant" else activation


def find_comparison(document):
    """cq eval --compare's table ({"tasks": [...], "rows": [...]}), wherever the JSON keeps it."""
    if isinstance(document, dict):
        if isinstance(document.get("rows"), list) and isinstance(document.get("tasks"), list):
            return document
        for value in document.values():
            found = find_comparison(value)
            if found:
                return found
    return None


def markdown_table(header, rows, right_from):
    widths = [max(len(str(line[c])) for line in [header] + rows) for c in range(len(header))]
    def line(cells):
        return "| " + " | ".join(str(v).ljust(w) if c < right_from else str(v).rjust(w)
                                  for c, (v, w) in enumerate(zip(cells, widths))) + " |"
    rule = "|" + "|".join("-" * (w + 2) if c < right_from else "-" * (w + 1) + ":" for c, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows])


def replace_block(text, name, body, path):
    pattern = re.compile(rf"(<!-- figures:{re.escape(name)} -->\n).*?(<!-- /figures:{re.escape(name)} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"make_figures: {path} has no <!-- figures:{name} --> ... <!-- /figures:{name} --> markers")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def omniquant_table(sweeps_omni, sweeps, provenance):
    """README: OmniQuant calibrated by cq (one `cq sweep` per model), under the baseline table."""
    header = ["setting", "method", "stories260k (LLaMA)", "tinyopt (OPT)"]
    rows = []
    for scheme, label in OMNI_SCHEMES:
        cells = []
        for model, _ in MODELS:
            r = sweep_row(sweeps_omni[model], scheme, "omniquant", "per-token-asym" if scheme != "w4a16-g128" else "")
            cells.append(ppl(r) + (f" / {kernel(r)}" if r.get("kernel_percent") is not None else ""))
        rows.append([label, "OmniQuant" + (" + per-token-asym (q/k/v too)" if scheme != "w4a16-g128" else " (weights only)")] + cells)
    omni = lambda model: sweep_row(sweeps_omni[model], "w4a4", "omniquant", "per-token-asym")["perplexity"]
    rtn = lambda model: sweep_row(sweeps[model], "w4a4", "rtn", "per-token")["perplexity"]
    title = (f"**OmniQuant, calibrated by `cq`** (`cq sweep --grid \"{OMNI_GRID}\" --calib wikitext-2 "
             f"--calib-samples {OMNI_CALIB_SAMPLES} --calib-seqlen {OMNI_CALIB_SEQLEN} --epochs {OMNI_EPOCHS}`: "
             f"LWC and LET trained block by block with OmniQuant's learning rates, 1e-2 and 5e-3; same text, "
             f"seqlen 256 and FP32 rows as above)")
    prose = (f"OmniQuant's W4A4 also quantizes q, k and v (after RoPE on LLaMA) at 4 bits, which the per-token rows "
             f"above do not: stories260k {omni('stories260k'):.2f} against per-token's {rtn('stories260k'):.2f}, "
             f"tinyopt {omni('tinyopt'):.2f} against {rtn('tinyopt'):.2f}. docs/BASELINES.md compares it with "
             f"round-to-nearest on the same tensors (--quantize-bmm-input) and with its own initialisation (--epochs 0).")
    return (provenance + "\n\n" + title + "\n\n" + markdown_table(header, rows, 99) + "\n\n" +
            textwrap.fill(prose, 92) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cq", default=str(ROOT / "build" / "cq"))
    ap.add_argument("--shared", default=os.environ.get("CQ_SHARED", str(ROOT.parent / "shared")))
    ap.add_argument("--out", default=str(ROOT / "build" / "figures"))
    ap.add_argument("--reuse", action="store_true", help="reuse the JSON files of an earlier run in --out")
    ap.add_argument("--only", choices=["outlier"], help="run and write only this part (outlier: the outlier model's "
                                                          "rotation sweep)")
    args = ap.parse_args()
    shared = pathlib.Path(args.shared)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cq = [args.cq]
    text = str(shared / TINYSTORIES)
    outlier = outlier_blocks(cq, out, args.reuse)
    if args.only == "outlier":
        write_blocks({ROOT / "README.md": {"outlier-rotation": outlier["readme"]},
                      ROOT / "docs" / "RESULTS.md": {"results-outlier-rotation": outlier["results"]}})
        return

    # The machine, commit and date of the run that wrote the JSON (kept with it for --reuse).
    run_path = out / "run.json"
    if not (args.reuse and run_path.exists()):
        run_path.write_text(json.dumps({"machine": machine(), "commit": commit(),
                                        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}"}))
    run_info = json.loads(run_path.read_text())

    demo = run(cq + ["demo", "--dir", str(out / "demo-model")], out, "demo", args.reuse)["results"]
    demo_kernel = {r["setting"]: 100 * r["kernel_fraction"] for r in demo if r["quantization"].get("activation_bits", 16) < 16}
    demo_table = [f"{'setting':<28} {'kernel %':>10} {'mean KL (nats)':>14} {'top-1 agree':>12} {'ppl':>10}"]
    for r in demo:
        k = f"{100 * r['kernel_fraction']:.2f}" if r["setting"] in demo_kernel else "-"
        demo_table.append(f"{r['setting']:<28} {k:>10} {r['mean_kl']:>14.6f} {100 * r['top1_agreement']:>11.2f}% "
                          f"{r['perplexity']:>10.3f}")

    sweeps, sweeps_512, sweeps_omni, kernel_report = {}, {}, {}, None
    for model, _ in MODELS:
        model_dir = str(shared / "models" / model)
        sweeps[model] = run(cq + ["sweep", "--model", model_dir, "--text", text, "--seqlen", "256",
                                  "--calib", str(shared / CALIB), "--calib-samples", "16", "--calib-seqlen", "256",
                                  "--grid", README_GRID], out, f"sweep_{model}_256", args.reuse)
        sweeps_512[model] = run(cq + ["sweep", "--model", model_dir, "--text", text, "--seqlen", "512",
                                      "--grid", RESULTS_512_GRID], out, f"sweep_{model}_512", args.reuse)
        sweeps_omni[model] = run(cq + ["sweep", "--model", model_dir, "--text", text, "--seqlen", "256",
                                       "--calib", str(shared / CALIB), "--calib-samples", str(OMNI_CALIB_SAMPLES),
                                       "--calib-seqlen", str(OMNI_CALIB_SEQLEN), "--epochs", str(OMNI_EPOCHS),
                                       "--grid", OMNI_GRID], out, f"sweep_{model}_omniquant", args.reuse)
    kernel_report = run(cq + ["ppl", "--model", str(shared / "models" / "tinyopt"), "--text", text, "--seqlen", "256",
                              "--scheme", "w8a8", "--act-quant", "per-token"], out, "ppl_tinyopt_w8a8_per_token", args.reuse)
    evaluation = run(cq + ["eval", "--model", str(shared / "models" / EVAL_MODEL), "--data-dir", str(shared / "data"),
                           "--tasks", EVAL_TASKS, "--limit", str(EVAL_LIMIT), "--compare", EVAL_COMPARE],
                     out, "eval_compare", args.reuse)

    provenance = (f"<sub>Produced by `scripts/make_figures.py` in one run on {run_info['machine']}, commit "
                  f"{run_info['commit']}, {run_info['date']}. Float sums differ between "
                  f"CPUs: another machine may differ in the last digits, within the tolerances `make test` checks "
                  f"([docs/RESULTS.md](docs/RESULTS.md)).</sub>")

    # README: the 18-row sweep, both models.
    header = ["setting", "method", "stories260k (LLaMA)", "tinyopt (OPT)"]
    rows = [["FP32", "-"] + [ppl(sweep_row(sweeps[m], "")) for m, _ in MODELS]]
    for scheme, scheme_label in SCHEMES:
        for method, prefix in METHODS:
            for activation in ("per-token", "crossquant"):
                cells = [f"{ppl(r)} / {kernel(r)}" for r in (sweep_row(sweeps[m], scheme, method, activation) for m, _ in MODELS)]
                rows.append([scheme_label, prefix + activation_label(activation)] + cells)
    table = markdown_table(header, rows, 99)
    s = lambda scheme, method, act: sweep_row(sweeps["stories260k"], scheme, method, act)["perplexity"]
    prose = (
        f"tinyopt's kernel is almost entirely exact zeros (its fc2 input is a ReLU output), and neither small model "
        f"has massive outlier channels; the generated model of `make run` has them, and there CrossQuant's kernel is "
        f"{demo_kernel_value(demo_kernel, 'CrossQuant'):.1f}\u00a0% against per-token's "
        f"{demo_kernel_value(demo_kernel, 'per-token'):.1f}\u00a0%. Without outliers CrossQuant has little to fix: at W4A4 "
        f"on stories260k its α = 0.15 gives {s('w4a4', 'rtn', 'crossquant'):.2f} against per-token's "
        f"{s('w4a4', 'rtn', 'per-token'):.2f}, at W8A8 {s('w8a8', 'rtn', 'crossquant'):.4f} against "
        f"{s('w8a8', 'rtn', 'per-token'):.4f}, at W4A8-g128 {s('w4a8-g128', 'rtn', 'crossquant'):.4f} against "
        f"{s('w4a8-g128', 'rtn', 'per-token'):.4f}. AWQ's asymmetric groups help stories260k at W4 "
        f"({s('w4a8-g128', 'awq', 'per-token'):.2f} against {s('w4a8-g128', 'rtn', 'per-token'):.2f} for symmetric "
        f"rounding, per-token activations).")
    readme_sweep = provenance + "\n\n" + table + "\n\n" + textwrap.fill(prose, 92) + "\n"
    readme_omniquant = omniquant_table(sweeps_omni, sweeps, provenance)

    # README: cq eval --compare on tinyopt.
    comparison = find_comparison(evaluation)
    if comparison is None:
        raise SystemExit("make_figures: no comparison table in the cq eval --json output")
    tasks = comparison["tasks"]
    header = ["Configuration", "Setting"] + [f"{t['task']} {t['metric']}" for t in tasks] + ["Average"]
    rows = [[r["configuration"], r["description"]] + [f"{100 * r['values'][t['task']]:.2f}" for t in tasks] +
            [f"{100 * r['average']:.2f}"] for r in comparison["rows"]]
    readme_eval = (provenance + "\n\n```\n" + markdown_table(header, rows, 2) + "\n```\n")

    readme_demo = "```\n" + "\n".join(demo_table) + "\n```\n\n" + provenance + "\n"

    # docs/RESULTS.md: perplexity at 256 and 512, kernel at 256.
    header = ["model", "seqlen", "FP32", "W8A8 per-token", "W8A8 CrossQuant", "W4A8-g128 CrossQuant", "W4A4 CrossQuant"]
    rows = []
    for model, label in MODELS:
        for seqlen, rows_of in ((256, sweeps), (512, sweeps_512)):
            r = rows_of[model]
            rows.append([label if seqlen == 256 else model, str(seqlen), ppl(sweep_row(r, "")),
                         ppl(sweep_row(r, "w8a8", "rtn", "per-token")), ppl(sweep_row(r, "w8a8", "rtn", "crossquant")),
                         ppl(sweep_row(r, "w4a8-g128", "rtn", "crossquant")), ppl(sweep_row(r, "w4a4", "rtn", "crossquant"))])
    results_ppl = provenance + "\n\n" + markdown_table(header, rows, 99) + "\n"
    header = ["model", "W8A8 per-token", "W8A8 CrossQuant", "W4A4 CrossQuant"]
    rows = [[model] + [kernel(sweep_row(sweeps[model], scheme, "rtn", act)) + " %"
                       for scheme, act in (("w8a8", "per-token"), ("w8a8", "crossquant"), ("w4a4", "crossquant"))]
            for model, _ in MODELS]
    report = kernel_report["kernel"]
    totals = report.get("total", report)
    results_kernel = markdown_table(header, rows, 99) + "\n\n" + textwrap.fill(
        f"tinyopt's kernel is dominated by exact zeros: its fc2 input is a ReLU output (`cq kernel` reports exact "
        f"zeros separately; W8A8 per-token: {totals['exact_zeros'] / 1e6:.1f} M of the {totals['kernel'] / 1e6:.1f} M "
        f"kernel elements). These two small models have no massive outlier channels, so CrossQuant's kernel advantage "
        f"is small here; the generated demo model of `make run` has them (per-token "
        f"{demo_kernel_value(demo_kernel, 'per-token'):.1f}\u00a0% vs CrossQuant {demo_kernel_value(demo_kernel, 'CrossQuant'):.1f}\u00a0%).", 92) + "\n"

    write_blocks({ROOT / "README.md": {"demo": readme_demo, "sweep": readme_sweep, "sweep-omniquant": readme_omniquant,
                                       "zero-shot": readme_eval, "outlier-rotation": outlier["readme"]},
                  ROOT / "docs" / "RESULTS.md": {"results-ppl": results_ppl, "results-kernel": results_kernel,
                                                 "results-outlier-rotation": outlier["results"]}})


def outlier_blocks(cq, out, reuse):
    """The outlier demo model's rotation sweep: README and docs/RESULTS.md blocks, with the
    machine and commit of the run that made the JSON (kept with it for --reuse)."""
    model_dir = out / "outlier-model"
    run_path = out / "run_outlier.json"
    names = ("sweep_outlier_rotation", "sweep_outlier_w4a16", "sweep_outlier_rotation_seed1")
    if not (reuse and run_path.exists() and all((out / f"{name}.json").exists() for name in names)):
        reuse = False
        if not (model_dir / "config.json").exists():
            subprocess.run(cq + ["synth", "--preset", "opt-outliers", "--out", str(model_dir)], check=True,
                           stdout=subprocess.DEVNULL)
        run_path.write_text(json.dumps({"machine": machine(), "commit": commit(),
                                        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}"}))
    run_info = json.loads(run_path.read_text())
    sweep = run(cq + ["sweep", "--model", str(model_dir), "--grid", OUTLIER_GRID] + OUTLIER_SAMPLING,
                out, names[0], reuse)
    # Weights alone (A16), with and without the rotation: where the rotated rows' damage comes from.
    weights = run(cq + ["sweep", "--model", str(model_dir), "--grid", "scheme=w4a8;rotate=none,hadamard;method=rtn",
                        "--abits", "16"] + OUTLIER_SAMPLING[:6], out, names[1], reuse)
    # The same grid on another sample (evaluation and calibration): how far sampling moves a row.
    other_seed = [value if flag != "--sample-seed" else "1"
                  for flag, value in zip(["", *OUTLIER_SAMPLING], OUTLIER_SAMPLING)]
    resampled = run(cq + ["sweep", "--model", str(model_dir), "--grid", OUTLIER_GRID] + other_seed, out, names[2], reuse)
    fp32 = sweep_row(sweep, "")["perplexity"]
    nats = lambda row: math.log(row["perplexity"] / fp32)
    resampled_fp32 = sweep_row(resampled, "")["perplexity"]
    seed_shift = max(abs(nats(a) - math.log(b["perplexity"] / resampled_fp32))
                     for a, b in zip(sweep["rows"][1:], resampled["rows"][1:]))
    row = lambda scheme, method, act, rotation="none": sweep_row(sweep, scheme, method, act, rotation)
    provenance = (f"<sub>Produced by `scripts/make_figures.py` in one run on {run_info['machine']}, commit "
                  f"{run_info['commit']}, {run_info['date']}. Float sums differ between CPUs: another machine may "
                  f"differ in the last digits (and, rarely, in a sampled token).</sub>")
    positions = sweep["sample_windows"] * (sweep["seqlen"] - 1)
    calib_seqlen = int(OUTLIER_SAMPLING[OUTLIER_SAMPLING.index("--calib-seqlen") + 1])
    command = ("```sh\ncq synth --preset opt-outliers --out outliers\n"
               f"cq sweep --model outliers {' '.join(OUTLIER_SAMPLING)} \\\n  --grid \"{OUTLIER_GRID}\"\n```")

    # README: one line per method, W4A8 and W4A4 side by side.
    header = ["method", "W4A8 ppl / kernel %", "W4A4 ppl / kernel %"]
    rows = [["FP32 (its own samples)", f"{fp32:.2f}", f"{fp32:.2f}"]]
    for method, rotation, act, label in OUTLIER_SETTINGS:
        rows.append([label] + [f"{row(s, method, act, rotation)['perplexity']:.2f} / "
                               f"{row(s, method, act, rotation)['kernel_percent']:.2f}" for s in ("w4a8", "w4a4")])
    readme = (provenance + "\n\n" + markdown_table(header, rows, 1) + "\n\n" + textwrap.fill(
        f"On the outlier model of `make run` (no tokenizer: {sweep['sample_windows']} windows of {sweep['seqlen']} tokens "
        f"sampled from its FP32 self, docs/SWEEP.md; a row's perplexity above FP32 is its KL damage) CrossQuant is the "
        f"best activation quantizer at both widths, and rotation does not help it: W4A4 per-token collapses (kernel "
        f"{row('w4a4', 'rtn', 'per-token')['kernel_percent']:.0f}\u00a0%), rotation rescues it only partly "
        f"({row('w4a4', 'rtn', 'per-token', 'hadamard')['perplexity']:.0f}), and rotated rows pay for how this model "
        f"makes its outliers (docs/RESULTS.md, \"The outlier demo model\").", 92) + "\n")

    # docs/RESULTS.md: the whole grid with the KL estimate, and the reading.
    header = ["setting", "method", "perplexity", "kernel %", "log(ppl / FP32), nats"]
    rows = [["FP32", "-", f"{fp32:.4f}", "-", "0"]]
    for scheme, label in (("w4a8", "W4A8"), ("w4a4", "W4A4")):
        for method, rotation, act, name in OUTLIER_SETTINGS:
            r = row(scheme, method, act, rotation)
            rows.append([label, name, f"{r['perplexity']:.4f}", f"{r['kernel_percent']:.3f}", f"{nats(r):.4f}"])
    weights_plain = nats(sweep_row(weights, "w4a8", "rtn", ""))  # "": activations not quantized
    weights_rotated = nats(sweep_row(weights, "w4a8", "rtn", "", "hadamard"))
    n = lambda scheme, method, act, rotation="none": f"{nats(row(scheme, method, act, rotation)):.3f}"
    k = lambda scheme, method, act, rotation="none": f"{row(scheme, method, act, rotation)['kernel_percent']:.1f}"
    def versus(scheme):  # rotated vs unrotated GPTQ + CrossQuant, against the sampling noise
        gap = nats(row(scheme, "gptq", "crossquant", "hadamard")) - nats(row(scheme, "gptq", "crossquant"))
        return "within the sampling noise" if abs(gap) <= seed_shift else "ahead" if gap < 0 else "behind"
    bullets = [
        f"**CrossQuant** is the best activation quantizer on this model at both widths: W4A8 {n('w4a8', 'rtn', 'crossquant')} "
        f"nats against per-token's {n('w4a8', 'rtn', 'per-token')} (RTN weights; {n('w4a8', 'gptq', 'crossquant')} against "
        f"{n('w4a8', 'gptq', 'per-token')} with GPTQ), W4A4 {n('w4a4', 'rtn', 'crossquant')} against "
        f"{n('w4a4', 'rtn', 'per-token')}. W4A8 CrossQuant costs about what its W4 weights alone cost "
        f"({weights_plain:.3f} nats with A16).",
        f"**W4A4 per-token collapses**: its kernel is {k('w4a4', 'rtn', 'per-token')}\u00a0% (4 bits per token leave only "
        f"the outlier channels), its perplexity {row('w4a4', 'rtn', 'per-token')['perplexity']:.0f} is above the "
        f"vocabulary's 512 (worse than guessing uniformly), and GPTQ cannot help "
        f"({row('w4a4', 'gptq', 'per-token')['perplexity']:.0f}): the linear layers see almost only zeros.",
        f"**Rotation** removes most of per-token's kernel (W4A8 {k('w4a8', 'rtn', 'per-token')} \u2192 "
        f"{k('w4a8', 'rtn', 'per-token', 'hadamard')}\u00a0%, W4A4 {k('w4a4', 'rtn', 'per-token')} \u2192 "
        f"{k('w4a4', 'rtn', 'per-token', 'hadamard')}\u00a0%) and so rescues W4A4 per-token in part "
        f"({n('w4a4', 'rtn', 'per-token')} \u2192 {n('w4a4', 'rtn', 'per-token', 'hadamard')} nats), but with RTN weights "
        f"every rotated row is worse than CrossQuant without rotation, and at W4A8 worse than per-token without it "
        f"({n('w4a8', 'rtn', 'per-token', 'hadamard')} against {n('w4a8', 'rtn', 'per-token')}). The cost is in the "
        f"weights: W4 weights alone (A16) cost {weights_plain:.3f} nats unrotated and {weights_rotated:.3f} rotated. "
        f"The likely cause is how the generator builds the outliers: 70\u2013100\u00d7 rows of v_proj (and fc1), "
        f"hidden from the output by equally small columns of out_proj (and fc2). The per-head rotation between "
        f"v_proj and out_proj spreads each large row over the rows of its head, where it sets the per-channel "
        f"rounding step, and out_proj's rotated columns no longer damp the rounding error. Trained LLMs with "
        f"massive activations need not be built this way.",
        f"**GPTQ** repairs most of that: GPTQ + Hadamard + CrossQuant is {n('w4a8', 'gptq', 'crossquant', 'hadamard')} "
        f"nats at W4A8 and {n('w4a4', 'gptq', 'crossquant', 'hadamard')} at W4A4 (RTN: "
        f"{n('w4a8', 'rtn', 'crossquant', 'hadamard')}, {n('w4a4', 'rtn', 'crossquant', 'hadamard')}). Against GPTQ + "
        f"CrossQuant without rotation ({n('w4a8', 'gptq', 'crossquant')}, {n('w4a4', 'gptq', 'crossquant')}) it is "
        + " and ".join(f"{versus(scheme)} at {scheme.upper()}" for scheme in ("w4a8", "w4a4")) + ".",
    ]
    results = (provenance + "\n\n" + command + "\n\n" + markdown_table(header, rows, 2) + "\n\n" + textwrap.fill(
        f"Tokens: {sweep['sample_windows']} windows of {sweep['seqlen']} tokens sampled from the FP32 model "
        f"(seed {sweep['sample_seed']}; {positions:,} scored positions); GPTQ calibrates on "
        f"{sweep['calibration_tokens'] // calib_seqlen} sampled windows of {calib_seqlen} tokens of another stream. The last column "
        f"estimates the mean KL(FP32\u2016quantized) per position (docs/SWEEP.md). Sampling noise: on another sample "
        f"(`--sample-seed 1`) each row's value moves by at most {seed_shift:.3f} nats.", 92) + "\n\n" +
        "\n".join(textwrap.fill(b, 92, initial_indent="- ", subsequent_indent="  ") for b in bullets) + "\n")
    return {"readme": readme, "results": results}


def write_blocks(files):
    """Rewrites the named blocks of each file (atomically: temporary file, then rename)."""
    for path, blocks in files.items():
        content = path.read_text()
        for name, body in blocks.items():
            content = replace_block(content, name, body, path)
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text(content)
        os.replace(tmp, path)
        print(f"make_figures: wrote {path.relative_to(ROOT)}", file=sys.stderr)


def demo_kernel_value(demo_kernel, word):
    for label, value in demo_kernel.items():
        if word in label:
            return value
    raise SystemExit(f"make_figures: no '{word}' row in cq demo's table")


if __name__ == "__main__":
    main()
