#!/usr/bin/env bash
# Speed and memory through brig serve and the official e2b SDK, each figure beside the machine's
# own limit measured in the same run (a plain pipe, bubblewrap), printed as one table and kept in
# bench/last-speed.md. Needs root (sandboxes, bwrap as root, the daemon's /proc/PID/clear_refs).
#
#   bench/speed/run.sh                        # about 5 minutes on 2 cores
#   RUNS=3 STDOUT_MB=50 bench/speed/run.sh    # sizes and counts: see speed.mjs
#   BUILD_DIR=build-release bench/speed/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-build}
[[ $build = /* ]] || build="$root/$build"
[[ $(id -u) -eq 0 ]] || { echo "bench/speed/run.sh: needs root" >&2; exit 1; }
[[ -f $build/build.ninja || -f $build/Makefile ]] || { echo "bench/speed/run.sh: configure $build first (cmake --preset dev)" >&2; exit 1; }
bwrap=$(command -v bwrap) || { echo "bench/speed/run.sh: needs bubblewrap (apt-get install bubblewrap)" >&2; exit 1; }

cmake --build "$build" --target brig brig-speed-peer >&2
rootfs=$("$root/scripts/build-test-rootfs.sh")
state=${BRIG_TEMPLATE_STATE_DIR:-${BRIG_CACHE_DIR:-/var/cache/brig}/state}
(cd "$root/tests/sdk" && { [[ -d node_modules/e2b ]] || npm ci --no-audit --no-fund >/dev/null; })

port=$((20000 + RANDOM % 20000))
log=$(mktemp /tmp/brig-speed-serve-XXXXXX.log)
"$build/src/brig" --state-dir "$state" serve --listen "127.0.0.1:$port" --pool 2 >"$log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
up=0
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && { up=1; break; }; sleep 0.1; done
((up)) || { echo "brig serve did not start:" >&2; cat "$log" >&2; exit 1; }
sleep 3  # let the warm pools fill

cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
cg=$([[ $(stat -fc %T /sys/fs/cgroup) = cgroup2fs ]] && echo "cgroup v2" || echo "cgroup v1")
{
  echo "# brig speed and memory (bench/speed/run.sh)"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); brig $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "- machine: $(uname -sr) $(uname -m), $(nproc) cores ($cpu), $mem, $cg"
  echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- e2b SDK $(node -p "require('$root/tests/sdk/node_modules/e2b/package.json').version"), node $(node --version), $(curl --version | head -1 | cut -d' ' -f1-2), $("$bwrap" --version)"
  echo "- brig serve --pool 2, client and daemon on this machine over loopback HTTP/1.1"
  echo
  E2B_SDK_PATH=$root/tests/sdk/node_modules/e2b/dist/index.mjs E2B_API_URL=http://127.0.0.1:$port \
    E2B_SANDBOX_URL=http://127.0.0.1:$port E2B_API_KEY=$(cat "$state/api-key") DAEMON_PID=$daemon STATE=$state \
    PEER=$build/bench/brig-speed-peer BRIG=$build/src/brig ROOTFS=$rootfs BWRAP=$bwrap \
    node "$here/speed.mjs"
  echo
  echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$root/bench/last-speed.md"
