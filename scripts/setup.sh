#!/usr/bin/env bash
# brig's main job on a fresh Debian 12 machine, as root: install what is needed, build brig,
# install it to /usr/local/bin, build the built-in templates, run a first sandbox, then serve
# the E2B-compatible API on 127.0.0.1:49982 (it prints the export lines for the e2b SDK).
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_DIR=${CCACHE_DIR:-${BRIG_CACHE_DIR:-/var/cache/brig}/ccache}

echo "==> installing dependencies"
./scripts/install-deps.sh
echo "==> building brig"
cmake --preset dev >/dev/null
cmake --build build --target brig
install -m 0755 build/src/brig /usr/local/bin/brig
echo "==> brig doctor"
brig doctor
echo "==> building the built-in templates (first time only: a few minutes; cached in /var/lib/brig)"
for t in minimal node base python3 code-interpreter-v1; do
  brig run --template "$t" --timeout 60s -- true
done
brig template list
echo "==> a first sandbox"
brig run --template python3 --memory 256M --cpus 1 --timeout 30s -- \
  python3 -c 'import platform, numpy; print("hello from", platform.node(), "numpy", numpy.__version__)'
echo "==> serving the E2B-compatible API (Ctrl-C stops it; its sandboxes end with it)"
exec brig --log-level info serve
