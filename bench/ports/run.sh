#!/usr/bin/env bash
# HTTP to a server in a sandbox through brig's data plane (getHost(port): the daemon, then the
# connection brig-init opened in the sandbox), beside the same server on the host reached
# directly over loopback, in the same run: download and upload throughput over one kept-alive
# connection, and small-request latency. The table goes to stdout and bench/last-ports.md.
#
#   sudo bench/ports/run.sh                     # about a minute on 2 cores
#   RUNS=11 MB=512 SMALL=2000 bench/ports/run.sh
#   BUILD_DIR=build-release bench/ports/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-build}
[[ $build = /* ]] || build="$root/$build"
[[ $(id -u) -eq 0 ]] || { echo "bench/ports/run.sh: needs root" >&2; exit 1; }
[[ -f $build/build.ninja || -f $build/Makefile ]] || { echo "bench/ports/run.sh: configure $build first (cmake --preset dev)" >&2; exit 1; }
RUNS=${RUNS:-7}          # measured transfers per direction and path (plus one warm-up)
MB=${MB:-256}            # size of each transfer, MiB
SMALL=${SMALL:-1000}     # small (1-byte) requests per latency sample set

cmake --build "$build" --target brig brig-port-bench >&2
brig=$build/src/brig
bench=$build/bench/brig-port-bench
state=${BRIG_TEMPLATE_STATE_DIR:-${BRIG_CACHE_DIR:-/var/cache/brig}/state}

port=$((20000 + RANDOM % 20000))
host_port=$((port + 1))
log=$(mktemp /tmp/brig-ports-serve-XXXXXX.log)
# The sandbox may use every core, as the host server may: the figure is the data plane's, not the
# CPU quota's (sandbox.cpu_millis is 1 CPU by default).
"$brig" --state-dir "$state" --set sandbox.cpu_millis=$(($(nproc) * 1000)) serve --listen "127.0.0.1:$port" --pool 1 >"$log" 2>&1 &
daemon=$!
peer=
id=
cleanup() {
  [[ -n $id ]] && "$brig" sandbox kill "$id" >/dev/null 2>&1 || true
  [[ -n $peer ]] && kill "$peer" 2>/dev/null || true
  kill $daemon 2>/dev/null
  wait $daemon 2>/dev/null || true
}
trap cleanup EXIT
up=0
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && { up=1; break; }; sleep 0.1; done
((up)) || { echo "brig serve did not start:" >&2; cat "$log" >&2; exit 1; }
export BRIG_URL=http://127.0.0.1:$port BRIG_API_KEY=$(cat "$state/api-key")

# The server: in a sandbox (port 8000), and the same binary on the host.
id=$("$brig" sandbox create base --timeout 900)
"$brig" files put "$id" "$bench" /tmp/brig-port-bench >/dev/null
"$brig" sandbox exec "$id" -- sh -c 'chmod +x /tmp/brig-port-bench && (/tmp/brig-port-bench serve 8000 >/dev/null 2>&1 &)'
"$bench" serve "$host_port" >/dev/null &
peer=$!
sandbox_host="8000-$id.localhost:$port"
for _ in $(seq 1 100); do
  [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Host: $sandbox_host" "http://127.0.0.1:$port/bytes/1") = 200 ]] &&
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$host_port/bytes/1") = 200 ]] && break
  sleep 0.1
done

bytes=$((MB << 20))
# One sample set: "direct" or "brig", get|post, bytes, runs -> the JSON of times (ms).
sample() {
  if [[ $1 = direct ]]; then "$bench" client "127.0.0.1:$host_port" "127.0.0.1:$host_port" "$2" "$3" "$4"
  else "$bench" client "127.0.0.1:$port" "$sandbox_host" "$2" "$3" "$4"; fi
}
declare -A times
for kind in get post; do
  sample direct "$kind" "$bytes" 1 >/dev/null  # warm-up
  sample brig "$kind" "$bytes" 1 >/dev/null
  # Interleaved, one transfer at a time, so a noisy machine slows both alike.
  for ((i = 0; i < RUNS; i++)); do
    for path in direct brig; do
      times[$path.$kind]+="$(sample "$path" "$kind" "$bytes" 1 | sed 's/.*\[\(.*\)\].*/\1/') "
    done
  done
done
for path in direct brig; do
  sample "$path" get 1 100 >/dev/null
  times[$path.small]=$(sample "$path" get 1 "$SMALL" | sed 's/.*\[\(.*\)\].*/\1/' | tr ',' ' ')
done

cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
{
  echo "# HTTP to a sandbox's port through brig's data plane (bench/ports/run.sh)"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); brig $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "- machine: $(uname -sr) $(uname -m), $(nproc) cores ($cpu); load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- server: brig-port-bench serve (static; a process per connection), in a \`base\` sandbox on port 8000 (its CPU quota: all $(nproc) cores) and on the host"
  echo "- client: brig-port-bench client, one kept-alive HTTP/1.1 connection; brig: 127.0.0.1:$port with Host <port>-<id>.localhost (getHost), direct: the host's server on 127.0.0.1"
  echo "- $RUNS transfers of $MB MiB per row, interleaved with the other path; latency: $SMALL requests of 1 byte in a row"
  echo
  python3 - "$MB" "${times[direct.get]}" "${times[brig.get]}" "${times[direct.post]}" "${times[brig.post]}" \
    "${times[direct.small]}" "${times[brig.small]}" <<'EOF'
import sys
mb = int(sys.argv[1])
def parse(s): return sorted(float(x) for x in s.replace(',', ' ').split())
def pct(xs, p):  # nearest rank
    return xs[max(0, min(len(xs) - 1, -(-p * len(xs) // 100) - 1))]
rate = lambda ms: mb * 1.048576 / (ms / 1000)  # MB/s (10^6 bytes)
print('| measurement | n | p50 | p95 | unit | brig / direct (p50) | target |')
print('|---|---|---|---|---|---|---|')
for label, d, b in (('download', sys.argv[2], sys.argv[3]), ('upload', sys.argv[4], sys.argv[5])):
    d, b = parse(d), parse(b)
    # Throughput: p50 of the times; p95 is the 95th-slowest time, i.e. the 5th percentile rate.
    dp50, dp95, bp50, bp95 = rate(pct(d, 50)), rate(pct(d, 95)), rate(pct(b, 50)), rate(pct(b, 95))
    ratio = bp50 / dp50
    print(f'| {label}, direct to the host server | {len(d)} | {dp50:.0f} | {dp95:.0f} | MB/s | 100% | |')
    print(f'| {label}, brig data plane to the sandbox | {len(b)} | {bp50:.0f} | {bp95:.0f} | MB/s | {100 * ratio:.1f}% | >= 50%: {"met" if ratio >= 0.5 else "MISSED"} |')
d, b = parse(sys.argv[6]), parse(sys.argv[7])
print(f'| 1-byte request, direct | {len(d)} | {1000 * pct(d, 50):.0f} | {1000 * pct(d, 95):.0f} | µs | 1.00x | |')
print(f'| 1-byte request, brig data plane | {len(b)} | {1000 * pct(b, 50):.0f} | {1000 * pct(b, 95):.0f} | µs | {pct(b, 50) / pct(d, 50):.2f}x | |')
EOF
} | tee "$root/bench/last-ports.md"
