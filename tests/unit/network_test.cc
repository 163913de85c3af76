// Sandbox network policy without a network: addresses and ranges, the firewall's decision, and
// E2B's validation of allowOut/denyOut (core/network.h). The enforcement itself is tested with
// probes inside sandboxes (tests/security/network_test.cc).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/cidr.h"
#include "config/config.h"
#include "core/network.h"
#include "core/status.h"
#include "isolate/firewall.h"

namespace brig {
namespace {

Ipv4Cidr c(const char* s) { return *parse_ipv4_cidr(s); }
uint32_t ip(const char* s) { return *parse_ipv4(s); }

TEST(Cidr, ParsesAddressesAndRangesAndRefusesTheRest) {
  EXPECT_EQ(parse_ipv4("1.2.3.4"), 0x01020304u);
  EXPECT_EQ(parse_ipv4("255.255.255.255"), 0xffffffffu);
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", " 1.2.3.4", "1..3.4", "a.b.c.d",
                          "1.2.3.-4", "1234.1.1.1", "::1"})
    EXPECT_FALSE(parse_ipv4(bad)) << bad;
  EXPECT_EQ(parse_ipv4_cidr("10.0.0.0/8"), (Ipv4Cidr{0x0a000000, 8}));
  EXPECT_EQ(parse_ipv4_cidr("1.1.1.1"), (Ipv4Cidr{0x01010101, 32}));
  EXPECT_EQ(parse_ipv4_cidr("10.1.2.3/8"), (Ipv4Cidr{0x0a000000, 8})) << "host bits are cleared, as Go reads it";
  EXPECT_EQ(parse_ipv4_cidr("0.0.0.0/0"), (Ipv4Cidr{0, 0}));
  for (const char* bad : {"10.0.0.0/33", "10.0.0.0/", "10.0.0.0/08", "10.0.0.0/-1", "10.0.0.0/8/8", "10.0.0/8", "x/8"})
    EXPECT_FALSE(parse_ipv4_cidr(bad)) << bad;
  EXPECT_TRUE(is_ipv6_literal("::1"));
  EXPECT_TRUE(is_ipv6_literal("fc00::/7"));
  EXPECT_FALSE(is_ipv6_literal("fc00::/129"));
  EXPECT_FALSE(is_ipv6_literal("1.2.3.4"));
  EXPECT_FALSE(is_ipv6_literal("example.com"));
  EXPECT_EQ(cidr_text(c("192.168.0.0/16")), "192.168.0.0/16");
  EXPECT_EQ(cidr_text(c("1.2.3.4")), "1.2.3.4/32");
}

TEST(Cidr, NormalizeDropsCoveredAndDuplicateRanges) {
  auto n = normalize_ranges({c("10.1.0.0/16"), c("10.0.0.0/8"), c("1.1.1.1"), c("1.1.1.1"), c("10.2.3.4")});
  EXPECT_EQ(n, (std::vector<Ipv4Cidr>{c("1.1.1.1"), c("10.0.0.0/8")}));
  EXPECT_EQ(normalize_ranges({c("0.0.0.0/0"), c("8.8.8.8")}), std::vector<Ipv4Cidr>{c("0.0.0.0/0")});
}

