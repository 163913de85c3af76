#!/usr/bin/env bash
# Runs the MCP suite against a fresh `brig serve`: the official MCP SDK client over stdio
# (`brig mcp`, `brig mcp --mode code`) and Streamable HTTP (POST /mcp, /mcp/code), the
# Inspector CLI, then the official conformance scenarios that apply. All clients are pinned in
# package.json; the Inspector and the conformance runner run on the Node 22 of node22.sh.
#   tests/mcp/run.sh [path/to/brig]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
brig=$(readlink -f "${1:-$here/../../build/src/brig}")
[[ -x $brig ]] || { echo "mcp: no brig binary at ${1:-build/src/brig}" >&2; exit 1; }
state=${BRIG_TEMPLATE_STATE_DIR:-${BRIG_CACHE_DIR:-/var/cache/brig}/state}
port=$((20000 + RANDOM % 20000))

cd "$here"
# The Inspector and the conformance runner need Node 22 (the host's node may be older).
node22=$("$here/node22.sh")
export npm_config_update_notifier=false npm_config_fund=false
[[ -d node_modules/@modelcontextprotocol/sdk && -d node_modules/@modelcontextprotocol/inspector &&
  -d node_modules/@modelcontextprotocol/conformance ]] ||
  PATH=$node22:$PATH npm ci --no-audit --no-fund >/dev/null

log=$(mktemp /tmp/brig-mcp-serve-XXXXXX.log)
# A short code-mode timeout keeps code-mode.test.mjs's timeout test quick.
BRIG_CODE_MODE_TIMEOUT_MS=5000 "$brig" --state-dir "$state" --log-level info serve --listen "127.0.0.1:$port" --pool 2 >"$log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
up=0
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && { up=1; break; }
  sleep 0.1
done
((up)) || { echo "mcp: brig serve did not start:"; cat "$log"; exit 1; }
export BRIG_URL=http://127.0.0.1:$port
export BRIG_API_KEY=$(cat "$state/api-key")
export BRIG_BIN=$brig
export BRIG_SERVE_LOG=$log  # in-process.test.mjs reads the daemon's request log
export NODE22_BIN=$node22

status=0
echo "== MCP protocol, tools and code mode, stdio and HTTP (@modelcontextprotocol/sdk $(node -p "require('./node_modules/@modelcontextprotocol/sdk/package.json').version"))"
node --test --test-concurrency=1 mcp.test.mjs tools.test.mjs code-mode.test.mjs in-process.test.mjs || status=1
echo "== MCP Inspector CLI (@modelcontextprotocol/inspector $(node -p "require('./node_modules/@modelcontextprotocol/inspector/package.json').version"))"
node --test inspector.test.mjs || status=1
echo "== MCP conformance"
./conformance.sh || status=1
if ((status)); then echo "daemon log: $log"; tail -20 "$log"; else rm -f "$log"; fi
exit $status
