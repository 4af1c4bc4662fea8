#!/usr/bin/env python3
"""No-regression A/B of bench_engine: two builds (say main before a change, and after it) run
interleaved, OLD NEW OLD NEW ..., with the same flags and the same generated models, so that
drift of a shared machine falls on both alike. Each process reports every setting against the
FP32 run of the same process; this prints, per setting, the median of those ratios for each
build and NEW / OLD, for prefill and decode.

  scripts/ab_bench_engine.py OLD/bench_engine NEW/bench_engine [--rounds 3] [-- bench_engine flags]

Default flags: --preset llama2-7b-2layers --quick --repeats 3 --prompt-tokens 512 --gen-tokens 16
--models-dir build/bench-models. Run it on a quiet machine (OMP_WAIT_POLICY=PASSIVE as for
bench_engine); a setting one build lacks is shown with '-'.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

DEFAULT_FLAGS = ["--preset", "llama2-7b-2layers", "--quick", "--repeats", "3", "--prompt-tokens", "512",
                 "--gen-tokens", "16", "--models-dir", "build/bench-models"]
# A row of the final table: name (28 columns), prefill t/s, ratio, decode t/s, ratio, layers ratio.
ROW = re.compile(r"^(.{28}) +([0-9.]+) +(-?[0-9.]+)x +([0-9.]+) +(-?[0-9.]+)x +(-?[0-9.]+)x$")
SUMMARY = re.compile(r"^W8A8 dynamic-CQ / per-token int speed: prefill ([0-9.]+)x, decode ([0-9.]+)x")


def run_once(binary, flags):
    result = subprocess.run([binary] + flags, capture_output=True, text=True, env=dict(os.environ))
    if result.returncode != 0:
        sys.exit(f"{binary} failed (exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    rows, in_table = {}, False
    for line in result.stdout.splitlines():
        if line.startswith("setting "):
            in_table = True
            continue
        match = ROW.match(line) if in_table else None
        if match:
            rows[match.group(1).strip()] = (float(match.group(3)), float(match.group(5)))
        summary = SUMMARY.match(line)
        if summary:
            rows["dynamic-CQ / per-token int"] = (float(summary.group(1)), float(summary.group(2)))
    if not rows:
        sys.exit(f"{binary}: no result table in its output")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=3)
    argv = sys.argv[1:]
    flags = DEFAULT_FLAGS
    if "--" in argv:  # everything after -- goes to bench_engine as it is
        flags = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    args = parser.parse_args(argv)
    for binary in (args.old, args.new):
        if not os.access(binary, os.X_OK):
            sys.exit(f"{binary}: not an executable bench_engine")
    results = {"old": [], "new": []}
    for r in range(args.rounds):
        for which, binary in (("old", args.old), ("new", args.new)):
            print(f"round {r + 1}/{args.rounds}: {which} ({binary}) ...", file=sys.stderr, flush=True)
            results[which].append(run_once(binary, flags))

    def median(which, name, column):
        values = [rows[name][column] for rows in results[which] if name in rows]
        return statistics.median(values) if values else None

    names = []
    for which in ("old", "new"):
        for rows in results[which]:
            names += [n for n in rows if n not in names]
    print(f"bench_engine {' '.join(flags)}; median of {args.rounds} interleaved rounds; ratios vs the FP32 run of the same process")
    print(f"{'setting':<30} {'prefill old':>11} {'new':>7} {'new/old':>8} | {'decode old':>10} {'new':>7} {'new/old':>8}")
    fmt = lambda v: "-" if v is None else f"{v:.2f}x"
    for name in names:
        cells = []
        for column in (0, 1):
            old, new = median("old", name, column), median("new", name, column)
            ratio = "-" if old is None or new is None or old == 0 else f"{new / old:.3f}"
            cells.append((fmt(old), fmt(new), ratio))
        (po, pn, pr), (do, dn, dr) = cells
        print(f"{name:<30} {po:>11} {pn:>7} {pr:>8} | {do:>10} {dn:>7} {dr:>8}")


if __name__ == "__main__":
    main()