TEST(Egress, AlwaysDeniedBeforeAnyPolicy) {
  isolate::EgressPolicy allow_all{.allow = {c("0.0.0.0/0")}};
  for (const char* a : {"10.0.0.1", "100.64.0.1", "127.0.0.1", "169.254.169.254", "172.16.0.1", "172.31.255.255",
                        "192.168.1.1", "0.1.2.3", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1"})
    EXPECT_FALSE(isolate::egress_allowed(allow_all, ip(a))) << a;
  for (const char* a : {"1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "203.0.113.10"})
    EXPECT_TRUE(isolate::egress_allowed(allow_all, ip(a))) << a;
}

TEST(Egress, AllowBeatsDenyAndTheRestIsAllowed) {
  isolate::EgressPolicy p{.allow = {c("1.1.1.1")}, .deny = {c("0.0.0.0/0")}};
  EXPECT_TRUE(isolate::egress_allowed(p, ip("1.1.1.1")));
  EXPECT_FALSE(isolate::egress_allowed(p, ip("1.1.1.2")));
  isolate::EgressPolicy q{.deny = {c("8.8.0.0/16")}};
  EXPECT_FALSE(isolate::egress_allowed(q, ip("8.8.8.8")));
  EXPECT_TRUE(isolate::egress_allowed(q, ip("9.9.9.9")));
  EXPECT_TRUE(isolate::egress_allowed({}, ip("9.9.9.9")));
}

TEST(Egress, AddressesByIndex) {
  auto subnet = c("10.200.0.0/16");
  auto a = isolate::net_address(subnet, 0);
  EXPECT_EQ(ipv4_text(a.host_ip), "10.200.0.0");
  EXPECT_EQ(ipv4_text(a.sandbox_ip), "10.200.0.1");
  EXPECT_EQ(a.ifname, "bv0");
  auto b = isolate::net_address(subnet, 300);
  EXPECT_EQ(ipv4_text(b.host_ip), "10.200.2.88");
  EXPECT_EQ(ipv4_text(b.sandbox_ip), "10.200.2.89");
  EXPECT_EQ(isolate::net_capacity(subnet), 32768u);
  EXPECT_EQ(isolate::net_capacity(c("10.0.0.0/30")), 2u);
  EXPECT_EQ(isolate::parse_ifname("bv12"), 12);
  for (const char* bad : {"bv", "bv01", "bvx", "eth0", "bv-1", "bv1234567890"}) EXPECT_EQ(isolate::parse_ifname(bad), -1) << bad;
}

TEST(Egress, TheFirewallTextNamesOnlyWhatItComputed) {
  auto subnet = c("10.200.0.0/16");
  auto a = isolate::net_address(subnet, 7);
  auto text = isolate::install_text(a, {.allow = {c("1.1.1.1")}, .deny = {c("0.0.0.0/0")}, .dns = true}, ip("9.9.9.9"), isolate::Install::fresh);
  // A fresh install adds new objects only: nothing that makes nftables wait (see firewall.h).
  EXPECT_NE(text.find("create chain inet brig sb_7"), std::string::npos) << text;
  EXPECT_EQ(text.find("delete"), std::string::npos) << text;
  EXPECT_EQ(text.find("hook"), std::string::npos) << text;
  auto base = isolate::base_text(subnet);
  EXPECT_NE(base.find("add element inet brig always_deny { 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10"), std::string::npos) << base;
  EXPECT_NE(base.find("iifname \"bv*\" oifname != \"bv*\" masquerade"), std::string::npos);
  EXPECT_NE(text.find("add element inet brig allow_7 { 1.1.1.1/32 }"), std::string::npos) << text;
  EXPECT_NE(text.find("add element inet brig deny_7 { 0.0.0.0/0 }"), std::string::npos);
  EXPECT_NE(text.find("ip saddr != 10.200.0.15 drop"), std::string::npos);
  EXPECT_NE(text.find("ip daddr 10.200.0.14 meta l4proto { tcp, udp } th dport 53 dnat ip to 9.9.9.9"), std::string::npos);
  EXPECT_NE(text.find("\"bv7\" : jump sb_7"), std::string::npos);
  // Without DNS, no DNAT rule for it; the update rewrites only its sets and nat chain.
  auto update = isolate::update_text(a, {.deny = {c("0.0.0.0/0")}}, ip("9.9.9.9"));
  EXPECT_EQ(update.find("dnat"), std::string::npos) << update;
  EXPECT_EQ(update.find("hook"), std::string::npos);
  // A sandbox's end empties its objects (no deletion: nftables would wait), and the next
  // sandbox of the index fills them again without creating anything.
  auto clear = isolate::clear_text(7);
  EXPECT_EQ(clear, "flush chain inet brig sb_7\nflush chain inet brig nat_7\nflush set inet brig allow_7\nflush set inet brig deny_7\n");
  auto reuse = isolate::install_text(a, {}, 0, isolate::Install::reuse);
  EXPECT_EQ(reuse.find("chain inet brig nat_7 {"), std::string::npos);
  EXPECT_EQ(reuse.find("create"), std::string::npos) << reuse;
  EXPECT_EQ(reuse.find("add chain"), std::string::npos) << reuse;
}

// ---- E2B's validation ------------------------------------------------------------------------

core::NetworkConfig net(std::vector<std::string> allow, std::vector<std::string> deny, bool internet = true) {
  return {internet, std::move(allow), std::move(deny)};
}

std::string message_of(const Result<>& r) { return r ? "" : r.error().message(); }

TEST(E2bNetwork, DomainsNeedAllTrafficDenied) {
  config::Limits limits;
  auto r = core::check_network(net({"example.com"}, {}), limits);
  ASSERT_FALSE(r);
  EXPECT_EQ(core::classify(r.error()), core::Status::invalid_argument);
  EXPECT_EQ(r.error().message(),
            "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out to block all other traffic.");
  EXPECT_FALSE(core::check_network(net({"*.example.com"}, {"10.0.0.0/8"}), limits));
  EXPECT_TRUE(core::check_network(net({"example.com", "*.example.com", "1.1.1.1"}, {"0.0.0.0/0"}), limits));
  // CIDRs alone need no deny (E2B's rule is about domains).
  EXPECT_TRUE(core::check_network(net({"1.1.1.1", "10.0.0.0/8"}, {}), limits));
}

TEST(E2bNetwork, DenyOutTakesAddressesOnly) {
  config::Limits limits;
  EXPECT_EQ(message_of(core::check_network(net({}, {"example.com"}), limits)), "invalid denied CIDR example.com");
  EXPECT_EQ(message_of(core::check_network(net({}, {"1.2.3.4/33"}), limits)), "invalid denied CIDR 1.2.3.4/33");
  EXPECT_TRUE(core::check_network(net({}, {"1.2.3.4", "8.8.0.0/16", "fc00::/7", "::1"}), limits));
}

TEST(E2bNetwork, BoundsAndShapes) {
  config::Limits limits;
  limits.network_entries = 3;
  EXPECT_FALSE(core::check_network(net({"1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"}, {}), limits));
  EXPECT_FALSE(core::check_network(net({}, {"1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"}), limits));
  EXPECT_FALSE(core::check_network(net({std::string(300, 'a')}, {"0.0.0.0/0"}), config::Limits{}));
  for (const char* bad : {"not a domain", "exa mple.com", "-a.com", "a..com", "http://example.com", "example.com/x", ""})
    EXPECT_FALSE(core::check_network(net({bad}, {"0.0.0.0/0"}), config::Limits{})) << bad;
}

TEST(E2bNetwork, ThePolicyTheFirewallGets) {
  // Domains open nothing yet (fail closed): only the CIDR allow is in the allow set.
  auto p = core::egress_policy(net({"example.com", "1.1.1.1", "fc00::1"}, {"0.0.0.0/0", "::/0"}));
  EXPECT_EQ(p.allow, std::vector<Ipv4Cidr>{c("1.1.1.1")});
  EXPECT_EQ(p.deny, std::vector<Ipv4Cidr>{c("0.0.0.0/0")});
  EXPECT_FALSE(p.dns) << "no DNS forwarding while 0.0.0.0/0 is denied";
  EXPECT_FALSE(isolate::egress_allowed(p, ip("93.184.216.34"))) << "a domain's address is not opened by the domain";
  // allow_internet_access false is denyOut 0.0.0.0/0.
  auto off = core::egress_policy(net({}, {}, false));
  EXPECT_EQ(off.deny, std::vector<Ipv4Cidr>{c("0.0.0.0/0")});
  EXPECT_FALSE(off.dns);
  auto open = core::egress_policy(net({}, {"10.0.0.0/8"}));
  EXPECT_TRUE(open.dns);
  EXPECT_TRUE(core::egress_policy({}).dns);
}

TEST(E2bNetwork, EchoedAsGivenAndStored) {
  auto n = net({"example.com", "1.1.1.1"}, {"0.0.0.0/0"}, false);
  auto j = core::network_json(n);
  EXPECT_EQ(j.dump(), R"({"allowOut":["example.com","1.1.1.1"],"denyOut":["0.0.0.0/0"]})");
  EXPECT_TRUE(core::network_json({}).is_null());
  EXPECT_EQ(core::network_from_text(core::network_to_text(n)), n);
  EXPECT_EQ(core::network_from_text("garbage"), core::NetworkConfig{});
}

TEST(E2bNetwork, TheDefaultComesFromTheConfiguration) {
  config::Network n;
  n.allow_internet_access = "false";
  n.allow_out = " 1.1.1.1, 8.8.8.8/32 ,";
  auto d = core::default_network(n, config::Limits{});
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, net({"1.1.1.1", "8.8.8.8/32"}, {}, false));
  n.allow_out = "example.com";
  auto bad = core::default_network(n, config::Limits{});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("ALL_TRAFFIC"), std::string::npos);
}

TEST(E2bNetwork, TheConfigurationChecksTheRangeAndTheResolver) {
  config::Config cfg;
  EXPECT_TRUE(config::validate(cfg));
  for (const char* bad : {"10.200.0.0", "10.200.0.1/16", "10.200.0.0/29", "nonsense/16"}) {
    cfg.network.subnet = bad;
    EXPECT_FALSE(config::validate(cfg)) << bad;
  }
  cfg = {};
  cfg.network.dns_upstream = "resolver.example";
  EXPECT_FALSE(config::validate(cfg));
  for (const char* good : {"", "off", "9.9.9.9"}) {
    cfg.network.dns_upstream = good;
    EXPECT_TRUE(config::validate(cfg)) << good;
  }
}

}  // namespace
}  // namespace brig
