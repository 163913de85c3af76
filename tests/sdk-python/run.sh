#!/usr/bin/env bash
# Runs the official E2B Python SDKs (e2b 2.34.0, e2b-code-interpreter 2.9.0, unmodified) against
# a fresh `brig serve`, with Debian's pytest.
#   tests/sdk-python/run.sh [path/to/brig] [pytest args...]
# The SDKs come from ../shared/e2b-python/setup.sh (Debian packages only, no PyPI), installed
# into a venv under the cache directory (BRIG_CACHE_DIR, default /var/cache/brig); setup.sh is
# idempotent, so a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
brig_arg=${1:-$repo/build/src/brig}
(($#)) && shift
brig=$(readlink -f "$brig_arg")
[[ -x $brig ]] || { echo "sdk-python: no brig binary at $brig_arg" >&2; exit 1; }
cache=${BRIG_CACHE_DIR:-/var/cache/brig}
state=${BRIG_TEMPLATE_STATE_DIR:-$cache/state}
pysdk=${PYSDK_DIR:-$cache/e2b-python}
# The installer lives in shared/ beside the repository; a clone made elsewhere (CI's temporary
# directory) finds it beside the repository it was cloned from.
setup=${PYSDK_SETUP:-}
if [[ -z $setup ]]; then
  origin=$(git -C "$repo" config --get remote.origin.url 2>/dev/null || true)
  for dir in "$repo/.." "${origin:+$origin/..}"; do
    [[ -n $dir && -f $dir/shared/e2b-python/setup.sh ]] && { setup=$dir/shared/e2b-python/setup.sh; break; }
  done
fi
[[ -n $setup && -f $setup ]] || {
  echo "sdk-python: the E2B Python SDK installer (shared/e2b-python/setup.sh) is not beside this repository" \
    "or the one it was cloned from; set PYSDK_SETUP to its path" >&2
  exit 1
}

# The SDKs (quiet unless it fails), and pytest from Debian (scripts/install-deps.sh has it).
setup_log=$(mktemp /tmp/brig-sdk-python-setup-XXXXXX.log)
if ! PYSDK_DIR=$pysdk bash "$setup" >"$setup_log" 2>&1; then
  echo "sdk-python: $setup failed:" >&2; cat "$setup_log" >&2; exit 1
fi
rm -f "$setup_log"
py=$pysdk/venv/bin/python
"$py" -c 'import pytest' 2>/dev/null || { echo "sdk-python: pytest missing (apt-get install python3-pytest)" >&2; exit 1; }
"$py" -c 'import importlib.metadata as m; print("== e2b", m.version("e2b"), "/ e2b-code-interpreter", m.version("e2b-code-interpreter"), "/ pytest", m.version("pytest"))'

# The templates the suite uses, built now when missing (minutes the first time, cached after):
# no create then waits on a build, and the daemon's warm pool covers them from its start.
mkdir -p "$state"
for t in base python3 code-interpreter-v1; do
  build_log=$(mktemp /tmp/brig-sdk-python-template-XXXXXX.log)
  started=$SECONDS
  if ! "$brig" --state-dir "$state" run --template "$t" --timeout 120s -- true >"$build_log" 2>&1; then
    echo "sdk-python: template $t:" >&2; tail -30 "$build_log" >&2; exit 1
  fi
  rm -f "$build_log"
  echo "== template $t ready ($((SECONDS - started)) s)"
done

# A key of the shape the Python SDK accepts (e2b_ + hex), valid for this daemon only.
key=e2b_$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
port=$((20000 + RANDOM % 20000))
log=$(mktemp /tmp/brig-sdk-python-serve-XXXXXX.log)
BRIG_API_KEY=$key "$brig" --state-dir "$state" --log-level info serve --listen "127.0.0.1:$port" --pool 2 >"$log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
up=0
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && { up=1; break; }
  kill -0 $daemon 2>/dev/null || break
  sleep 0.1
done
((up)) || { echo "sdk-python: brig serve did not start:"; cat "$log"; exit 1; }

export E2B_API_KEY=$key
export E2B_API_URL=http://127.0.0.1:$port
export E2B_SANDBOX_URL=http://127.0.0.1:$port
unset E2B_DEBUG E2B_DOMAIN E2B_ACCESS_TOKEN
export BRIG_BIN=$brig BRIG_STATE=$state
export PYTHONDONTWRITEBYTECODE=1

status=0
cd "$here"
"$py" -m pytest -p no:cacheprovider -v --tb=short -rfE --durations=10 "$@" . || status=$?
if ((status)); then echo "sdk-python: daemon log: $log"; tail -40 "$log"; else rm -f "$log"; fi
exit $status
