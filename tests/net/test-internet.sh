#!/usr/bin/env bash
# A tiny "internet" for network tests, on this machine only: a network namespace joined to the
# host by a veth, holding a public-looking service address and the addresses a sandbox must
# never reach, each served by tests/net/servers.py. Sandbox interfaces are routed into it by
# policy routing (`ip rule iif IFACE`), so nothing a test sandbox sends reaches the real network,
# and the host's own routing (its uplink, 169.254.169.254) is untouched.
#
#   test-internet.sh up NAME            creates it (NAME: [a-z0-9]{1,8}); prints KEY=VALUE lines
#   test-internet.sh attach NAME IFACE  routes what arrives on IFACE (a sandbox's bv*) into it
#   test-internet.sh detach NAME IFACE
#   test-internet.sh attach-uid NAME UID   routes what processes of UID send (brig egress, as
#                                       nobody, dials from the host's namespace) into it
#   test-internet.sh down NAME          removes it (its rules, routes, servers)
#
# Addresses inside (all served): 203.0.113.10 and 198.51.100.10 (public-looking), 192.168.77.10,
# 10.99.0.10, 172.16.5.10, 100.64.1.10 (private / carrier-grade NAT), 169.254.169.254 (cloud
# metadata). DNS (UDP 53, any name -> 203.0.113.10) at 203.0.113.53. HTTPS on 8443 with a
# certificate for api.rules.test and plain.rules.test from a CA of its own, made at `up`
# (printed as ca=PATH): the upstream of header-rule tests.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: test-internet.sh up|attach|attach-uid|detach|down NAME [IFACE|UID]}
name=${2:?name}
[[ $name =~ ^[a-z0-9]{1,8}$ ]] || { echo "test-internet: NAME must be 1-8 of [a-z0-9]" >&2; exit 2; }
ns=brigti-$name
veth=bti$name
state=/run/brig-test-internet-$name
# A routing table and rule priority of its own, from the name.
table=$((20000 + $(printf '%s' "$name" | cksum | cut -d' ' -f1) % 10000))

# Instances whose run ended without `down` (a test killed, or one that ran past its holder's
# hour): their rules would take this one's traffic (an earlier uid rule wins) into a network
# whose servers are gone. Each is known by its state file; it is stale when its holder is gone.
sweep_stale() {
  local f other pid
  for f in /run/brig-test-internet-*.holder; do
    [[ -e $f ]] || continue
    other=${f#/run/brig-test-internet-}
    other=${other%.holder}
    [[ $other =~ ^[a-z0-9]{1,8}$ && $other != "$name" ]] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] && grep -qs '^sleep' "/proc/$pid/cmdline" && continue
    echo "test-internet: removing $other, left by an earlier run" >&2
    bash "$0" down "$other"
  done
}

case $cmd in
up)
  [[ -e $state ]] && { echo "test-internet: $name exists" >&2; exit 1; }
  sweep_stale
  # The transit link: a /30 of 172.30.0.0/16 chosen from the name.
  n=$(( $(printf '%s' "$name" | cksum | cut -d' ' -f1) % 16384 ))
  base=$(( (172 << 24) | (30 << 16) | (n << 2) ))
  ip4() { echo "$(( $1 >> 24 & 255 )).$(( $1 >> 16 & 255 )).$(( $1 >> 8 & 255 )).$(( $1 & 255 ))"; }
  host_ip=$(ip4 $((base + 1)))
  peer_ip=$(ip4 $((base + 2)))
  ip netns add "$ns"
  ip link add "$veth" type veth peer name eth0 netns "$ns"
  ip addr add "$host_ip/30" dev "$veth"
  echo 1 >/proc/sys/net/ipv6/conf/$veth/disable_ipv6 2>/dev/null || true
  ip link set "$veth" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$peer_ip/30" dev eth0
  services="203.0.113.10 203.0.113.53 198.51.100.10 192.168.77.10 10.99.0.10 172.16.5.10 100.64.1.10 169.254.169.254"
  for a in $services; do
    ip -n "$ns" addr add "$a/32" dev lo
  done
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$host_ip"
  ip route add default via "$peer_ip" dev "$veth" table "$table"
  # The HTTPS server's CA and certificate.
  tls=$state.tls
  mkdir -p "$tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=brig test internet CA" \
    -addext basicConstraints=critical,CA:TRUE -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=api.rules.test" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:api.rules.test,DNS:plain.rules.test\n' >"$tls/ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
    -extfile "$tls/ext" -out "$tls/server.crt" 2>/dev/null
  # The servers, until the pipe to their stdin closes (this script's holder: a sleep).
  mkfifo "$state.in"
  # shellcheck disable=SC2086
  TLS_DIR=$tls setsid ip netns exec "$ns" python3 "$here/servers.py" $services <"$state.in" >"$state.log" 2>&1 &
  echo $! >"$state.pid"
  setsid sleep 3600 >"$state.in" &
  echo $! >"$state.holder"
  for _ in $(seq 1 100); do grep -q ready "$state.log" 2>/dev/null && break; sleep 0.05; done
  grep -q ready "$state.log" || { echo "test-internet: servers did not start: $(cat "$state.log")" >&2; exit 1; }
  printf 'table=%s\nhost_ip=%s\npeer_ip=%s\nca=%s\n' "$table" "$host_ip" "$peer_ip" "$tls/ca.crt" | tee "$state"
  ;;
attach)
  iface=${3:?iface}
  ip rule add iif "$iface" lookup "$table" pref "$table"
  ;;
attach-uid)
  uid=${3:?uid}
  [[ $uid =~ ^[0-9]+$ ]] || { echo "test-internet: UID must be a number" >&2; exit 2; }
  ip rule add uidrange "$uid-$uid" lookup "$table" pref "$table"
  ;;
detach)
  iface=${3:?iface}
  ip rule del iif "$iface" lookup "$table" pref "$table" 2>/dev/null || true
  ;;
down)
  while ip rule del lookup "$table" 2>/dev/null; do :; done
  ip route flush table "$table" 2>/dev/null || true
  [[ -f $state.holder ]] && kill "$(cat "$state.holder")" 2>/dev/null || true
  [[ -f $state.pid ]] && kill "$(cat "$state.pid")" 2>/dev/null || true
  ip link del "$veth" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -f "$state" "$state.in" "$state.log" "$state.pid" "$state.holder"
  rm -rf "$state.tls"
  ;;
*)
  echo "usage: test-internet.sh up|attach|attach-uid|detach|down NAME [IFACE|UID]" >&2
  exit 2
  ;;
esac
