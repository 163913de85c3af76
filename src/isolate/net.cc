#include "isolate/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <sched.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>
#include <thread>

#include "base/util.h"

namespace brig::isolate {
namespace {

constexpr auto kLockWait = std::chrono::seconds(10);

Error nl_error(int err, std::string_view what) {
  // libnl's codes are its own; the message says what the kernel refused.
  return Error::make(errc::unsupported, std::string(what) + ": " + nl_geterror(err));
}

struct SockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
using Sock = std::unique_ptr<nl_sock, SockDeleter>;
struct LinkDeleter {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
using Link = std::unique_ptr<rtnl_link, LinkDeleter>;
struct AddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
using Addr = std::unique_ptr<nl_addr, AddrDeleter>;

// A NETLINK_ROUTE socket in the calling thread's network namespace (it stays bound to that
// namespace whatever the thread does later). libnl opens it with SOCK_CLOEXEC.
Result<Sock> route_socket() {
  Sock sk(nl_socket_alloc());
  if (!sk) return Error::make(errc::limit_exceeded, "nl_socket_alloc");
  if (int err = nl_connect(sk.get(), NETLINK_ROUTE); err < 0) return nl_error(err, "netlink connect");
  return sk;
}

Addr ipv4(uint32_t ip, int prefix) {
  const uint32_t be = htonl(ip);
  Addr a(nl_addr_build(AF_INET, &be, sizeof be));
  if (a) nl_addr_set_prefixlen(a.get(), prefix);
  return a;
}

Result<int> ifindex_of(nl_sock* sk, const std::string& name) {
  rtnl_link* raw = nullptr;
  if (int err = rtnl_link_get_kernel(sk, 0, name.c_str(), &raw); err < 0) return nl_error(err, "find link " + name);
  Link link(raw);
  return rtnl_link_get_ifindex(link.get());
}

// Sets `name` up (and its alias, when given).
Result<> link_up(nl_sock* sk, const std::string& name, const std::string& alias = "") {
  rtnl_link* raw = nullptr;
  if (int err = rtnl_link_get_kernel(sk, 0, name.c_str(), &raw); err < 0) return nl_error(err, "find link " + name);
  Link link(raw);
  Link change(rtnl_link_alloc());
  if (!change) return Error::make(errc::limit_exceeded, "rtnl_link_alloc");
  rtnl_link_set_flags(change.get(), IFF_UP);
  if (!alias.empty()) rtnl_link_set_ifalias(change.get(), alias.c_str());
  if (int err = rtnl_link_change(sk, link.get(), change.get(), 0); err < 0) return nl_error(err, "set " + name + " up");
  return ok();
}

Result<> add_address(nl_sock* sk, int ifindex, uint32_t ip, int prefix) {
  std::unique_ptr<rtnl_addr, void (*)(rtnl_addr*)> addr(rtnl_addr_alloc(), rtnl_addr_put);
  Addr local = ipv4(ip, prefix);
  if (!addr || !local) return Error::make(errc::limit_exceeded, "rtnl_addr_alloc");
  rtnl_addr_set_ifindex(addr.get(), ifindex);
  if (int err = rtnl_addr_set_local(addr.get(), local.get()); err < 0) return nl_error(err, "address");
  if (int err = rtnl_addr_add(sk, addr.get(), 0); err < 0) return nl_error(err, "add address " + ipv4_text(ip));
  return ok();
}

Result<> add_default_route(nl_sock* sk, int ifindex, uint32_t gateway) {
  std::unique_ptr<rtnl_route, void (*)(rtnl_route*)> route(rtnl_route_alloc(), rtnl_route_put);
  Addr dst = ipv4(0, 0);
  Addr gw = ipv4(gateway, 32);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  if (!route || !dst || !gw || !nh) {
    if (nh) rtnl_route_nh_free(nh);
    return Error::make(errc::limit_exceeded, "rtnl_route_alloc");
  }
  rtnl_route_set_family(route.get(), AF_INET);
  rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
  if (int err = rtnl_route_set_dst(route.get(), dst.get()); err < 0) {
    rtnl_route_nh_free(nh);
    return nl_error(err, "route");
  }
  rtnl_route_nh_set_ifindex(nh, ifindex);
  rtnl_route_nh_set_gateway(nh, gw.get());
  rtnl_route_add_nexthop(route.get(), nh);  // the route owns it now
  if (int err = rtnl_route_add(sk, route.get(), NLM_F_CREATE); err < 0) return nl_error(err, "add default route");
  return ok();
}

Result<> delete_link(nl_sock* sk, const std::string& name) {
  Link link(rtnl_link_alloc());
  if (!link) return Error::make(errc::limit_exceeded, "rtnl_link_alloc");
  rtnl_link_set_name(link.get(), name.c_str());
  if (int err = rtnl_link_delete(sk, link.get()); err < 0 && err != -NLE_NODEV && err != -NLE_OBJ_NOTFOUND)
    return nl_error(err, "delete link " + name);
  return ok();
}

// Writes a sysctl of the calling thread's network namespace (/proc/sys/net follows it).
Result<> net_sysctl(const std::string& path, std::string_view value) {
  return write_small_file("/proc/sys/net/" + path, value);
}

// The same for IPv6 settings, which do not exist on a host booted without IPv6 (then there is
// no IPv6 to turn off).
Result<> ipv6_off(const std::string& conf) {
  if (::access("/proc/sys/net/ipv6", F_OK) != 0 && errno == ENOENT) return ok();
  return net_sysctl("ipv6/conf/" + conf + "/disable_ipv6", "1\n");
}

std::string owner_alias(const std::string& owner) { return "brig sandbox " + owner; }

// Whether interface `name` exists and belongs to another sandbox than `owner` (its alias names
// the sandbox it was made for): then its index was taken again after `owner` died.
bool taken_by_another(nl_sock* sk, const std::string& name, const std::string& owner) {
  rtnl_link* raw = nullptr;
  if (rtnl_link_get_kernel(sk, 0, name.c_str(), &raw) < 0) return false;
  Link link(raw);
  const char* alias = rtnl_link_get_ifalias(link.get());
  return !alias || alias != owner_alias(owner);
}

// The lowest index with neither an interface nor firewall objects (the lock is held). Objects
// without an interface are a dead sandbox's, on their way out (its release runs off the kill's
// path) or left by a crash (the sweep removes them); either way the index waits, so a create
// never overwrites (nftables would wait for a grace period) and never meets a dead sandbox's
// connections (a release forgets them together with the objects).
Result<uint32_t> free_index(const Ipv4Cidr& subnet, const FirewallState& firewall) {
  std::set<long> used(firewall.sandboxes.begin(), firewall.sandboxes.end());
  for (auto& name : sandbox_interfaces()) used.insert(parse_ifname(name));
  const uint32_t capacity = net_capacity(subnet);
  for (uint32_t i = 0; i < capacity; ++i)
    if (!used.count(i)) return i;
  return Error::make(errc::limit_exceeded, "the sandbox range " + cidr_text(subnet) + " is full (" + std::to_string(capacity) +
                                               " sandboxes): network.subnet");
}

// Inside the sandbox's namespace: eth0 addressed and up, default route via the host side, no
// IPv6 on eth0 (nor on any interface made later). Loopback keeps ::1, which reaches nothing.
Result<> configure_inside(pid_t pid, const NetAddress& a) {
  Fd self(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  Fd theirs(::open(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC));
  if (!self || !theirs) return Error::from_errno(errno, "open network namespace");
  if (::setns(theirs.get(), CLONE_NEWNET) != 0) return Error::from_errno(errno, "setns(sandbox network)");
  Result<> r = [&]() -> Result<> {
    BRIG_TRY(ipv6_off("default"));
    BRIG_TRY(ipv6_off("eth0"));
    BRIG_TRY_ASSIGN(sk, route_socket());
    BRIG_TRY_ASSIGN(index, ifindex_of(sk.get(), "eth0"));
    BRIG_TRY(add_address(sk.get(), index, a.sandbox_ip, 31));
    BRIG_TRY(link_up(sk.get(), "eth0"));
    return add_default_route(sk.get(), index, a.host_ip);
  }();
  // The helper goes on in the host's namespace; failing to return there is fatal for it.
  if (::setns(self.get(), CLONE_NEWNET) != 0) return Error::from_errno(errno, "setns(host network)");
  return r;
}

// The host side, under the lock: the pair, the firewall, the host end's address.
Result<NetAddress> create_host_side(pid_t pid, const NetSetup& setup, nl_sock* sk) {
  BRIG_TRY_ASSIGN(firewall, firewall_state());
  BRIG_TRY_ASSIGN(index, free_index(setup.subnet, firewall));
  NetAddress a = net_address(setup.subnet, index);
  // The peer is created in the sandbox's namespace at once: it never exists on the host.
  if (int err = rtnl_link_veth_add(sk, a.ifname.c_str(), "eth0", pid); err < 0) return nl_error(err, "create veth " + a.ifname);
  Result<> r = [&]() -> Result<> {
    BRIG_TRY(ipv6_off(a.ifname));
    BRIG_TRY(net_sysctl("ipv4/conf/" + a.ifname + "/rp_filter", "1\n"));
    BRIG_TRY(enable_ip_forwarding());
    // New objects only (the shared part too, when the last sandbox took the table along).
    std::string commands = firewall.table ? "" : base_text(setup.subnet);
    BRIG_TRY(nft_run(commands + install_text(a, setup.policy, setup.dns_upstream, true)));
    BRIG_TRY_ASSIGN(ifindex, ifindex_of(sk, a.ifname));
    BRIG_TRY(add_address(sk, ifindex, a.host_ip, 31));
    return link_up(sk, a.ifname, owner_alias(setup.owner));
  }();
  if (!r) {
    (void)delete_link(sk, a.ifname);
    (void)nft_run(remove_text(a.index));
    return r.error().wrap("network " + a.ifname);
  }
  return a;
}

}  // namespace

Result<NetLock> NetLock::acquire() {
  Fd fd(::open(kNetLockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return Error::from_errno(errno, std::string("open(") + kNetLockPath + ")");
  const auto until = std::chrono::steady_clock::now() + kLockWait;
  while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) return Error::from_errno(errno, "flock(network lock)");
    if (std::chrono::steady_clock::now() > until)
      return Error::make(errc::timed_out, std::string("another process holds ") + kNetLockPath + " for more than 10 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return NetLock(std::move(fd));
}

std::vector<std::string> sandbox_interfaces() {
  std::vector<std::string> out;
  if (struct if_nameindex* all = ::if_nameindex()) {
    for (struct if_nameindex* i = all; i->if_index != 0 && i->if_name; ++i)
      if (parse_ifname(i->if_name) >= 0) out.emplace_back(i->if_name);
    ::if_freenameindex(all);
  }
  return out;
}

Result<NetAddress> attach_network(pid_t pid, const NetSetup& setup) {
  BRIG_TRY_ASSIGN(sk, route_socket());
  NetAddress a;
  {
    BRIG_TRY_ASSIGN(lock, NetLock::acquire());
    BRIG_TRY_ASSIGN(created, create_host_side(pid, setup, sk.get()));
    a = created;
  }
  if (auto r = configure_inside(pid, a); !r) {
    (void)delete_link(sk.get(), a.ifname);
    (void)release_network(a, setup.owner);
    return r.error().wrap("network " + a.ifname + " (inside)");
  }
  return a;
}

Result<> set_network_policy(const NetAddress& a, const EgressPolicy& policy, uint32_t dns_upstream) {
  // No lock: only this sandbox's own objects change, and they exist (they keep its index)
  // while it lives. Flushes and adds only: nftables does not wait (firewall.h).
  BRIG_TRY(wrap(nft_run(update_text(a, policy, dns_upstream)), "set the network policy of " + a.ifname));
  // After the rules: a cut connection's next packet meets the new policy.
  BRIG_TRY(cut_denied_connections(a, policy));
  return ok();
}

Result<> ensure_firewall(const Ipv4Cidr& subnet) {
  BRIG_TRY_ASSIGN(lock, NetLock::acquire());
  BRIG_TRY(enable_ip_forwarding());
  return wrap(nft_run(base_text(subnet)), "set up the firewall table");
}

Result<> release_network(const NetAddress& a, const std::string& owner) {
  BRIG_TRY_ASSIGN(sk, route_socket());
  {
    BRIG_TRY_ASSIGN(lock, NetLock::acquire());
    if (taken_by_another(sk.get(), a.ifname, owner)) return ok();
  }
  // First its connections, while its chain still keeps the index (and so the address) from
  // the next sandbox; outside the lock, as it walks the whole conntrack table.
  BRIG_TRY(forget_connections(a.sandbox_ip));
  BRIG_TRY_ASSIGN(lock, NetLock::acquire());
  if (taken_by_another(sk.get(), a.ifname, owner)) return ok();
  // Fails only when the table is gone, with everything in it.
  if (auto r = nft_run(remove_text(a.index)); !r) {
    BRIG_TRY_ASSIGN(state, firewall_state());
    if (state.table) return r.error().wrap("remove the network of " + a.ifname);
  }
  auto others = sandbox_interfaces();
  std::erase(others, a.ifname);
  if (others.empty()) {
    BRIG_TRY_ASSIGN(state, firewall_state());
    if (state.table && state.sandboxes.empty()) BRIG_TRY(delete_firewall_table());
  }
  return ok();
}

Result<NetSweep> sweep_networks(const Ipv4Cidr& subnet) {
  NetSweep sweep;
  BRIG_TRY_ASSIGN(lock, NetLock::acquire());
  BRIG_TRY_ASSIGN(state, firewall_state());
  if (!state.table) return sweep;
  std::set<long> live;
  for (auto& name : sandbox_interfaces()) live.insert(parse_ifname(name));
  std::vector<uint32_t> left;
  for (uint32_t i : state.sandboxes) {
    if (live.count(i)) {
      left.push_back(i);
      continue;
    }
    BRIG_TRY(wrap(nft_run(remove_text(i)), "remove the orphaned network bv" + std::to_string(i)));
    (void)forget_connections(net_address(subnet, i).sandbox_ip);
    sweep.removed.push_back(i);
  }
  if (left.empty() && live.empty()) {
    BRIG_TRY(delete_firewall_table());
    sweep.table_removed = true;
  }
  return sweep;
}

}  // namespace brig::isolate
