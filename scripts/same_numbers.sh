#!/usr/bin/env bash
# Refactoring guard: runs one set of cq commands with two binaries and checks that every
# number they print is the same, bit for bit (JSON outputs compared with their timing
# fields removed; printed perplexities and generated text compared as text).
#   scripts/same_numbers.sh OLD_CQ NEW_CQ [SHARED_DIR]
# Exit 0 when all outputs agree; prints the first differences otherwise.
set -euo pipefail
old=${1:?old cq binary}; new=${2:?new cq binary}
shared=${3:-${CQ_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
text="$shared/data/tinystories/TinyStories-valid.first100.txt"
calib="$shared/data/wikitext2/wikitext2_test_joined.prefix.txt"
[ -f "$calib" ] || calib="$text"
ppl="--text $text --seqlen 128 --max-windows 4"
cal="--calib $calib --calib-samples 4 --calib-seqlen 128"
settings=(
  ""
  "--scheme w8a8"
  "--scheme w4a4 --act-quant per-token"
  "--scheme w8a8 --act-quant per-tensor"
  "--scheme w4a4 --act-quant remove-kernel"
  "--scheme w8a8 --quantize-bmm-input"
  "--scheme w4a8-g128 --alpha 0.45"
  "--scheme w8a8 --weight-quant crossquant"
  "--scheme w8a8 --engine int --act-quant per-token"
  "--scheme w8a8 $cal"
  "--method smoothquant $cal"
  "--method awq $cal --awq-grid 4"
)
run() {  # tag, binary, command...
  local tag=$1 bin=$2; shift 2
  "$bin" "$@" >"$work/$tag.out" 2>"$work/$tag.err" || { echo "exit $? : $*" >>"$work/$tag.out"; cat "$work/$tag.err" >>"$work/$tag.out"; }
}
strip_json() {  # drops timing fields, prints canonical JSON
  /usr/bin/python3 - "$1" <<'PY'
import json, sys
TIMING = {"seconds", "tokens_per_second", "elapsed", "elapsed_seconds", "time", "wall_seconds", "date", "output"}
def clean(v):
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items() if k not in TIMING and not k.endswith("_seconds") and not k.endswith("tokens_per_second")}
    if isinstance(v, list):
        return [clean(x) for x in v]
    return v
try:
    print(json.dumps(clean(json.load(open(sys.argv[1]))), sort_keys=True, indent=1))
except Exception as e:
    print("not JSON:", e)
PY
}
status=0
n=0
for model in tinyopt stories260k; do
  m="$shared/models/$model"
  for setting in "${settings[@]}"; do
    n=$((n + 1))
    for side in old new; do
      bin=$old; [ $side = new ] && bin=$new
      # shellcheck disable=SC2086
      run "$side.$n" "$bin" ppl --model "$m" $ppl $setting --json "$work/$side.$n.json"
      [ -f "$work/$side.$n.json" ] && strip_json "$work/$side.$n.json" >"$work/$side.$n.norm" || : >"$work/$side.$n.norm"
      grep -v "tokens/s" "$work/$side.$n.out" >"$work/$side.$n.txt" || true
    done
    if ! cmp -s "$work/old.$n.norm" "$work/new.$n.norm" || ! cmp -s "$work/old.$n.txt" "$work/new.$n.txt"; then
      echo "DIFFERENT: cq ppl --model $model $setting"; diff "$work/old.$n.norm" "$work/new.$n.norm" | head -20; status=1
    else
      echo "same: cq ppl --model $model $setting ($(head -c 40 "$work/new.$n.txt" | tr '\n' ' '))"
    fi
  done
  # kernel report, generation, eval and a quantized checkpoint round trip
  for side in old new; do
    bin=$old; [ $side = new ] && bin=$new
    run "$side.kernel.$model" "$bin" kernel --model "$m" --text "$text" --seqlen 128 --max-windows 2 --json "$work/$side.kernel.$model.json"
    strip_json "$work/$side.kernel.$model.json" >"$work/$side.kernel.$model.norm" 2>/dev/null || true
    run "$side.gen.$model" "$bin" generate --model "$m" --prompt "Once upon a time" -n 24 --scheme w8a8
    run "$side.gens.$model" "$bin" generate --model "$m" --prompt "Once upon a time" -n 24 --temperature 0.8 --seed 7
    run "$side.eval.$model" "$bin" eval --model "$m" --data-dir "$shared/data" --tasks arc_easy,piqa,hellaswag,boolq,lambada_openai,mmlu --limit 8 --scheme w8a8
    rm -rf "$work/q.$side.$model"
    run "$side.quantize.$model" "$bin" quantize --model "$m" --method rtn --scheme w4a8-g128 --out "$work/q.$side.$model"
    run "$side.qppl.$model" "$bin" ppl --model "$work/q.$side.$model" $ppl --json "$work/$side.qppl.$model.json"
    strip_json "$work/$side.qppl.$model.json" | grep -v '"model"' >"$work/$side.qppl.$model.norm" 2>/dev/null || true
  done
  for what in kernel.$model.norm gen.$model.out gens.$model.out eval.$model.out qppl.$model.norm; do
    if ! cmp -s "$work/old.$what" "$work/new.$what"; then
      echo "DIFFERENT: $what"; diff "$work/old.$what" "$work/new.$what" | head -20; status=1
    else
      echo "same: $what"
    fi
  done
done
if grep -l "^exit " "$work"/new.*.out 2>/dev/null; then
  echo "same_numbers: the commands above failed (both binaries compared, but check the set)"; status=1
fi
[ $status = 0 ] && echo "same_numbers: all outputs agree" || echo "same_numbers: outputs differ"
exit $status
