// Sandbox network policy without a network: addresses and ranges, the firewall's decision, and
// E2B's validation of allowOut/denyOut (core/network.h). The enforcement itself is tested with
// probes inside sandboxes (tests/security/network_test.cc).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "base/cidr.h"
#include "config/config.h"
#include "core/network.h"
#include "core/service.h"
#include "core/status.h"
#include "isolate/firewall.h"
#include "temp_dir.h"

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

namespace brig {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

core::NetworkConfig with_rules(core::HeaderRules rules) {
  core::NetworkConfig c;
  c.rules = std::move(rules);
  return c;
}

TEST(E2bNetworkRules, E2bsLimitsAndShapes) {
  config::Limits limits;
  auto ok = [&](core::HeaderRules r) { return core::check_network(with_rules(std::move(r)), limits).has_value(); };
  EXPECT_TRUE(ok({{"api.example.com", {{"Authorization", "Bearer ${e2b.secrets.openai-key}"}}}}));
  EXPECT_TRUE(ok({{"*.example.com", {{"X-Token", "plain"}}}}));
  EXPECT_TRUE(ok({{"api.example.com", {}}}));
  EXPECT_FALSE(ok({{"*", {{"A", "b"}}}})) << "a bare * is invalid (E2B)";
  EXPECT_FALSE(ok({{"not a domain", {{"A", "b"}}}}));
  EXPECT_FALSE(ok({{"a.com", {{"Bad Name", "b"}}}}));
  EXPECT_FALSE(ok({{"a.com", {{std::string(65, 'h'), "b"}}}}));
  EXPECT_FALSE(ok({{"a.com", {{"A", std::string(2049, 'v')}}}}));
  EXPECT_FALSE(ok({{"a.com", {{"A", "x\r\nInjected: yes"}}}})) << "no header splitting";
  EXPECT_FALSE(ok({{"a.com", {{"A", "${e2b.identity.tokens.aws}"}}}})) << "workload identity is not supported";
  EXPECT_FALSE(ok({{"a.com", {{"A", "${e2b.secrets.unterminated"}}}}));
  core::HeaderRules many;
  for (int i = 0; i < 11; ++i) many["d" + std::to_string(i) + ".com"] = {};
  EXPECT_FALSE(ok(many)) << "10 domains at most";
  std::vector<std::pair<std::string, std::string>> headers;
  for (int i = 0; i < 21; ++i) headers.emplace_back("H" + std::to_string(i), "v");
  EXPECT_FALSE(ok({{"a.com", headers}})) << "20 headers at most";
  headers.resize(20);
  std::string refs;
  for (int i = 0; i < 33; ++i) refs += "${e2b.secrets.s" + std::to_string(i) + "}";
  EXPECT_FALSE(ok({{"a.com", {{"A", refs}}}})) << "32 secrets per domain at most";
}

TEST(E2bNetworkRules, SecretsAreResolvedAndAGoneOneBreaksTheRule) {
  EXPECT_EQ(core::secret_refs("Bearer ${e2b.secrets.Key-1} and ${e2b.secrets.other}"),
            (std::vector<std::string>{"key-1", "other"}));
  core::HeaderRules rules = {{"api.example.com", {{"Authorization", "Bearer ${e2b.secrets.key}"}, {"X-Plain", "p"}}},
                             {"gone.example.com", {{"A", "${e2b.secrets.gone}"}}},
                             {"bad.example.com", {{"A", "${e2b.secrets.newline}"}}}};
  auto resolved = core::resolve_rules(rules, [](const std::string& name) -> std::optional<std::string> {
    if (name == "key") return "s3cret";
    if (name == "newline") return "a\nb";
    return std::nullopt;
  });
  ASSERT_EQ(resolved.size(), 3u);
  EXPECT_EQ(resolved[0].domain, "api.example.com");
  EXPECT_EQ(resolved[0].headers,
            (std::vector<std::pair<std::string, std::string>>{{"Authorization", "Bearer s3cret"}, {"X-Plain", "p"}}));
  EXPECT_TRUE(resolved[0].broken.empty());
  EXPECT_EQ(resolved[1].domain, "bad.example.com");
  EXPECT_NE(resolved[1].broken.find("CR, LF or NUL"), std::string::npos);
  EXPECT_TRUE(resolved[1].headers.empty()) << "nothing of a broken rule is sent";
  EXPECT_NE(resolved[2].broken.find("'gone'"), std::string::npos);
}

TEST(E2bNetworkRules, EchoedAsGivenAndStored) {
  auto c = with_rules({{"api.example.com", {{"Authorization", "Bearer ${e2b.secrets.key}"}}}});
  EXPECT_EQ(core::network_json(c)["rules"],
            nlohmann::json::parse(R"({"api.example.com":[{"transform":{"headers":{"Authorization":"Bearer ${e2b.secrets.key}"}}}]})"));
  EXPECT_EQ(core::network_from_text(core::network_to_text(c)), c);
  EXPECT_TRUE(core::needs_egress(c));
  EXPECT_FALSE(core::needs_egress(core::NetworkConfig{}));
}

TEST(TrustedCas, TheBundleBecomesALayerNamedByItsContent) {
  test::TempDir dir("brig-trust");
  const std::string pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  const std::string file = dir.path + "/bundle.crt";
  std::ofstream(file) << pem;
  auto cas = core::trusted_cas(dir.path, file);
  ASSERT_TRUE(cas) << cas.error().message();
  ASSERT_FALSE(cas->layer.empty());
  EXPECT_TRUE(cas->layer.starts_with(dir.path + "/trust/"));
  const std::string in_layer = cas->layer + "/etc/ssl/certs/ca-certificates.crt";
  EXPECT_EQ(slurp(in_layer), pem);
  // What the engine asks of a layer: root's, nothing writable by others.
  for (const std::string& p : {cas->layer, cas->layer + "/etc", cas->layer + "/etc/ssl/certs", in_layer}) {
    struct stat st;
    ASSERT_EQ(::stat(p.c_str(), &st), 0) << p;
    EXPECT_EQ(st.st_uid, ::geteuid()) << p;
    EXPECT_EQ(st.st_mode & 022, 0u) << p;
  }
  EXPECT_EQ(cas->env.at("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt");
  EXPECT_EQ(cas->env.at("NODE_EXTRA_CA_CERTS"), "/etc/ssl/certs/ca-certificates.crt");
  EXPECT_EQ(cas->env.at("REQUESTS_CA_BUNDLE"), "/etc/ssl/certs/ca-certificates.crt");
  // brig's CA goes after the host's bundle, in another layer.
  auto with_brig = core::trusted_cas(dir.path, file, "-----BEGIN CERTIFICATE-----\nBRIG\n-----END CERTIFICATE-----\n");
  ASSERT_TRUE(with_brig);
  EXPECT_NE(with_brig->layer, cas->layer);
  EXPECT_EQ(slurp(with_brig->layer + "/etc/ssl/certs/ca-certificates.crt"),
            pem + "-----BEGIN CERTIFICATE-----\nBRIG\n-----END CERTIFICATE-----\n");
  std::filesystem::remove_all(with_brig->layer);
  // The same bundle: the same layer, made once. Another: another layer; the first stays.
  auto again = core::trusted_cas(dir.path, file);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->layer, cas->layer);
  std::ofstream(file) << pem << pem;
  auto changed = core::trusted_cas(dir.path, file);
  ASSERT_TRUE(changed);
  EXPECT_NE(changed->layer, cas->layer);
  EXPECT_EQ(slurp(cas->layer + "/etc/ssl/certs/ca-certificates.crt"), pem);
  // Nothing left aside.
  size_t entries = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir.path + "/trust")) ++entries;
  EXPECT_EQ(entries, 2u);
}

