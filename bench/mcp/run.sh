#!/usr/bin/env bash
# MCP code-mode latency: starts a brig serve (pool of 2 per built-in template) on a free port
# and runs code_mode.mjs with the MCP SDK pinned in tests/mcp, twice: with a pause between
# calls (the ready executor is refilled) and back to back (it may not be).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
brig=${BRIG:-$root/build/src/brig}
state=${BRIG_TEMPLATE_STATE_DIR:-${BRIG_CACHE_DIR:-/var/cache/brig}/state}
port=$((20000 + RANDOM % 20000))
(cd "$root/tests/mcp" && { [[ -d node_modules/@modelcontextprotocol/sdk ]] || npm ci --no-audit --no-fund >/dev/null; })
"$brig" --state-dir "$state" serve --listen "127.0.0.1:$port" --pool 2 >/tmp/brig-bench-mcp.log 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
sleep 2
export BRIG_URL=http://127.0.0.1:$port BRIG_API_KEY=$(cat "$state/api-key")
export MCP_SDK=$root/tests/mcp/node_modules/@modelcontextprotocol/sdk/dist/esm
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); machine: $(uname -r), $(nproc) cores"
echo "- 1.5 s between calls:"; GAP_MS=1500 node "$here/code_mode.mjs"
echo "- back to back:"; GAP_MS=0 node "$here/code_mode.mjs"
