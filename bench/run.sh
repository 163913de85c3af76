#!/usr/bin/env bash
# Runs brig's start-up benchmark beside bubblewrap, runc and crun, in one run, on the test rootfs,
# then the HTTP benchmark (1,000 idle keep-alive connections to a brig serve, bench/http/), and
# keeps the report in bench/last-run.md. Needs root (runc and brig's engine need it here).
#
#   bench/run.sh                      # 200 iterations + 10 warm-up, then the HTTP bench
#   bench/run.sh --iterations 50      # any further arguments go to brig-startup-bench
#   BENCH=http bench/run.sh           # only one of them (startup | http)
#   BRIG_BASELINE=/path/to/older/brig bench/run.sh   # the HTTP bench measures it side by side
#   BUILD_DIR=build-release bench/run.sh
#
# Assumes the build directory is configured (cmake --preset dev, or cmake -S . -B build -G Ninja).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-build}
[[ $build = /* ]] || build="$root/$build"

if [[ $(id -u) -ne 0 ]]; then
  echo "bench/run.sh: needs root (runc and brig's sandboxes); try: sudo $0 $*" >&2
  exit 1
fi
if [[ ! -f $build/build.ninja && ! -f $build/Makefile ]]; then
  echo "bench/run.sh: $build is not configured; run: cmake --preset dev (or cmake -S $root -B $build -G Ninja)" >&2
  exit 1
fi

benches=" ${BENCH:-startup http} "
cmake --build "$build" --target brig brig-startup-bench brig-http-bench
{
  if [[ $benches == *" startup "* ]]; then
    rootfs=$("$root/scripts/build-test-rootfs.sh")
    "$build/bench/brig-startup-bench" --rootfs "$rootfs" --brig "$build/src/brig" "$@"
    echo
  fi
  if [[ $benches == *" http "* ]]; then
    BUILD_DIR=$build "$root/bench/http/run.sh"
  fi
} | tee "$root/bench/last-run.md"