TEST(TrustedCas, NoFileMeansTheTemplatesOwnAndAFileWithoutACertificateIsRefused) {
  test::TempDir dir("brig-trust");
  auto none = core::trusted_cas(dir.path, "");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->layer.empty());
  EXPECT_TRUE(none->env.empty());
  auto missing = core::trusted_cas(dir.path, dir.path + "/no-such.crt");
  ASSERT_TRUE(missing);
  EXPECT_TRUE(missing->layer.empty());
  std::ofstream(dir.path + "/junk.crt") << "not a certificate\n";
  auto junk = core::trusted_cas(dir.path, dir.path + "/junk.crt");
  ASSERT_FALSE(junk);
  EXPECT_TRUE(junk.error().is(errc::invalid_argument)) << junk.error().message();
}

// Ingress (create's allowPublicTraffic, maskRequestHost, httpsPorts): bounded, and never the
// ports the daemon answers itself (a TLS bridge to envd's port would bypass its token).
TEST(Ingress, HttpsPortsAreBoundedAndNeverTheDaemonsOwn) {
  core::Ingress in;
  in.https_ports = {443, 8443};
  EXPECT_TRUE(core::validate_ingress(in));
  for (uint16_t own : {core::kEnvdPort, core::kInterpreterPort}) {
    in.https_ports = {own};
    auto r = core::validate_ingress(in);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().is(errc::invalid_argument));
    EXPECT_NE(r.error().message().find("brig serves it itself"), std::string::npos) << r.error().message();
  }
  in.https_ports = {8443, 443};
  EXPECT_FALSE(core::validate_ingress(in));  // the adapter sorts; the core takes nothing else
  in.https_ports = {443, 443};
  EXPECT_FALSE(core::validate_ingress(in));
  in.https_ports.clear();
  for (uint16_t p = 1; p <= core::kMaxHttpsPorts + 1; ++p) in.https_ports.push_back(p);
  EXPECT_FALSE(core::validate_ingress(in));
  in.https_ports.pop_back();
  EXPECT_TRUE(core::validate_ingress(in));
}

}  // namespace
}  // namespace brig
