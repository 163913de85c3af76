#!/usr/bin/env bash
# Builds the minimal Debian rootfs that the engine's tests and benchmarks run in, once, into a
# cache directory outside the clone (BRIG_CACHE_DIR, default /var/cache/brig). Prints its path.
# The tree is owned by host root and is only ever used read-only (as an overlayfs lower layer).
set -euo pipefail

cache=${BRIG_CACHE_DIR:-/var/cache/brig}
packages=bash,coreutils,python3-minimal,procps
# The name carries a hash of the recipe, so a changed recipe builds a new tree.
key=$(printf '%s|%s' "bookworm minbase" "$packages" | sha256sum | cut -c1-12)
dest="$cache/rootfs/test-$key"

if [[ -f "$dest/.brig-complete" ]]; then
  echo "$dest"
  exit 0
fi

mkdir -p "$cache/rootfs"
tmp=$(mktemp -d "$cache/rootfs/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build-test-rootfs: mmdebstrap bookworm ($packages) -> $dest" >&2
mmdebstrap --variant=minbase --include="$packages" --quiet \
  --customize-hook='chroot "$1" useradd -m -u 1000 -s /bin/bash user' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  bookworm "$tmp/tree" http://deb.debian.org/debian >&2
touch "$tmp/tree/.brig-complete"
rm -rf "$dest"
mv "$tmp/tree" "$dest"
echo "$dest"
