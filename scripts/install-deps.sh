#!/usr/bin/env bash
# Installs everything brig needs to build, run and test on Debian 12 (bookworm), as root.
# Idempotent: a second run installs nothing new.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git
  # libraries (see ARCHITECTURE.md "Dependencies")
  libboost1.81-dev libseccomp-dev libsqlite3-dev libspdlog-dev libfmt-dev libcli11-dev
  nlohmann-json3-dev libssl-dev libarchive-dev libprotobuf-dev protobuf-compiler
  libzmq3-dev cppzmq-dev libtomlplusplus-dev
  # sandbox networking: veth/addresses/routes (rtnetlink), the host firewall, conntrack
  libnl-route-3-dev libnftables-dev libnetfilter-conntrack-dev libmnl-dev nftables
  # brig-egress: name resolution (c-ares), DNS messages (ldns)
  libc-ares-dev libldns-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # rootfs builds and peers for the benchmarks
  mmdebstrap debian-archive-keyring bubblewrap runc crun
  # sandbox disks: mkfs.ext4 formats one blank image per disk size
  e2fsprogs
  # tests
  iproute2 procps psmisc python3-pytest
  # egress tests: the namespaces' firewall, HTTP and TLS clients, the test CA
  nftables curl openssl
)
# Test clients are npm packages; use the machine's Node if it has one (Debian's nodejs and npm
# packages conflict with NodeSource builds).
command -v node >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: ok"
