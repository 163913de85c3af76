#!/usr/bin/env bash
# Runs the official e2b SDK suite (both pinned versions) and the code-interpreter SDK suite
# against a fresh `brig serve`.
#   tests/sdk/run.sh [path/to/brig]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
brig=$(readlink -f "${1:-$here/../../build/src/brig}")
[[ -x $brig ]] || { echo "sdk: no brig binary at ${1:-build/src/brig}" >&2; exit 1; }
state=${BRIG_TEMPLATE_STATE_DIR:-${BRIG_CACHE_DIR:-/var/cache/brig}/state}
port=$((20000 + RANDOM % 20000))

cd "$here"
[[ -d node_modules/e2b && -d node_modules/e2b-2.50 && -d node_modules/@e2b/code-interpreter && -d node_modules/undici ]] || npm ci --no-audit --no-fund >/dev/null

log=$(mktemp /tmp/brig-sdk-serve-XXXXXX.log)
"$brig" --state-dir "$state" --log-level info serve --listen "127.0.0.1:$port" --pool 2 >"$log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null || true; wait $daemon 2>/dev/null || true' EXIT
up=0
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && { up=1; break; }
  sleep 0.1
done
((up)) || { echo "sdk: brig serve did not start:"; cat "$log"; exit 1; }
export E2B_API_KEY=$(cat "$state/api-key")
export E2B_API_URL=http://127.0.0.1:$port
export E2B_SANDBOX_URL=http://127.0.0.1:$port

status=0
for sdk in e2b e2b-2.50; do
  echo "== SDK $sdk ($(node -p "require('./node_modules/$sdk/package.json').version"))"
  SDK=$sdk node --test --test-concurrency=1 e2b.test.mjs || status=1
done
echo "== code interpreter (@e2b/code-interpreter $(node -p "require('./node_modules/@e2b/code-interpreter/package.json').version"))"
node --test --test-concurrency=1 code-interpreter.test.mjs || status=1
echo "== secrets"
BRIG_LOG=$log node --test --test-concurrency=1 secrets.test.mjs || status=1
echo "== CLI client"
BRIG_BIN=$brig BRIG_STATE=$state node --test --test-concurrency=1 cli.test.mjs || status=1
echo "== protocol"
node --test --test-concurrency=1 protocol.test.mjs || status=1
echo "== OpenAPI document (api/openapi.json) against the daemon"
node --test --test-concurrency=1 openapi.test.mjs || status=1
# The suites that start daemons of their own run alone: another daemon's reaper sweeps the
# host-wide firewall table too, and would remove what the restart test expects to find left.
kill $daemon 2>/dev/null || true; wait $daemon 2>/dev/null || true
echo "== daemon restart"
BRIG_BIN=$brig BRIG_STATE=$state node --test restart.test.mjs || status=1
echo "== sandbox networks (egress)"
BRIG_BIN=$brig BRIG_STATE=$state node --test --test-concurrency=1 network.test.mjs || status=1
# The one test that leaves this machine (npm's registry, from a sandbox, through this host's
# internet): only when asked, BRIG_TEST_REGISTRY=1.
if [[ ${BRIG_TEST_REGISTRY:-} == 1 ]]; then
  echo "== the npm registry from a sandbox (opt-in)"
  BRIG_BIN=$brig BRIG_STATE=$state node --test --test-concurrency=1 registry.test.mjs || status=1
fi
if ((status)); then echo "daemon log: $log"; tail -20 "$log"; fi
exit $status
