#!/usr/bin/env bash
# Fails when a portable binary (CQ_NATIVE=OFF) holds AVX/AVX-512 instructions outside the
# kernels that are only called after a CPU check (docs/KERNELS.md). Those kernels carry their
# instruction set in their names (namespace avx512, *_avx512, vnni_*, avx2_*) or are listed
# here: a function that uses ymm/zmm or mask registers under any other name would run on
# CPUs without them.
# Usage: scripts/check-portable-binary.sh build-portable/cq
set -euo pipefail
binary="$1"
dispatched='avx512|vnni_|avx2_|gemv_block<'
leaks=$(objdump -d --no-show-raw-insn -C "$binary" |
  awk '/^[0-9a-f]+ <.*>:$/ {function_name = $0} /%zmm|%ymm|%k[0-7]/ {print function_name}' |
  sort -u | grep -Ev "$dispatched" || true)
if [ -n "$leaks" ]; then
  echo "$binary: AVX/AVX-512 instructions outside the dispatched kernels:" >&2
  echo "$leaks" | cut -c1-200 >&2
  exit 1
fi
echo "$binary: wide-register instructions only in dispatched kernels"
