// The host firewall of sandbox networks: one nftables table, `inet brig`, driven through
// libnftables (each change one atomic transaction), and the conntrack entries of sandbox
// addresses (libnetfilter_conntrack). Shared by every brig process on the host; callers hold the
// host-wide network lock (net.h) around each change.
//
// The table (see base_text() and install_text() for the exact rules):
//   prerouting (nat)  iifname "bv*": the sandbox's own nat chain by interface (nat_<i>: its
//                     connection mark; its DNS forwarded upstream, or redirected to brig egress's
//                     stub, and its TCP redirected to brig egress, when its policy has domains)
//   input             from bv*: established/related accepted, what a sandbox's nat chain
//                     redirected (ct status dnat: to the egress proxy or DNS stub) accepted,
//                     everything else rejected: the host, its addresses and brig's API are
//                     unreachable from sandboxes
//   forward           into bv*: only established/related; from bv*: established/related, not
//                     IPv4 rejected, forwarded DNS accepted, the always-denied set rejected, then
//                     the sandbox's chain by interface (sb_<i>: allow set accepts, deny set
//                     rejects, the rest is accepted), an interface without one rejected
//   postrouting (nat) from bv* to anything else: masquerade
//
// Thread safety: the functions share no state; the lock in net.h serialises changes between
// processes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/cidr.h"
#include "base/result.h"

namespace brig::isolate {

inline constexpr const char* kFirewallTable = "brig";  // table inet brig

// What one sandbox may reach over IPv4 (IPv6 is off for every sandbox). E2B's semantics: a
// destination in `allow` is allowed, else one in `deny` is denied, else it is allowed; the
// always-denied ranges are denied before any of this.
struct EgressPolicy {
  std::vector<Ipv4Cidr> allow;
  std::vector<Ipv4Cidr> deny;
  // Forward the sandbox's DNS (UDP/TCP 53 to its host-side address) to the upstream resolver.
  bool dns = false;
  // Domain rules (egress proxy, src/egress): the sandbox's new TCP connections are redirected to
  // this host port (the proxy judges them by TLS SNI / HTTP Host and its whole policy), and its
  // DNS (UDP/TCP 53 to its host-side address) to the DNS stub's port. 0: not redirected. The
  // allow/deny sets still judge everything else (UDP, ICMP).
  uint16_t proxy_port = 0;
  uint16_t dns_stub_port = 0;
  bool operator==(const EgressPolicy&) const = default;
};

// Ranges no policy opens: E2B's list (private, loopback, link-local and carrier-grade NAT), plus
// 0/8, multicast and the reserved 240/4 (with the broadcast address). brig egress denies the same
// (egress::DeniedSet, plus IPv6 ranges): this is the one list.
std::span<const Ipv4Cidr> always_denied();
// The firewall's decision for a new connection from a sandbox under `policy` to `ip`.
bool egress_allowed(const EgressPolicy& policy, uint32_t ip);

// One sandbox's place in the sandbox range: interface bv<index>, a /31 whose even address is the
// host side and odd address the sandbox's eth0.
struct NetAddress {
  uint32_t index = 0;
  uint32_t host_ip = 0;     // host byte order
  uint32_t sandbox_ip = 0;
  std::string ifname;       // "bv<index>"
};
NetAddress net_address(const Ipv4Cidr& subnet, uint32_t index);
// How many sandboxes the range holds.
uint32_t net_capacity(const Ipv4Cidr& subnet);
// "bv12" -> 12; -1 for any other name.
long parse_ifname(std::string_view name);

// nftables makes a commit that removes or redefines something wait for an RCU grace period
// (about 12 ms here): re-adding an existing chain, deleting a chain, a set or an element, a
// failed transaction. Adding new objects and flushing sets or chains do not wait. So brig never
// deletes a sandbox's objects: a sandbox's end empties them (clear_text: its rules and set
// elements go, the index's empty chains, sets and map entries stay), and the next sandbox of
// that index fills them again (Install::reuse); the table goes as a whole when no sandbox is
// left (the reaper's sweep).
//
// The nft commands that create (or repair) the table's shared part: sets, maps, the hook chains,
// the base chains and their rules (flushed and written again, atomically); idempotent. `subnet`
// joins the always-denied set (sandboxes never reach each other).
std::string base_text(const Ipv4Cidr& subnet);
enum class Install {
  fresh,      // no object of the index exists (the commands fail if its chains do)
  reuse,      // the index's objects exist, emptied by clear_text
  overwrite,  // anything may exist (slow: nftables waits)
};
// The nft commands that install sandbox `a` with `policy` (the shared part must exist).
// `dns_upstream` (host byte order; 0: none) is where its DNS goes when policy.dns is set.
std::string install_text(const NetAddress& a, const EgressPolicy& policy, uint32_t dns_upstream, Install how);
// The nft commands that replace sandbox `a`'s policy (its objects must exist).
std::string update_text(const NetAddress& a, const EgressPolicy& policy, uint32_t dns_upstream);
// The nft commands that empty index `index`'s objects: nothing of its sandbox stays (no rule,
// no set element; the chains are jumped to and return, so its interface meets `goto deny`).
std::string clear_text(uint32_t index);

// Runs nft commands (nft syntax) as one transaction. Errors carry nft's message.
Result<> nft_run(const std::string& commands);

// What the table holds now: whether it exists, and the indexes of its sandboxes' chains.
struct FirewallState {
  bool table = false;
  std::vector<uint32_t> sandboxes;
};
Result<FirewallState> firewall_state();
// Deletes the table (nothing if it does not exist).
Result<> delete_firewall_table();

// Conntrack: every connection a sandbox opens is marked kConnectionMarkTag | index (the first
// packet's nat chain sets it).
inline constexpr uint32_t kConnectionMarkTag = 0x62000000;  // 'b'
uint32_t connection_mark(uint32_t index);
// Deletes the entries of every connection sandbox `index` opened (one flush in the kernel).
Result<> forget_sandbox_connections(uint32_t index);
// Deletes the entries of connections from (or to) `ip`, walking the table from here (slower).
// Returns how many.
Result<size_t> forget_connections(uint32_t ip);
// Deletes the entries of connections from the sandbox at `a` that `policy` no longer allows, so
// their next packet is judged again (and refused). Returns how many.
Result<size_t> cut_denied_connections(const NetAddress& a, const EgressPolicy& policy);

// Turns IPv4 forwarding on (net.ipv4.ip_forward); brig never turns it off.
Result<> enable_ip_forwarding();

}  // namespace brig::isolate
