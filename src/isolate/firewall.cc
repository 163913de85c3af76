#include "isolate/firewall.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <unistd.h>

#include <array>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/util.h"

namespace brig::isolate {
namespace {

constexpr Ipv4Cidr cidr(uint32_t a, uint32_t b, uint32_t c, uint32_t d, uint8_t prefix) {
  return {a << 24 | b << 16 | c << 8 | d, prefix};
}

// E2B's DeniedSandboxCIDRs (packages/shared/pkg/sandbox-network/firewall.go), plus 0/8 (E2B
// has it too), multicast and 240/4 (reserved, with 255.255.255.255).
constexpr std::array kAlwaysDenied = {
    cidr(0, 0, 0, 0, 8),     cidr(10, 0, 0, 0, 8),      cidr(100, 64, 0, 0, 10), cidr(127, 0, 0, 0, 8),
    cidr(169, 254, 0, 0, 16), cidr(172, 16, 0, 0, 12),  cidr(192, 168, 0, 0, 16), cidr(224, 0, 0, 0, 4),
    cidr(240, 0, 0, 0, 4),
};

std::string elements(const std::vector<Ipv4Cidr>& ranges) {
  std::string out;
  for (auto& r : ranges) out += (out.empty() ? "" : ", ") + cidr_text(r);
  return out;
}

std::string t(const std::string& rest) { return std::string("inet ") + kFirewallTable + " " + rest; }

// The shared part: sets, maps, hook chains and the base chains' rules (flushed and written again
// in the same transaction, so a table changed by hand is repaired atomically).
std::string shared_text(const Ipv4Cidr& subnet) {
  std::vector<Ipv4Cidr> denied(kAlwaysDenied.begin(), kAlwaysDenied.end());
  denied.push_back(subnet);
  std::string s;
  s += "add table " + t("") + "\n";
  s += "add set " + t("always_deny { type ipv4_addr; flags interval; auto-merge; }") + "\n";
  s += "add element " + t("always_deny { " + elements(normalize_ranges(denied)) + " }") + "\n";
  s += "add map " + t("egress { type ifname : verdict; }") + "\n";
  s += "add map " + t("egress_nat { type ifname : verdict; }") + "\n";
  for (const char* c : {"deny", "from_sandbox"}) s += "add chain " + t(c) + "\n";
  s += "add chain " + t("prerouting { type nat hook prerouting priority dstnat; policy accept; }") + "\n";
  s += "add chain " + t("input { type filter hook input priority filter; policy accept; }") + "\n";
  s += "add chain " + t("forward { type filter hook forward priority filter; policy accept; }") + "\n";
  s += "add chain " + t("postrouting { type nat hook postrouting priority srcnat; policy accept; }") + "\n";
  for (const char* c : {"deny", "from_sandbox", "prerouting", "input", "forward", "postrouting"})
    s += "flush chain " + t(c) + "\n";
  auto rule = [&](const char* chain, const char* r) { s += "add rule " + t(std::string(chain) + " " + r) + "\n"; };
  rule("deny", "meta l4proto tcp reject with tcp reset");
  rule("deny", "reject with icmpx admin-prohibited");
  rule("prerouting", "iifname \"bv*\" iifname vmap @egress_nat");
  rule("input", "iifname != \"bv*\" return");
  rule("input", "ct state established,related accept");
  // Only a sandbox's own nat chain translates its packets to the host: to the egress proxy or
  // the DNS stub (policy_text). Anything else addressed to the host is refused below.
  rule("input", "ct status dnat accept");
  rule("input", "goto deny");
  rule("forward", "oifname \"bv*\" ct state established,related accept");
  rule("forward", "oifname \"bv*\" goto deny");
  rule("forward", "iifname \"bv*\" goto from_sandbox");
  rule("from_sandbox", "ct state established,related accept");
  rule("from_sandbox", "meta nfproto != ipv4 goto deny");
  rule("from_sandbox", "ct status dnat meta l4proto { tcp, udp } th dport 53 accept");
  rule("from_sandbox", "ip daddr @always_deny goto deny");
  rule("from_sandbox", "iifname vmap @egress");
  rule("from_sandbox", "goto deny");
  rule("postrouting", "iifname \"bv*\" oifname != \"bv*\" masquerade");
  return s;
}

// The sandbox's sets and its nat chain's rule: what a policy change rewrites.
std::string policy_text(const NetAddress& a, const EgressPolicy& policy, uint32_t dns_upstream) {
  const std::string i = std::to_string(a.index);
  std::string s;
  s += "flush set " + t("allow_" + i) + "\n";
  s += "flush set " + t("deny_" + i) + "\n";
  if (auto allow = normalize_ranges(policy.allow); !allow.empty())
    s += "add element " + t("allow_" + i + " { " + elements(allow) + " }") + "\n";
  if (auto deny = normalize_ranges(policy.deny); !deny.empty())
    s += "add element " + t("deny_" + i + " { " + elements(deny) + " }") + "\n";
  s += "flush chain " + t("nat_" + i) + "\n";
  // nat chains see the first packet of each connection only: every connection from the sandbox
  // carries its index in its conntrack mark, so they can all be forgotten at once (in the
  // kernel) when it ends.
  s += "add rule " + t("nat_" + i + " ct mark set " + std::to_string(connection_mark(a.index))) + "\n";
  const std::string to_dns = "nat_" + i + " ip daddr " + ipv4_text(a.host_ip) + " meta l4proto { tcp, udp } th dport 53 ";
  if (policy.dns_stub_port)
    s += "add rule " + t(to_dns + "redirect to :" + std::to_string(policy.dns_stub_port)) + "\n";
  else if (policy.dns && dns_upstream)
    s += "add rule " + t(to_dns + "dnat ip to " + ipv4_text(dns_upstream)) + "\n";
  if (policy.proxy_port)
    s += "add rule " + t("nat_" + i + " meta l4proto tcp redirect to :" + std::to_string(policy.proxy_port)) + "\n";
  return s;
}

struct NftCtx {
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  NftCtx() {
    if (ctx) {
      nft_ctx_buffer_output(ctx);
      nft_ctx_buffer_error(ctx);
    }
  }
  ~NftCtx() {
    if (ctx) nft_ctx_free(ctx);
  }
  NftCtx(const NftCtx&) = delete;
  NftCtx& operator=(const NftCtx&) = delete;
};

Result<std::string> nft_output(const std::string& commands, bool json) {
  NftCtx nft;
  if (!nft.ctx) return Error::make(errc::unsupported, "libnftables: cannot create a context");
  if (json) nft_ctx_output_set_flags(nft.ctx, NFT_CTX_OUTPUT_JSON);
  if (nft_run_cmd_from_buffer(nft.ctx, commands.c_str()) != 0) {
    std::string err = nft_ctx_get_error_buffer(nft.ctx);
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    if (err.size() > 2000) err = err.substr(0, 2000) + "...";
    return Error::make(errc::unsupported, "nftables: " + (err.empty() ? std::string("command failed") : err));
  }
  return std::string(nft_ctx_get_output_buffer(nft.ctx));
}

// ---- conntrack (libnetfilter_conntrack over a libmnl socket, CLOEXEC from the start) ---------

struct MnlSocket {
  mnl_socket* nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
  ~MnlSocket() {
    if (nl) mnl_socket_close(nl);
  }
  MnlSocket() = default;
  MnlSocket(const MnlSocket&) = delete;
  MnlSocket& operator=(const MnlSocket&) = delete;
};

struct CtDeleter {
  void operator()(nf_conntrack* ct) const { nfct_destroy(ct); }
};
using CtPtr = std::unique_ptr<nf_conntrack, CtDeleter>;

nlmsghdr* ct_header(char* buf, uint16_t msg, uint16_t flags, uint32_t seq) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | msg;
  nlh->nlmsg_flags = flags;
  nlh->nlmsg_seq = seq;
  auto* nfh = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfh->nfgen_family = AF_INET;
  nfh->version = NFNETLINK_V0;
  nfh->res_id = 0;
  return nlh;
}

// Deletes every IPv4 conntrack entry for which `doomed` is true.
template <typename Pred>
Result<size_t> delete_connections(Pred doomed) {
  MnlSocket sock;
  if (!sock.nl) return Error::from_errno(errno, "conntrack: mnl_socket_open");
  if (mnl_socket_bind(sock.nl, 0, MNL_SOCKET_AUTOPID) < 0) return Error::from_errno(errno, "conntrack: mnl_socket_bind");
  const uint32_t portid = mnl_socket_get_portid(sock.nl);
  std::vector<char> buf(32768);  // libmnl's advice for dumps (MNL_SOCKET_DUMP_SIZE in newer versions)
  uint32_t seq = static_cast<uint32_t>(::time(nullptr));
  nlmsghdr* nlh = ct_header(buf.data(), IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq);
  if (mnl_socket_sendto(sock.nl, nlh, nlh->nlmsg_len) < 0) return Error::from_errno(errno, "conntrack: dump");
  struct Collect {
    Pred* doomed;
    std::vector<CtPtr> found;
  } collect{&doomed, {}};
  auto on_entry = [](const nlmsghdr* h, void* data) -> int {
    auto* c = static_cast<Collect*>(data);
    CtPtr ct(nfct_new());
    if (!ct || nfct_nlmsg_parse(h, ct.get()) < 0) return MNL_CB_OK;
    if ((*c->doomed)(ct.get()) && c->found.size() < 1'000'000) c->found.push_back(std::move(ct));
    return MNL_CB_OK;
  };
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(sock.nl, buf.data(), buf.size());
    if (n < 0) return Error::from_errno(errno, "conntrack: read dump");
    int r = mnl_cb_run(buf.data(), static_cast<size_t>(n), seq, portid, on_entry, &collect);
    if (r == MNL_CB_STOP) break;
    if (r < 0) return Error::from_errno(errno, "conntrack: parse dump");
  }
  size_t deleted = 0;
  for (auto& ct : collect.found) {
    nlh = ct_header(buf.data(), IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, ++seq);
    nfct_nlmsg_build(nlh, ct.get());
    if (mnl_socket_sendto(sock.nl, nlh, nlh->nlmsg_len) < 0) return Error::from_errno(errno, "conntrack: delete");
    ssize_t n = mnl_socket_recvfrom(sock.nl, buf.data(), buf.size());
    if (n < 0) return Error::from_errno(errno, "conntrack: delete");
    if (mnl_cb_run(buf.data(), static_cast<size_t>(n), seq, portid, nullptr, nullptr) >= 0) ++deleted;
    else if (errno != ENOENT) return Error::from_errno(errno, "conntrack: delete");  // ENOENT: it ended meanwhile
  }
  return deleted;
}

}  // namespace

