#!/usr/bin/env bash
# fuzz/run.sh BUILD_DIR SECONDS TARGET...: runs each libFuzzer target for SECONDS on a copy of
# its seeds (BUILD_DIR/seeds/<target>, plus tests/fuzz-regressions/<target>), prints the
# number of executions per target, and exits non-zero on the first finding (crash, sanitizer
# report, uncaught non-cq::Error exception, leak, >2 GB RSS, or an input running >10 s),
# leaving the reproducer in BUILD_DIR/findings/<target>/.
set -uo pipefail
build=$(cd "$1" && pwd); seconds=$2; shift 2  # absolute: fuzz_cli changes directory while it runs
root=$(cd "$(dirname "$0")/.." && pwd)
status=0
printf '%-24s %12s %8s  %s\n' target executions exec/s result
for target in "$@"; do
  corpus=$build/corpus/$target; findings=$build/findings/$target
  mkdir -p "$corpus" "$findings"
  [ -d "$build/seeds/$target" ] && cp -n "$build/seeds/$target"/* "$corpus"/ 2>/dev/null
  [ -d "$root/tests/fuzz-regressions/$target" ] && cp -n "$root/tests/fuzz-regressions/$target"/* "$corpus"/ 2>/dev/null
  log=$build/findings/$target.log
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    OMP_NUM_THREADS=1 "$build/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=1048576 -len_control=200 -artifact_prefix="$findings/" -print_final_stats=1 "$corpus" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  if [ $rc -eq 0 ]; then result=ok; else result="FINDING (see $log, $findings/)"; status=1; fi
  printf '%-24s %12s %8s  %s\n' "$target" "${execs:-?}" "${rate:-?}" "$result"
done
exit $status
