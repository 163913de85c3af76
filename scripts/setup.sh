#!/usr/bin/env bash
# brig's main job on a fresh Debian 12 machine, as root: install what is needed, build brig,
# install it to /usr/local/bin, prepare a root filesystem, and run a first sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_DIR=${CCACHE_DIR:-${BRIG_CACHE_DIR:-/var/cache/brig}/ccache}

echo "==> installing dependencies"
./scripts/install-deps.sh
echo "==> building brig"
cmake --preset dev >/dev/null
cmake --build build --target brig
install -m 0755 build/src/brig /usr/local/bin/brig
echo "==> preparing a Debian root filesystem (once; cached under ${BRIG_CACHE_DIR:-/var/cache/brig})"
rootfs=$(./scripts/build-test-rootfs.sh)
echo "==> brig doctor"
brig doctor
echo "==> a first sandbox"
set -x
brig run --rootfs "$rootfs" --memory 256M --cpus 1 --timeout 30s -- \
  sh -c 'echo "hello from sandbox $(hostname) as $(id -un)"; python3 -c "print(sum(range(10**6)))"'
