#!/usr/bin/env bash
# Scaling of `cq ppl` over MPI ranks (docs/CLUSTER.md): the same job run by one process, and
# by 1 and 2 ranks under mpirun, one OpenMP thread each; prints each run's wall time (best of
# REPEATS), the speed-up of 2 ranks over 1, every rank's peak resident memory, and checks that
# the perplexity printed is the same.
#   scripts/mpi_scaling.sh [CQ] [SHARED]   (defaults: build/cq, $CQ_SHARED or ../shared)
# On a loaded machine the figures are noisy: re-measure on a quiet one.
set -euo pipefail
cd "$(dirname "$0")/.."
cq=$(realpath "${1:-build/cq}")
shared=$(realpath "${2:-${CQ_SHARED:-../shared}}")
repeats=${REPEATS:-3}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
as_root=()
[ "$(id -u)" -eq 0 ] && as_root=(--allow-run-as-root)
job=(ppl --model "$shared/models/tinyopt" --text "$shared/data/wikitext2/wikitext2_test_joined.prefix.txt"
  --seqlen 512 --max-windows 64 --scheme w8a8 --quiet)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# best wall time of $repeats runs of "$@"; leaves the last run's output in $scratch/out and
# every rank's peak RSS (KiB, from GNU time) in $scratch/rss.*
best_of() {
  local best="" start end seconds
  for _ in $(seq "$repeats"); do
    rm -f "$scratch"/rss.*
    start=$(date +%s.%N)
    "$@" >"$scratch/out" 2>"$scratch/err" || { cat "$scratch/err" >&2; exit 1; }
    end=$(date +%s.%N)
    seconds=$(echo "$end - $start" | bc -l)
    if [ -z "$best" ] || [ "$(echo "$seconds < $best" | bc -l)" = 1 ]; then best=$seconds; fi
  done
  echo "$best"
}
timed() { /usr/bin/time -f "%M" -o "$scratch/rss.$$.$RANDOM" "$@"; }
export -f timed
export scratch

printf "%-28s %10s %12s %s\n" "run" "seconds" "perplexity" "peak RSS per rank (MiB)"
report() {
  local name=$1 seconds=$2
  local rss
  rss=$(cat "$scratch"/rss.* 2>/dev/null | awk '{printf "%s%.1f", (NR>1?" ":""), $1/1024}')
  printf "%-28s %10.2f %12s %s\n" "$name" "$seconds" "$(awk '/perplexity/{print $2}' "$scratch/out")" "$rss"
  awk '/perplexity/{print $2}' "$scratch/out" >"$scratch/ppl.$name"
}
alone=$(best_of bash -c 'timed "$0" "$@"' "$cq" "${job[@]}"); report one-process "$alone"
one=$(best_of mpirun "${as_root[@]}" --oversubscribe -np 1 bash -c 'timed "$0" "$@"' "$cq" "${job[@]}"); report mpirun-np1 "$one"
two=$(best_of mpirun "${as_root[@]}" --oversubscribe -np 2 bash -c 'timed "$0" "$@"' "$cq" "${job[@]}"); report mpirun-np2 "$two"
if ! cmp -s "$scratch/ppl.one-process" "$scratch/ppl.mpirun-np2"; then
  echo "mpi_scaling: the perplexity differs between 1 process and 2 ranks" >&2
  exit 1
fi
echo "speed-up of 2 ranks over 1 rank: $(echo "$one / $two" | bc -l | xargs printf "%.2f")x" \
  "(over one process: $(echo "$alone / $two" | bc -l | xargs printf "%.2f")x)"
