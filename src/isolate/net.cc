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
#include <optional>
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

// Indexes whose objects a sandbox's end emptied and whose connections it forgot: the next
// create takes one of these before a new index. Kept in the lock file, read and written under
// the lock; an unreadable list is an empty one (then indexes are only taken anew, and the
// sweep empties what needs it).
std::set<uint32_t> read_clean(const NetLock& lock) {
  std::set<uint32_t> out;
  char buf[65536];
  ssize_t n = ::pread(lock.fd(), buf, sizeof buf - 1, 0);
  if (n <= 0) return out;
  for (auto& word : split(std::string_view(buf, static_cast<size_t>(n)), ' ')) {
    long i = parse_ifname("bv" + std::string(trim(word)));
    if (i >= 0) out.insert(static_cast<uint32_t>(i));
  }
  return out;
}

void write_clean(const NetLock& lock, const std::set<uint32_t>& clean) {
  std::string text;
  for (uint32_t i : clean) {
    if (text.size() > 60000) break;  // the rest is taken anew
    text += std::to_string(i) + " ";
  }
  if (::ftruncate(lock.fd(), 0) == 0) (void)::pwrite(lock.fd(), text.data(), text.size(), 0);
}

// The host side, under the lock: the pair, the firewall, the host end's address.
Result<NetAddress> create_host_side(pid_t pid, const NetSetup& setup, nl_sock* sk, const NetLock& lock) {
  std::set<long> live;
  for (auto& name : sandbox_interfaces()) live.insert(parse_ifname(name));
  // An emptied index if there is one (its objects are filled again); else the lowest index
  // with neither an interface nor objects. Objects without an interface that are not in the
  // clean list are a dead sandbox's, being released or left by a crash: their index waits
  // for the release or the sweep, so a create never meets a dead sandbox's connections.
  auto clean = read_clean(lock);
  std::optional<uint32_t> index;
  Install how = Install::fresh;
  std::optional<FirewallState> firewall;
  for (uint32_t i : clean)
    if (!live.count(i)) {
      index = i;
      how = Install::reuse;
      break;
    }
  if (!index) {
    BRIG_TRY_ASSIGN(state, firewall_state());
    std::set<long> used(state.sandboxes.begin(), state.sandboxes.end());
    used.insert(live.begin(), live.end());
    for (uint32_t i = 0; i < net_capacity(setup.subnet) && !index; ++i)
      if (!used.count(i)) index = i;
    if (!index)
      return Error::make(errc::limit_exceeded, "the sandbox range " + cidr_text(setup.subnet) + " is full (" +
                                                   std::to_string(net_capacity(setup.subnet)) + " sandboxes): network.subnet");
    firewall = state;
  }
  NetAddress a = net_address(setup.subnet, *index);
  // The peer is created in the sandbox's namespace at once: it never exists on the host.
  if (int err = rtnl_link_veth_add(sk, a.ifname.c_str(), "eth0", pid); err < 0) return nl_error(err, "create veth " + a.ifname);
  Result<> r = [&]() -> Result<> {
    BRIG_TRY(ipv6_off(a.ifname));
    BRIG_TRY(net_sysctl("ipv4/conf/" + a.ifname + "/rp_filter", "1\n"));
    BRIG_TRY(enable_ip_forwarding());
    // Without waiting: new objects (and the shared part when the table is gone), or an emptied
    // index's objects filled again. If that fails (someone changed the table), the slow way.
    std::string commands = firewall && !firewall->table ? base_text(setup.subnet) : "";
    if (!nft_run(commands + install_text(a, setup.policy, setup.dns_upstream, how))) {
      BRIG_TRY(nft_run(base_text(setup.subnet) + install_text(a, setup.policy, setup.dns_upstream, Install::overwrite)));
      BRIG_TRY(forget_connections(a.sandbox_ip));
    }
    BRIG_TRY_ASSIGN(ifindex, ifindex_of(sk, a.ifname));
    BRIG_TRY(add_address(sk, ifindex, a.host_ip, 31));
    return link_up(sk, a.ifname, owner_alias(setup.owner));
  }();
  if (!r) {
    (void)delete_link(sk, a.ifname);
    // Its objects, if they were filled, are emptied; it never had a connection.
    if (nft_run(clear_text(a.index))) clean.insert(a.index);
    write_clean(lock, clean);
    return r.error().wrap("network " + a.ifname);
  }
  if (clean.erase(a.index)) write_clean(lock, clean);
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
    BRIG_TRY_ASSIGN(created, create_host_side(pid, setup, sk.get(), lock));
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
  // No lock: only this sandbox's own objects change, and they keep its index while it lives.
  // Flushes and adds only: nftables does not wait (firewall.h).
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
  // First its connections, while its objects still keep the index (and so the address) from
  // the next sandbox; outside the lock, as the kernel walks the whole conntrack table.
  BRIG_TRY(forget_sandbox_connections(a.index));
  BRIG_TRY_ASSIGN(lock, NetLock::acquire());
  if (taken_by_another(sk.get(), a.ifname, owner)) return ok();
  auto clean = read_clean(lock);
  // Fails only when the table is gone, with everything in it.
  if (auto r = nft_run(clear_text(a.index)); !r) {
    BRIG_TRY_ASSIGN(state, firewall_state());
    if (state.table && std::count(state.sandboxes.begin(), state.sandboxes.end(), a.index))
      return r.error().wrap("empty the network objects of " + a.ifname);
    return ok();
  }
  clean.insert(a.index);
  write_clean(lock, clean);
  return ok();
}

Result<NetSweep> sweep_networks(const Ipv4Cidr& subnet) {
  NetSweep sweep;
  BRIG_TRY_ASSIGN(lock, NetLock::acquire());
  BRIG_TRY_ASSIGN(state, firewall_state());
  std::set<uint32_t> clean;
  if (state.table) {
    std::set<long> live;
    for (auto& name : sandbox_interfaces()) live.insert(parse_ifname(name));
    auto listed = read_clean(lock);
    for (uint32_t i : state.sandboxes) {
      if (live.count(i)) continue;
      if (listed.count(i)) {
        clean.insert(i);
        continue;
      }
      // A dead sandbox's objects that no release emptied (a crash): its connections first.
      (void)forget_sandbox_connections(i);
      (void)forget_connections(net_address(subnet, i).sandbox_ip);
      BRIG_TRY(wrap(nft_run(clear_text(i)), "empty the objects of the dead network bv" + std::to_string(i)));
      clean.insert(i);
      sweep.removed.push_back(i);
    }
    if (live.empty()) {
      BRIG_TRY(delete_firewall_table());
      sweep.table_removed = true;
      clean.clear();
    }
  }
  write_clean(lock, clean);
  return sweep;
}

}  // namespace brig::isolate
