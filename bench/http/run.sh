#!/usr/bin/env bash
# 1,000 idle keep-alive connections to a running `brig serve`: its RSS before and with them open,
# the cost per connection, and /health latency while they are held (bench/http/idle_bench.cc).
# Needs root (brig serve opens the engine). With BRIG_BASELINE=/path/to/an/older/brig, that
# binary is measured in the same run, round by round beside this build's.
#
#   bench/http/run.sh                          # 1,000 connections, 5 rounds, 200 requests each
#   bench/http/run.sh --rounds 3 --connections 2000
#   BRIG_BASELINE=/tmp/brig-main BRIG_BASELINE_LABEL="main (abc123)" bench/http/run.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BUILD_DIR:-build}
[[ $build = /* ]] || build="$root/$build"
if [[ $(id -u) -ne 0 ]]; then
  echo "bench/http/run.sh: needs root (brig serve opens the engine); try: sudo $0 $*" >&2
  exit 1
fi
cmake --build "$build" --target brig brig-http-bench >&2
args=(--brig "$build/src/brig")
if [[ -n ${BRIG_BASELINE:-} ]]; then
  args+=(--baseline "$BRIG_BASELINE" --baseline-label "${BRIG_BASELINE_LABEL:-brig (baseline): $BRIG_BASELINE}")
fi
exec "$build/bench/brig-http-bench" "${args[@]}" "$@"
