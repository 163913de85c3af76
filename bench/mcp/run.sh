#!/usr/bin/env bash
# MCP latency, with the MCP SDK pinned in tests/mcp, against a brig serve started here (pool of
# 2 per built-in template, a free port):
#  - code mode (code_mode.mjs), twice: with a pause between calls (the ready executor is
#    refilled) and back to back (it may not be);
#  - tools (tools.mjs) over HTTP /mcp (the daemon's tools call the core in process) and over
#    stdio `brig mcp` (a client of the daemon's API over loopback HTTP).
# BRIG_BASELINE=path/to/older/brig runs tools.mjs over /mcp against that binary's daemon too,
# in the same run (e.g. a build from before the daemon's MCP called the core in process).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
brig=${BRIG:-$root/build/src/brig}
state=${BRIG_TEMPLATE_STATE_DIR:-${BRIG_CACHE_DIR:-/var/cache/brig}/state}
(cd "$root/tests/mcp" && { [[ -d node_modules/@modelcontextprotocol/sdk ]] || npm ci --no-audit --no-fund >/dev/null; })
daemon=
trap '[[ -n $daemon ]] && { kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true; }' EXIT
start_daemon() {  # $1: the brig binary
  port=$((20000 + RANDOM % 20000))
  "$1" --state-dir "$state" serve --listen "127.0.0.1:$port" --pool 2 >/tmp/brig-bench-mcp.log 2>&1 &
  daemon=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  sleep 2
  export BRIG_URL=http://127.0.0.1:$port BRIG_BIN=$1
}
stop_daemon() {
  kill "$daemon"
  wait "$daemon" 2>/dev/null || true
  daemon=
}
export BRIG_API_KEY=$(cat "$state/api-key")
export MCP_SDK=$root/tests/mcp/node_modules/@modelcontextprotocol/sdk/dist/esm
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); machine: $(uname -r), $(nproc) cores"
start_daemon "$brig"
echo "- code mode, 1.5 s between calls:"; GAP_MS=1500 node "$here/code_mode.mjs"
echo "- code mode, back to back:"; GAP_MS=0 node "$here/code_mode.mjs"
echo "- tools:"
TRANSPORT=http LABEL="HTTP /mcp, in process" node "$here/tools.mjs"
TRANSPORT=stdio LABEL="stdio brig mcp, API over loopback" node "$here/tools.mjs"
stop_daemon
if [[ -n ${BRIG_BASELINE:-} ]]; then
  start_daemon "$BRIG_BASELINE"
  TRANSPORT=http LABEL="HTTP /mcp, baseline $BRIG_BASELINE" node "$here/tools.mjs"
  stop_daemon
fi
