// Sandbox networks and their egress policy (issue 13, e2b-next.md 2.3 and 4.2): a probe inside a
// sandbox with its own network tries to reach a tiny "internet" built on this machine
// (tests/net/test-internet.sh: a network namespace that the sandbox's interface is policy-routed
// into, with a public-looking service and the addresses no sandbox may reach). Each denial has
// a control showing the same destination is served and routed there, so a refusal is the
// firewall's. Negative cases first.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/cidr.h"
#include "isolate/firewall.h"
#include "isolate/net.h"
#include "sandbox/backend.h"
#include "security/security_helpers.h"

namespace brig::security {
namespace {

using namespace std::chrono_literals;
using brig::testing::ScopedEngine;
using sandbox::EgressPolicy;

const Ipv4Cidr kSubnet = *parse_ipv4_cidr(config::Network{}.subnet);
constexpr const char* kPublic = "203.0.113.10";    // served by the test internet
constexpr const char* kPublic2 = "198.51.100.10";  // another public-looking address there
constexpr const char* kDnsServer = "203.0.113.53";

Ipv4Cidr cidr(const char* text) { return *parse_ipv4_cidr(text); }

// The test internet, set up once for this process and removed at its exit.
class TestInternet {
 public:
  TestInternet() : name_(random_hex(8)) {
    auto r = script({"up", name_});
    ok_ = r.exit_code == 0;
    log_ = r.out;
  }
  ~TestInternet() { script({"down", name_}); }
  bool ok() const { return ok_; }
  const std::string& log() const { return log_; }
  void attach(const std::string& iface) { script({"attach", name_, iface}); }
  void detach(const std::string& iface) { script({"detach", name_, iface}); }

 private:
  static HostRun script(std::vector<std::string> args) {
    args.insert(args.begin(), {"/bin/bash", std::string(BRIG_SOURCE_DIR) + "/tests/net/test-internet.sh"});
    return run_on_host(args);
  }
  std::string name_;
  bool ok_ = false;
  std::string log_;
};

TestInternet& internet() {
  static TestInternet net;
  return net;
}

std::optional<isolate::NetAddress> net_of(const std::shared_ptr<sandbox::Sandbox>& sb) {
  auto* h = dynamic_cast<sandbox::SandboxHandle*>(sb.get());
  if (!h || h->record().net_index < 0) return std::nullopt;
  return isolate::net_address(kSubnet, static_cast<uint32_t>(h->record().net_index));
}

// A sandbox with its own network under `policy`, routed into the test internet.
class NetSandbox {
 public:
  // `routed`: what leaves its interface goes to the test internet (else the host's routes).
  explicit NetSandbox(EgressPolicy policy, sandbox::Engine& engine = shared_engine(), bool routed = true)
      : sb_(spec(std::move(policy)), engine), net_(net_of(sb_.shared())), routed_(routed) {
    if (net_ && routed_) internet().attach(net_->ifname);
  }
  ~NetSandbox() {
    if (net_ && routed_) internet().detach(net_->ifname);
  }
  static sandbox::SandboxSpec spec(EgressPolicy policy) {
    auto s = TestSandbox::default_spec();
    s.egress = std::move(policy);
    return s;
  }
  TestSandbox& sb() { return sb_; }
  const isolate::NetAddress& net() const { return *net_; }
  bool has_net() const { return net_.has_value(); }

