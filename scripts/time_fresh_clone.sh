#!/usr/bin/env bash
# Times `make run` on a fresh clone of this repository's HEAD (what a newcomer does) and
# writes the result between the <!-- figures:setup-time --> markers of README.md.
#   scripts/time_fresh_clone.sh [SHARED]   (SHARED: the shared assets, default ../shared)
# The clone goes to a temporary folder with SHARED linked beside it as ../shared; ccache is
# turned off (CMAKE_*_COMPILER_LAUNCHER unset, CCACHE_DISABLE=1) so the time is a real build.
# The Debian packages are assumed installed (their download time depends on the mirror).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=$(cd "${1:-$root/../shared}" && pwd)
work=$(mktemp -d /tmp/cq-fresh-clone.XXXXXX)
trap 'rm -rf "$work"' EXIT
commit=$(git -C "$root" rev-parse --short=12 HEAD)
git clone -q "$root" "$work/crossquant"
git -C "$work/crossquant" checkout -q "$commit"
ln -s "$shared" "$work/shared"
unset CMAKE_CXX_COMPILER_LAUNCHER CMAKE_C_COMPILER_LAUNCHER
export CCACHE_DISABLE=1
start=$(date +%s.%N)
load_start=$(cut -d' ' -f1 /proc/loadavg)
(cd "$work/crossquant" && make run) > "$work/make-run.log" 2>&1 || { tail -20 "$work/make-run.log" >&2; exit 1; }
seconds=$(echo "$(date +%s.%N) - $start" | bc)
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
cores=$(nproc)
load=$(cut -d' ' -f1 /proc/loadavg)
minutes=$(printf '%d min %02d s' "$(echo "$seconds/60" | bc)" "$(echo "$seconds%60/1" | bc)")
echo "make run on a fresh clone: $minutes ($cpu, $cores cores, commit $commit)" >&2
text="On a fresh clone (packages installed, no ccache) \`make run\` took **$minutes** on $cpu,
$cores cores, commit $commit, $(date -u +%Y-%m-%d) (load average $load_start at the start, $load at
the end); \`scripts/time_fresh_clone.sh\` measures it. It compiles \`cq\` alone (the tests and
benchmarks are compiled by \`make test\`); the demo itself takes a few seconds."
python3 - "$root/README.md" "$text" <<'PY'
import pathlib, re, sys
path, text = pathlib.Path(sys.argv[1]), sys.argv[2]
content = path.read_text()
pattern = re.compile(r"(<!-- figures:setup-time -->\n).*?(<!-- /figures:setup-time -->)", re.S)
if not pattern.search(content):
    sys.exit("time_fresh_clone.sh: README.md has no figures:setup-time markers")
path.write_text(pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), content))
PY