std::span<const Ipv4Cidr> always_denied() { return kAlwaysDenied; }

bool egress_allowed(const EgressPolicy& policy, uint32_t ip) {
  auto in = [ip](auto& ranges) {
    for (auto& r : ranges)
      if (r.contains(ip)) return true;
    return false;
  };
  if (in(kAlwaysDenied)) return false;
  if (in(policy.allow)) return true;
  return !in(policy.deny);
}

NetAddress net_address(const Ipv4Cidr& subnet, uint32_t index) {
  NetAddress a;
  a.index = index;
  a.host_ip = subnet.addr + 2 * index;
  a.sandbox_ip = a.host_ip + 1;
  a.ifname = "bv" + std::to_string(index);
  return a;
}

uint32_t net_capacity(const Ipv4Cidr& subnet) {
  if (subnet.prefix >= 31) return 0;
  uint64_t size = uint64_t{1} << (32 - subnet.prefix);
  return static_cast<uint32_t>(std::min<uint64_t>(size / 2, 1'000'000));
}

long parse_ifname(std::string_view name) {
  if (name.size() < 3 || name.size() > 9 || name.substr(0, 2) != "bv") return -1;
  std::string_view digits = name.substr(2);
  if (digits.size() > 1 && digits[0] == '0') return -1;
  long n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

std::string base_text(const Ipv4Cidr& subnet) { return shared_text(subnet); }

std::string install_text(const NetAddress& a, const EgressPolicy& policy, uint32_t dns_upstream, Install how) {
  const std::string i = std::to_string(a.index);
  std::string s;
  switch (how) {
    case Install::fresh:  // new objects; `create` fails if a chain of this index exists
      s += "create chain " + t("sb_" + i) + "\n";
      s += "create chain " + t("nat_" + i) + "\n";
      break;
    case Install::reuse:  // an index's emptied objects (clear_text): filled again
      s += "flush chain " + t("sb_" + i) + "\n";
      break;
    case Install::overwrite:  // whatever is there, made right (slow: re-adding a chain waits)
      s += "add chain " + t("sb_" + i) + "\n";
      s += "flush chain " + t("sb_" + i) + "\n";
      s += "add chain " + t("nat_" + i) + "\n";
      break;
  }
  for (const char* set : {"allow_", "deny_"})
    s += "add set " + t(set + i + " { type ipv4_addr; flags interval; auto-merge; }") + "\n";
  s += policy_text(a, policy, dns_upstream);
  // Only the sandbox's own address may leave its interface (and rp_filter says the same).
  s += "add rule " + t("sb_" + i + " ip saddr != " + ipv4_text(a.sandbox_ip) + " drop") + "\n";
  s += "add rule " + t("sb_" + i + " ip daddr @allow_" + i + " accept") + "\n";
  s += "add rule " + t("sb_" + i + " ip daddr @deny_" + i + " goto deny") + "\n";
  s += "add rule " + t("sb_" + i + " accept") + "\n";
  // The one value these elements ever have: adding an existing one is a no-op.
  s += "add element " + t("egress { \"" + a.ifname + "\" : jump sb_" + i + " }") + "\n";
  s += "add element " + t("egress_nat { \"" + a.ifname + "\" : jump nat_" + i + " }") + "\n";
  return s;
}

std::string update_text(const NetAddress& a, const EgressPolicy& policy, uint32_t dns_upstream) {
  return policy_text(a, policy, dns_upstream);
}

std::string clear_text(uint32_t index) {
  const std::string i = std::to_string(index);
  std::string s;
  for (const char* chain : {"sb_", "nat_"}) s += "flush chain " + t(chain + i) + "\n";
  for (const char* set : {"allow_", "deny_"}) s += "flush set " + t(set + i) + "\n";
  return s;
}

Result<> nft_run(const std::string& commands) {
  BRIG_TRY(nft_output(commands, false));
  return ok();
}

Result<FirewallState> firewall_state() {
  // One listing of the inet family's chains: the table has chains whenever it exists.
  FirewallState state;
  BRIG_TRY_ASSIGN(listing, nft_output("list chains inet", true));
  auto j = nlohmann::json::parse(listing, nullptr, false);
  if (!j.is_object() || !j.contains("nftables") || !j["nftables"].is_array())
    return Error::make(errc::protocol, "nftables: unexpected JSON listing");
  for (auto& item : j["nftables"]) {
    if (!item.contains("chain")) continue;
    auto& c = item["chain"];
    if (c.value("table", "") != kFirewallTable || c.value("family", "") != "inet") continue;
    state.table = true;
    std::string name = c.value("name", "");
    if (name.rfind("sb_", 0) != 0) continue;
    long n = parse_ifname("bv" + name.substr(3));
    if (n >= 0) state.sandboxes.push_back(static_cast<uint32_t>(n));
  }
  return state;
}

Result<> delete_firewall_table() {
  BRIG_TRY_ASSIGN(state, firewall_state());
  if (!state.table) return ok();
  return nft_run(std::string("delete table inet ") + kFirewallTable + "\n");
}

uint32_t connection_mark(uint32_t index) { return kConnectionMarkTag | (index & 0xffffff); }

Result<> forget_sandbox_connections(uint32_t index) {
  // A delete without a tuple is a flush; with a mark it flushes the entries of that mark only,
  // walking the table in the kernel.
  MnlSocket sock;
  if (!sock.nl) return Error::from_errno(errno, "conntrack: mnl_socket_open");
  if (mnl_socket_bind(sock.nl, 0, MNL_SOCKET_AUTOPID) < 0) return Error::from_errno(errno, "conntrack: mnl_socket_bind");
  // The attributes are put directly: nfct_nlmsg_build wants a tuple (EINVAL without one).
  std::vector<char> buf(8192);
  const uint32_t seq = static_cast<uint32_t>(::time(nullptr));
  nlmsghdr* nlh = ct_header(buf.data(), IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq);
  mnl_attr_put_u32(nlh, CTA_MARK, htonl(connection_mark(index)));
  mnl_attr_put_u32(nlh, CTA_MARK_MASK, htonl(0xffffffffu));
  if (mnl_socket_sendto(sock.nl, nlh, nlh->nlmsg_len) < 0) return Error::from_errno(errno, "conntrack: flush");
  ssize_t n = mnl_socket_recvfrom(sock.nl, buf.data(), buf.size());
  if (n < 0) return Error::from_errno(errno, "conntrack: flush");
  if (mnl_cb_run(buf.data(), static_cast<size_t>(n), seq, mnl_socket_get_portid(sock.nl), nullptr, nullptr) < 0 && errno != ENOENT)
    return Error::from_errno(errno, "conntrack: flush");
  return ok();
}

Result<size_t> forget_connections(uint32_t ip) {
  const uint32_t be = htonl(ip);
  return delete_connections([be](const nf_conntrack* ct) {
    return nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO) == AF_INET &&
           (nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_SRC) == be || nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_DST) == be);
  });
}

Result<size_t> cut_denied_connections(const NetAddress& a, const EgressPolicy& policy) {
  const uint32_t src = htonl(a.sandbox_ip);
  return delete_connections([&](const nf_conntrack* ct) {
    if (nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO) != AF_INET || nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_SRC) != src) return false;
    const uint32_t dst = ntohl(nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_DST));
    // Redirected to the host (the egress proxy or the DNS stub): the proxy judges its own
    // connections again when it is told the new policy.
    if (ntohl(nfct_get_attr_u32(ct, ATTR_REPL_IPV4_SRC)) == a.host_ip && dst != a.host_ip)
      return policy.proxy_port == 0 && !egress_allowed(policy, dst);
    // Its DNS, forwarded through the host side: kept while DNS stays on.
    if (dst == a.host_ip) return !((policy.dns || policy.dns_stub_port) && ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST)) == 53);
    return !egress_allowed(policy, dst);
  });
}

Result<> enable_ip_forwarding() {
  const char* path = "/proc/sys/net/ipv4/ip_forward";
  auto now = read_small_file(path, 16);
  if (now && trim(*now) == "1") return ok();
  return write_small_file(path, "1\n");
}

}  // namespace brig::isolate
