#!/usr/bin/env bash
# Runs brig's start-up benchmark beside bubblewrap, runc and crun, in one run, on the test rootfs,
# and keeps the report in bench/last-run.md. Needs root (runc and brig's engine need it here).
#
#   bench/run.sh                      # 200 iterations + 10 warm-up
#   bench/run.sh --iterations 50      # any further arguments go to brig-startup-bench
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

cmake --build "$build" --target brig brig-startup-bench
rootfs=$("$root/scripts/build-test-rootfs.sh")

"$build/bench/brig-startup-bench" --rootfs "$rootfs" --brig "$build/src/brig" "$@" \
  | tee "$root/bench/last-run.md"
