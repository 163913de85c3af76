// A sandbox's own network: a veth pair whose host side is `bv<index>` (the even address of a
// /31 of the sandbox range) and whose peer is created directly in the sandbox's network
// namespace as `eth0` (the odd address, default route via the host side, IPv6 disabled), with
// the host firewall of firewall.h. Links, addresses and routes go through rtnetlink
// (libnl-route-3); nothing execs `ip`.
//
// Interfaces and the firewall table are host-wide, shared by every brig process (each state
// directory has its own registry, so registry slots cannot name them): an index is taken by
// creating its interface, under a host-wide lock (flock on kNetLockPath). When a sandbox ends,
// the kernel removes its interface with its namespace, and brig forgets its connections and
// empties its firewall objects (never deletes them: see firewall.h), which makes the index
// clean again for the next sandbox. What a crash leaves (objects of an index whose interface is
// gone, not emptied) is emptied by sweep_networks(), which also removes the table once no
// sandbox is left.
//
// attach_network runs in the zygote's per-create helper (single-threaded, root, in the host's
// network namespace); the rest runs in any brig process.
#pragma once

#include <sys/types.h>

#include <vector>

#include "base/cidr.h"
#include "base/fd.h"
#include "base/result.h"
#include "isolate/firewall.h"

namespace brig::isolate {

inline constexpr const char* kNetLockPath = "/run/brig-network.lock";

// The host-wide lock over brig's interfaces and firewall table (released on destruction, or
// when the process dies).
class NetLock {
 public:
  // Waits up to 10 s for the lock.
  static Result<NetLock> acquire();
  // The lock file, which also holds the list of emptied indexes (net.cc).
  int fd() const { return fd_.get(); }

 private:
  explicit NetLock(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;
};

struct NetSetup {
  std::string owner;          // the sandbox id: the host side's alias is "brig sandbox <id>"
  Ipv4Cidr subnet;            // the sandbox range
  EgressPolicy policy;        // what the sandbox may reach from the start
  uint32_t dns_upstream = 0;  // where its DNS goes when policy.dns (0: nowhere)
};

// For the sandbox whose first process is `pid` (in its new, still empty network namespace):
// takes the lowest free index, creates bv<index> with its peer eth0 in that namespace,
// addresses both sides, installs the firewall for it (and forgets stale conntrack entries of
// its addresses), then configures eth0 inside. On failure nothing of it is left.
Result<NetAddress> attach_network(pid_t pid, const NetSetup& setup);

// Creates (or repairs) the firewall table's shared part and turns IPv4 forwarding on. A create
// does it when the table is missing; a brig process calls it once before its first create, so
// that a table someone changed is repaired.
Result<> ensure_firewall(const Ipv4Cidr& subnet);

// Replaces the policy of a running sandbox and cuts its open connections that the new policy
// denies.
Result<> set_network_policy(const NetAddress& a, const EgressPolicy& policy, uint32_t dns_upstream);

// Forgets the connections of sandbox `owner` at `a`, then empties its firewall objects (its
// interface goes with its network namespace). Idempotent; does nothing when the index already
// belongs to another sandbox (its interface's alias says whose it is).
Result<> release_network(const NetAddress& a, const std::string& owner);

struct NetSweep {
  std::vector<uint32_t> removed;  // indexes whose dead sandbox's objects were emptied here
  bool table_removed = false;
};
// Empties the objects (and forgets the connections) of every index whose interface is gone and
// that no release emptied (crashes), and removes the table when no sandbox is left: the
// reaper's sweep, `brig doctor --cleanup`.
Result<NetSweep> sweep_networks(const Ipv4Cidr& subnet);

// The bv* interfaces on the host now.
std::vector<std::string> sandbox_interfaces();

}  // namespace brig::isolate
