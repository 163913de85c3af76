#!/usr/bin/env bash
# The SDK-level benchmark: starts a brig serve (pool of 2 per built-in template) on a free
# port and runs bench.mjs with the e2b SDK pinned in tests/sdk.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
brig=${BRIG:-$root/build/src/brig}
state=${BRIG_TEMPLATE_STATE_DIR:-${BRIG_CACHE_DIR:-/var/cache/brig}/state}
port=$((20000 + RANDOM % 20000))
(cd "$root/tests/sdk" && { [[ -d node_modules/e2b ]] || npm ci --no-audit --no-fund >/dev/null; })
"$brig" --state-dir "$state" serve --listen "127.0.0.1:$port" --pool 2 >/tmp/brig-bench-serve.log 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
sleep 2  # let the warm pool fill
export E2B_API_KEY=$(cat "$state/api-key") E2B_API_URL=http://127.0.0.1:$port E2B_SANDBOX_URL=http://127.0.0.1:$port
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); machine: $(uname -r), $(nproc) cores; e2b SDK $(node -p "require('$root/tests/sdk/node_modules/e2b/package.json').version")"
E2B_SDK_PATH=$root/tests/sdk/node_modules/e2b/dist/index.mjs node "$here/bench.mjs"
echo
echo "- code interpreter: @e2b/code-interpreter $(node -p "require('$root/tests/sdk/node_modules/@e2b/code-interpreter/package.json').version")"
E2B_CI_SDK_PATH=$root/tests/sdk/node_modules/@e2b/code-interpreter/dist/index.mjs node "$here/code_interpreter.mjs"
echo
echo "- files through the daemon: memory (bench/sdk/files_rss.mjs)"
DAEMON_PID=$daemon E2B_SDK_PATH=$root/tests/sdk/node_modules/e2b/dist/index.mjs node "$here/files_rss.mjs"
echo
echo "- pause and resume (bench/sdk/pause.mjs)"
E2B_SDK_PATH=$root/tests/sdk/node_modules/e2b/dist/index.mjs node "$here/pause.mjs"