 private:
  TestSandbox sb_;
  std::optional<isolate::NetAddress> net_;
  bool routed_;
};

#define REQUIRE_INTERNET()                                                           \
  do {                                                                               \
    BRIG_REQUIRE_SANDBOX_ENV();                                                      \
    ASSERT_TRUE(internet().ok()) << "the test internet did not start: " << internet().log(); \
  } while (0)

// Where the kernel would send a packet from the sandbox's interface to `dst`: the control that
// a refusal was the firewall's and not a missing route.
std::string route_from(const isolate::NetAddress& a, const std::string& dst) {
  return run_on_host({"/usr/sbin/ip", "-o", "route", "get", dst, "from", ipv4_text(a.sandbox_ip), "iif", a.ifname}).out;
}

// What the firewall holds of the sandbox at `index`: the rules of its chains and the elements
// of its sets (its empty chains, sets and map entries stay for the next sandbox of the index).
std::vector<std::string> firewall_data_of(uint32_t index) {
  auto listing = run_on_host({"/bin/sh", "-c", std::string("nft -j list table inet ") + isolate::kFirewallTable + " 2>/dev/null"});
  std::vector<std::string> found;
  auto j = nlohmann::json::parse(listing.out, nullptr, false);
  if (!j.is_object()) return found;  // no table at all
  const std::string i = std::to_string(index);
  for (auto& item : j["nftables"]) {
    if (item.contains("rule")) {
      std::string chain = item["rule"].value("chain", "");
      if (chain == "sb_" + i || chain == "nat_" + i) found.push_back("rule in " + chain + ": " + item["rule"]["expr"].dump());
    }
    if (item.contains("set")) {
      std::string name = item["set"].value("name", "");
      if ((name == "allow_" + i || name == "deny_" + i) && item["set"].contains("elem"))
        found.push_back("elements of " + name + ": " + item["set"]["elem"].dump());
    }
  }
  return found;
}

bool firewall_table_exists() {
  return run_on_host({"/bin/sh", "-c", std::string("nft list table inet ") + isolate::kFirewallTable + " >/dev/null 2>&1"}).exit_code == 0;
}

bool interface_exists(const std::string& name) { return ::if_nametoindex(name.c_str()) != 0; }

// Waits (bounded) for `pred`.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 5s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// ---- negative ------------------------------------------------------------------------------

// allow_internet_access false (denyOut 0.0.0.0/0): the public service does not answer, although
// the route leads there.
TEST(Network, InternetOffReachesNothing) {
  REQUIRE_INTERNET();
  NetSandbox s({.deny = {cidr("0.0.0.0/0")}});
  ASSERT_TRUE(s.has_net());
  EXPECT_NE(route_from(s.net(), kPublic).find("bti"), std::string::npos) << "control: " << route_from(s.net(), kPublic);
  for (const char* dst : {kPublic, kPublic2}) {
    auto r = s.sb().probe({"http-get", dst, "8080"});
    EXPECT_PROBE_RAN(r);
    EXPECT_EVIDENCE(r, "outcome=failed errno=ECONNREFUSED") << " to " << dst;
  }
  auto udp = s.sb().probe({"udp", kPublic, "5353"});
  EXPECT_FALSE(has(udp.out, "outcome=reply")) << show(udp);
}

// The always-denied ranges stay closed whatever the policy says, even with every address
// allowed: private ranges, carrier-grade NAT, link-local and the cloud metadata address.
TEST(Network, PrivateAndMetadataAddressesAlwaysDenied) {
  REQUIRE_INTERNET();
  NetSandbox s({.allow = {cidr("0.0.0.0/0")}});
  ASSERT_TRUE(s.has_net());
  for (const char* dst : {"192.168.77.10", "10.99.0.10", "172.16.5.10", "100.64.1.10", "169.254.169.254"}) {
    EXPECT_NE(route_from(s.net(), dst).find("bti"), std::string::npos) << "control: route to " << dst << ": " << route_from(s.net(), dst);
    auto r = s.sb().probe({"http-get", dst, "8080"});
    EXPECT_PROBE_RAN(r);
    EXPECT_EVIDENCE(r, "outcome=failed errno=ECONNREFUSED") << " to " << dst;
  }
  // Control: the same sandbox reaches the public service.
  auto ok = s.sb().probe({"http-get", kPublic, "8080"});
  EXPECT_EVIDENCE(ok, "outcome=response status=200 body=brig-test-internet");
}

// UDP to a denied address gets no answer; the same datagram to the public address does.
TEST(Network, UdpToADeniedAddressGetsNoAnswer) {
  REQUIRE_INTERNET();
  NetSandbox s({});
  ASSERT_TRUE(s.has_net());
  auto control = s.sb().probe({"udp", kPublic, "5353"});
  ASSERT_EVIDENCE(control, "outcome=reply data=pong:ping");
  for (const char* dst : {"192.168.77.10", "169.254.169.254"}) {
    auto r = s.sb().probe({"udp", dst, "5353"});
    EXPECT_PROBE_RAN(r);
    EXPECT_FALSE(has(r.out, "outcome=reply")) << dst << ": " << show(r);
  }
}

// The host is unreachable from a sandbox: a service listening on every host address answers
// neither at the sandbox's host-side address nor at the host's other addresses.
TEST(Network, HostServicesUnreachable) {
  REQUIRE_INTERNET();
  NetSandbox s({.allow = {cidr("0.0.0.0/0")}}, shared_engine(), false);
  ASSERT_TRUE(s.has_net());
  int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(l, 0);
  struct sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(l, 16), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(::getsockname(l, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  const std::string port = std::to_string(ntohs(sa.sin_port));
  std::vector<std::string> addresses = {ipv4_text(s.net().host_ip)};
  if (ifaddrs* ifs = nullptr; ::getifaddrs(&ifs) == 0) {
    for (auto* i = ifs; i; i = i->ifa_next)
      if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && !(i->ifa_flags & IFF_LOOPBACK))
        addresses.push_back(ipv4_text(ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr)));
    ::freeifaddrs(ifs);
  }
  for (auto& a : addresses) {
    auto host = run_on_host({brig::testing::probe_path(), "connect", a, port});
    ASSERT_EQ(host.out, "outcome=connected\n") << "host control to " << a << " failed";
    auto r = s.sb().probe({"connect", a, port});
    EXPECT_PROBE_RAN(r);
    EXPECT_EVIDENCE(r, "outcome=failed errno=ECONNREFUSED") << " to the host at " << a << ":" << port;
  }
  ::close(l);
}

// Another sandbox's address is unreachable, though the host reaches the service in it.
TEST(Network, OtherSandboxesUnreachable) {
  REQUIRE_INTERNET();
  NetSandbox a({.allow = {cidr("0.0.0.0/0")}}, shared_engine(), false);
  NetSandbox b({}, shared_engine(), false);
  ASSERT_TRUE(a.has_net() && b.has_net());
  EXPECT_NE(route_from(a.net(), ipv4_text(b.net().sandbox_ip)).find("dev " + b.net().ifname), std::string::npos)
      << "control: " << route_from(a.net(), ipv4_text(b.net().sandbox_ip));
  auto server = b.sb().shared();
  sandbox::ProcessSpec listen;
  listen.cmd = "python3";
  listen.args = {"-c", "import socket,time\ns=socket.socket();s.bind(('0.0.0.0',8000));s.listen(8)\nwhile True: time.sleep(1)"};
  auto spawned = server->spawn(listen);
  ASSERT_TRUE(spawned) << spawned.error().message();
  const std::string b_ip = ipv4_text(b.net().sandbox_ip);
  ASSERT_TRUE(eventually([&] { return run_on_host({brig::testing::probe_path(), "connect", b_ip, "8000"}).out == "outcome=connected\n"; }))
      << "control: the host cannot reach the service in sandbox b";
  for (auto dst : {b_ip, ipv4_text(b.net().host_ip)}) {
    auto r = a.sb().probe({"connect", dst, "8000"});
    EXPECT_PROBE_RAN(r);
    EXPECT_EVIDENCE(r, "outcome=failed errno=ECONNREFUSED") << " to sandbox b at " << dst;
  }
  // The host's control connection is this test's, not b's (b's own are forgotten by their mark
  // when it dies): forgotten here, so that no entry for b's address outlives the test.
  (void)isolate::forget_connections(b.net().sandbox_ip);
}

// No IPv6: no address but ::1, no route, and an IPv6 connect fails at once.
TEST(Network, NoIpv6) {
  REQUIRE_INTERNET();
  NetSandbox s({});
  ASSERT_TRUE(s.has_net());
  auto v6 = s.sb().probe({"ipv6"});
  EXPECT_EVIDENCE(v6, "v6_addresses=0 v6_routes=0");
  auto r = s.sb().probe({"connect", "2001:db8::10", "8080"});
  EXPECT_PROBE_RAN(r);
  EXPECT_EVIDENCE(r, "outcome=failed errno=ENETUNREACH");
  for (User u : {User::user, User::root}) {
    auto w = s.sb().sh("echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6 && echo changed || echo refused", u);
    EXPECT_EQ(w.out, "refused\n") << "as " << sandbox::user_name(u) << ": " << show(w);
  }
}

// A sandbox without a network (the default of SandboxSpec: brig run, templates' tests) has
// loopback only.
TEST(Network, NoPolicyMeansLoopbackOnly) {
  REQUIRE_INTERNET();
  TestSandbox sb;
  EXPECT_FALSE(net_of(sb.shared()).has_value());
  auto r = sb.probe({"netdev"});
  EXPECT_EVIDENCE(r, "ifaces=lo");
  auto c = sb.probe({"connect", kPublic, "8080"});
  EXPECT_EVIDENCE(c, "outcome=failed errno=ENETUNREACH");
}

// denyOut of a range: its addresses are refused, the rest of the internet answers.
TEST(Network, DenyOutCidrIsEnforced) {
  REQUIRE_INTERNET();
  NetSandbox s({.deny = {cidr("203.0.113.0/24")}});
  ASSERT_TRUE(s.has_net());
  auto denied = s.sb().probe({"http-get", kPublic, "8080"});
  EXPECT_EVIDENCE(denied, "outcome=failed errno=ECONNREFUSED");
  auto other = s.sb().probe({"http-get", kPublic2, "8080"});
  EXPECT_EVIDENCE(other, "outcome=response status=200 body=brig-test-internet");
}

// ---- positive ------------------------------------------------------------------------------

// With no policy beyond the defaults, the internet answers (over NAT: the server sees the host).
TEST(Network, InternetAllowedReachesAPublicHost) {
  REQUIRE_INTERNET();
  NetSandbox s({});
  ASSERT_TRUE(s.has_net());
  for (const char* dst : {kPublic, kPublic2}) {
    auto r = s.sb().probe({"http-get", dst, "8080"});
    EXPECT_PROBE_RAN(r);
    EXPECT_EVIDENCE(r, "outcome=response status=200 body=brig-test-internet") << " to " << dst;
  }
  // Over TCP and UDP alike.
  auto udp = s.sb().probe({"udp", kPublic2, "5353"});
  EXPECT_EVIDENCE(udp, "outcome=reply data=pong:ping");
}

// allowOut beats denyOut: with everything denied, the one allowed address answers.
TEST(Network, AllowOutBeatsDenyOut) {
  REQUIRE_INTERNET();
  NetSandbox s({.allow = {cidr("198.51.100.10/32")}, .deny = {cidr("0.0.0.0/0")}});
  ASSERT_TRUE(s.has_net());
  auto allowed = s.sb().probe({"http-get", kPublic2, "8080"});
  EXPECT_EVIDENCE(allowed, "outcome=response status=200 body=brig-test-internet");
  auto denied = s.sb().probe({"http-get", kPublic, "8080"});
  EXPECT_EVIDENCE(denied, "outcome=failed errno=ECONNREFUSED");
}

// Narrowing the policy cuts a connection that is open, and new ones fail; without the change
// the same connection stays open (the control).
TEST(Network, NarrowingThePolicyCutsAnOpenConnection) {
  REQUIRE_INTERNET();
  NetSandbox s({});
  ASSERT_TRUE(s.has_net());
  auto control = s.sb().probe({"tcp-hold", kPublic, "7007", "2", "/tmp/held0"});
  ASSERT_EVIDENCE(control, "outcome=open");

  auto sb = s.sb().shared();
  auto held = std::async(std::launch::async, [sb] {
    sandbox::ProcessSpec p;
    p.cmd = "/usr/local/bin/brig-probe";
    p.args = {"tcp-hold", kPublic, "7007", "20", "/tmp/held"};
    sandbox::RunOptions o;
    o.timeout = 40s;
    return sb->run(p, o);
  });
  ASSERT_TRUE(eventually([&] { return bool(sb->stat("/tmp/held", User::root)); }, 10s)) << "the connection did not open";
  const auto narrowed_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(shared_engine().set_egress(s.sb().id(), {.deny = {cidr("203.0.113.0/24")}}));
  auto r = held.get();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EVIDENCE(*r, "outcome=cut");
  EXPECT_LT(std::chrono::steady_clock::now() - narrowed_at, 10s) << "the connection was not cut promptly: " << show(*r);
  auto again = s.sb().probe({"connect", kPublic, "7007"});
  EXPECT_EVIDENCE(again, "outcome=failed errno=ECONNREFUSED");
  // And widening it again opens the way for new connections.
  ASSERT_TRUE(shared_engine().set_egress(s.sb().id(), {}));
  auto reopened = s.sb().probe({"connect", kPublic, "7007"});
  EXPECT_EVIDENCE(reopened, "outcome=connected");
}

// /etc/resolv.conf names the host side; DNS is forwarded to the configured resolver while the
// internet is open, and refused when it is not.
TEST(Network, DnsIsForwardedWhileTheInternetIsOpen) {
  REQUIRE_INTERNET();
  ScopedEngine::Options options;
  options.network.dns_upstream = kDnsServer;
  ScopedEngine engine(options);
  {
    NetSandbox s({.dns = true}, engine.engine());
    ASSERT_TRUE(s.has_net());
    auto conf = s.sb().run({"cat", "/etc/resolv.conf"});
    EXPECT_EQ(conf.out, "nameserver " + ipv4_text(s.net().host_ip) + "\n");
    auto r = s.sb().run({"getent", "ahostsv4", "anything.brig-test"});
    EXPECT_NE(r.out.find(kPublic), std::string::npos) << show(r);
  }
  {
    NetSandbox s({.deny = {cidr("0.0.0.0/0")}, .dns = false}, engine.engine());
    ASSERT_TRUE(s.has_net());
    auto r = s.sb().run({"getent", "ahostsv4", "anything.brig-test"});
    EXPECT_NE(r.status.exit_code, 0) << show(r);
    EXPECT_EQ(r.out.find(kPublic), std::string::npos) << show(r);
    auto udp = s.sb().probe({"udp", ipv4_text(s.net().host_ip), "53"});
    EXPECT_FALSE(has(udp.out, "outcome=reply")) << show(udp);
  }
}

// ---- teardown ------------------------------------------------------------------------------

// Killing a sandbox removes its interface, and its rules and set elements from the firewall.
TEST(Network, KillRemovesTheInterfaceAndTheFirewallObjects) {
  REQUIRE_INTERNET();
  std::string id;
  isolate::NetAddress a;
  NetSandbox control({});
  ASSERT_TRUE(control.has_net());
  {
    NetSandbox s({.allow = {cidr("198.51.100.0/24")}, .deny = {cidr("0.0.0.0/0")}});
    ASSERT_TRUE(s.has_net());
    a = s.net();
    id = s.sb().id();
    // A UDP exchange leaves a conntrack entry behind (for 30 s or more).
    ASSERT_EVIDENCE(s.sb().probe({"udp", kPublic2, "5353"}), "outcome=reply");
    ASSERT_TRUE(interface_exists(a.ifname));
    ASSERT_FALSE(firewall_data_of(a.index).empty()) << "control: the sandbox's rules were not found";
    ASSERT_TRUE(shared_engine().kill(id));
  }
  EXPECT_TRUE(eventually([&] { return !interface_exists(a.ifname); })) << a.ifname << " is still there";
  // They go off the kill's path (its connections are forgotten first): soon after.
  (void)eventually([&] { return firewall_data_of(a.index).empty(); });
  auto left = firewall_data_of(a.index);
  // The index may have been taken again by another sandbox meanwhile (another brig process):
  // then its interface carries that sandbox's alias, not ours.
  if (interface_exists(a.ifname)) GTEST_SKIP() << a.ifname << " was taken again by another sandbox";
  EXPECT_TRUE(left.empty()) << "left behind: " << ::testing::PrintToString(left);
  // Its connections are forgotten: nothing is left to delete for its address. Control: the same
  // exchange from a live sandbox leaves an entry that is there to delete.
  auto left_conns = isolate::forget_connections(a.sandbox_ip);
  ASSERT_TRUE(left_conns);
  EXPECT_EQ(*left_conns, 0u) << "conntrack entries of the dead sandbox's address";
  ASSERT_EVIDENCE(control.sb().probe({"udp", kPublic2, "5353"}), "outcome=reply");
  auto live_conns = isolate::forget_connections(control.net().sandbox_ip);
  ASSERT_TRUE(live_conns);
  EXPECT_GE(*live_conns, 1u) << "control: a live sandbox's exchange left no entry";
}

// What a crashed brig left (rules of an interface that is gone, not emptied) is emptied by the
// next engine's reaper and by `brig doctor --cleanup`; once no sandbox is left, the table goes.
TEST(Network, LeftoversOfDeadSandboxesAreSwept) {
  REQUIRE_INTERNET();
  {
    NetSandbox live({});  // keeps the table in place, and must survive the sweep
    ASSERT_TRUE(live.has_net());
    // A dead sandbox's objects at an index that has neither an interface nor objects yet (an
    // index emptied before is on the lock file's clean list, which a crash would have taken it
    // off when its sandbox attached).
    auto unused = [](uint32_t below) {
      auto state = isolate::firewall_state();
      uint32_t i = below;
      while (i > 0 && (interface_exists("bv" + std::to_string(i - 1)) ||
                       (state && std::count(state->sandboxes.begin(), state->sandboxes.end(), i - 1))))
        --i;
      return i - 1;
    };
    uint32_t stale = unused(isolate::net_capacity(kSubnet));
    ASSERT_FALSE(interface_exists("bv" + std::to_string(stale)));
    auto a = isolate::net_address(kSubnet, stale);
    ASSERT_TRUE(isolate::nft_run(isolate::install_text(a, {.allow = {cidr("1.1.1.1")}}, 0, isolate::Install::overwrite)));
    ASSERT_FALSE(firewall_data_of(stale).empty());
    shared_engine().reap();
    EXPECT_TRUE(firewall_data_of(stale).empty()) << "the reaper left them";
    EXPECT_FALSE(firewall_data_of(live.net().index).empty()) << "the reaper emptied a live sandbox's objects";

    // Another crash's leftovers, for `brig doctor --cleanup`.
    auto b = isolate::net_address(kSubnet, unused(stale));
    ASSERT_FALSE(interface_exists(b.ifname));
    ASSERT_TRUE(isolate::nft_run(isolate::install_text(b, {.allow = {cidr("1.1.1.1")}}, 0, isolate::Install::overwrite)));
    auto doctor = run_on_host({brig::testing::brig_binary(), "doctor", "--cleanup"});
    EXPECT_EQ(doctor.exit_code, 0) << doctor.out;
    EXPECT_NE(doctor.out.find("emptied the firewall objects of " + b.ifname), std::string::npos) << doctor.out;
    EXPECT_TRUE(firewall_data_of(b.index).empty());
    EXPECT_FALSE(firewall_data_of(live.net().index).empty());
    auto r = live.sb().probe({"http-get", kPublic, "8080"});
    EXPECT_EVIDENCE(r, "outcome=response status=200");
  }
  // The last sandbox of this host gone (unless another brig process has some), the sweep takes
  // the table along.
  (void)eventually([] { return isolate::sandbox_interfaces().empty(); });
  if (!isolate::sandbox_interfaces().empty()) GTEST_SKIP() << "other sandboxes with a network exist on this host";
  shared_engine().reap();
  EXPECT_FALSE(firewall_table_exists());
}

}  // namespace
}  // namespace brig::security
