// The egress policy engine (src/egress/policy.h) against E2B's semantics: the cases of
// e2b-dev/infra's tcpfirewall handlers_test.go and sandbox-network rule_test.go, brig's
// always-denied-first order, and the entry grammar's edges.
#include <gtest/gtest.h>

#include <boost/asio/ip/address.hpp>

#include "egress/policy.h"

namespace brig::egress {
namespace {

IpAddress ip(const char* s) { return boost::asio::ip::make_address(s); }

Verdict judge(std::vector<std::string> allow, std::vector<std::string> deny, const char* dest, uint16_t port,
              const char* name = "") {
  auto p = parse_policy(allow, deny);
  EXPECT_TRUE(p) << (p ? "" : p.error().message());
  static const DeniedSet denied;
  return decide(p ? &*p : nullptr, denied, {ip(dest), port, name});
}

bool allowed(std::vector<std::string> allow, std::vector<std::string> deny, const char* dest, uint16_t port = 6666,
             const char* name = "") {
  return judge(std::move(allow), std::move(deny), dest, port, name).allow;
}

TEST(EgressDomain, MatchesLikeE2b) {
  EXPECT_TRUE(domain_matches("example.com", "example.com"));
  EXPECT_FALSE(domain_matches("example.com", "other.com"));
  EXPECT_TRUE(domain_matches("*", "anything.example.com"));
  EXPECT_TRUE(domain_matches("*", "localhost"));
  EXPECT_TRUE(domain_matches("*.example.com", "api.example.com"));
  EXPECT_TRUE(domain_matches("*.example.com", "deep.nested.example.com"));
  // E2B: "suffix wildcard does not match exact domain".
  EXPECT_FALSE(domain_matches("*.example.com", "example.com"));
  EXPECT_FALSE(domain_matches("*.example.com", "api.other.com"));
  EXPECT_FALSE(domain_matches("*.example.com", "notexample.com"));
  EXPECT_FALSE(domain_matches("example.com", ""));
  EXPECT_FALSE(domain_matches("", "example.com"));
  EXPECT_FALSE(domain_matches("", ""));
  // A name is not matched by a suffix that is not on a label boundary.
  EXPECT_FALSE(domain_matches("*.example.com", "xexample.com"));
}

TEST(EgressDomain, NamesAreNormalized) {
  EXPECT_EQ(normalize_name("Example.COM"), "example.com");
  EXPECT_EQ(normalize_name("example.com."), "example.com");
  EXPECT_EQ(normalize_name("_dmarc.example.com"), "_dmarc.example.com");
  EXPECT_FALSE(normalize_name(""));
  EXPECT_FALSE(normalize_name("."));
  EXPECT_FALSE(normalize_name("example.com.."));
  EXPECT_FALSE(normalize_name("a..b"));
  EXPECT_FALSE(normalize_name(".a"));
  EXPECT_FALSE(normalize_name("exa mple.com"));
  EXPECT_FALSE(normalize_name(std::string_view("exa\0mple.com", 12)));
  EXPECT_FALSE(normalize_name("évil.com"));
  EXPECT_FALSE(normalize_name("a/b"));
  EXPECT_FALSE(normalize_name(std::string(64, 'a') + ".com"));
  EXPECT_TRUE(normalize_name(std::string(63, 'a') + ".com"));
  std::string long_name;
  while (long_name.size() < 260) long_name += "abcdefghi.";
  EXPECT_FALSE(normalize_name(long_name + "com"));
  // Matching goes through normalization in the engine: case and a trailing dot do not matter.
  EXPECT_TRUE(allowed({"Example.COM."}, {"0.0.0.0/0"}, "1.2.3.4", 443, "example.com"));
  EXPECT_TRUE(allowed({"*.Example.com"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "api.example.com"));
}

TEST(EgressPolicy, DefaultAllows) {
  static const DeniedSet denied;
  EXPECT_TRUE(decide(nullptr, denied, {ip("1.2.3.4"), 443, "example.com"}).allow);
  EXPECT_TRUE(allowed({}, {}, "1.2.3.4"));
  Verdict v = judge({}, {}, "1.2.3.4", 80);
  EXPECT_EQ(v.by, Verdict::By::default_allow);
  EXPECT_FALSE(v.dial_name());
}

TEST(EgressPolicy, DenyCidr) {
  EXPECT_FALSE(allowed({}, {"8.0.0.0/8"}, "8.1.2.3"));
  EXPECT_FALSE(allowed({}, {"1.2.3.4/32"}, "1.2.3.4"));
  EXPECT_FALSE(allowed({}, {"1.2.3.4"}, "1.2.3.4"));
  EXPECT_TRUE(allowed({}, {"8.0.0.0/8"}, "9.1.1.1"));
  EXPECT_FALSE(allowed({}, {"11.0.0.0/8", "172.32.0.0/12", "193.0.0.0/8"}, "172.33.1.1"));
  Verdict v = judge({}, {"8.0.0.0/8"}, "8.1.2.3", 80);
  EXPECT_EQ(v.by, Verdict::By::deny_cidr);
  EXPECT_EQ(v.reason, "denyOut 8.0.0.0/8");
}

TEST(EgressPolicy, AllowBeatsDeny) {
  // Whitelist mode: deny all, allow by domain or CIDR.
  EXPECT_TRUE(allowed({"example.com"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "example.com"));
  EXPECT_TRUE(allowed({"8.0.0.0/8"}, {"0.0.0.0/0"}, "8.1.2.3"));
  EXPECT_FALSE(allowed({"example.com"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "other.com"));
  EXPECT_FALSE(allowed({"example.com"}, {"0.0.0.0/0"}, "1.2.3.4", 443, ""));
  // A broad allow beats a narrower deny, and the reverse.
  EXPECT_TRUE(allowed({"8.0.0.0/8"}, {"8.1.1.1/32"}, "8.1.1.1"));
  EXPECT_TRUE(allowed({"8.1.1.1/32"}, {"8.0.0.0/8"}, "8.1.1.1"));
  EXPECT_FALSE(allowed({"allowed.com", "9.0.0.0/8"}, {"0.0.0.0/0"}, "8.1.2.3", 443, "other.com"));
  EXPECT_TRUE(allowed({"first.com", "second.com", "third.com"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "second.com"));
  EXPECT_TRUE(allowed({"11.0.0.0/8", "172.32.0.0/12", "193.0.0.0/8"}, {"0.0.0.0/0"}, "172.33.1.1"));
}

TEST(EgressPolicy, DomainAllowDialsTheName) {
  Verdict v = judge({"example.com"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "example.com");
  EXPECT_TRUE(v.allow);
  EXPECT_EQ(v.by, Verdict::By::allow_domain);
  EXPECT_TRUE(v.dial_name());
  EXPECT_EQ(v.reason, "allowOut example.com");
  // A CIDR allow goes to the destination the sandbox chose, even with a name.
  v = judge({"1.2.3.0/24"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "other.com");
  EXPECT_TRUE(v.allow);
  EXPECT_EQ(v.by, Verdict::By::allow_cidr);
  EXPECT_FALSE(v.dial_name());
  // E2B checks the allow entries in order: the first match decides how.
  EXPECT_EQ(judge({"1.2.3.0/24", "example.com"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "example.com").by,
            Verdict::By::allow_cidr);
  EXPECT_EQ(judge({"example.com", "1.2.3.0/24"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "example.com").by,
            Verdict::By::allow_domain);
  // A name allowed although the destination is denied: still allowed, dialled by name (pinning).
  v = judge({"example.com"}, {"0.0.0.0/0", "5.6.7.8"}, "5.6.7.8", 443, "example.com");
  EXPECT_TRUE(v.dial_name());
}

TEST(EgressPolicy, Wildcards) {
  EXPECT_TRUE(allowed({"*.example.com"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "a.example.com"));
  EXPECT_TRUE(allowed({"*.example.com"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "a.b.example.com"));
  EXPECT_FALSE(allowed({"*.example.com"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "example.com"));
  EXPECT_FALSE(allowed({"*.example.com"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "badexample.com"));
  EXPECT_TRUE(allowed({"*"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "anything.org"));
  EXPECT_FALSE(allowed({"*"}, {"0.0.0.0/0"}, "1.2.3.4", 443, ""));
}

TEST(EgressPolicy, Ports) {
  EXPECT_TRUE(allowed({"8.8.8.8:53"}, {"0.0.0.0/0"}, "8.8.8.8", 53));
  EXPECT_FALSE(allowed({"8.8.8.8:53"}, {"0.0.0.0/0"}, "8.8.8.8", 80));
  EXPECT_TRUE(allowed({"8.8.8.8:80-443"}, {"0.0.0.0/0"}, "8.8.8.8", 443));
  EXPECT_TRUE(allowed({"8.8.8.8:80-443"}, {"0.0.0.0/0"}, "8.8.8.8", 80));
  EXPECT_FALSE(allowed({"8.8.8.8:80-443"}, {"0.0.0.0/0"}, "8.8.8.8", 8080));
  EXPECT_FALSE(allowed({}, {"8.8.8.8:80"}, "8.8.8.8", 80));
  EXPECT_TRUE(allowed({}, {"8.8.8.8:80"}, "8.8.8.8", 443));
  EXPECT_TRUE(allowed({"example.com:443"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "example.com"));
  EXPECT_FALSE(allowed({"example.com:443"}, {"0.0.0.0/0"}, "1.2.3.4", 80, "example.com"));
  EXPECT_TRUE(allowed({"8.8.8.8"}, {"8.8.8.8:80"}, "8.8.8.8", 80));
  EXPECT_TRUE(allowed({"8.8.8.8:53"}, {"8.8.8.8"}, "8.8.8.8", 53));
  EXPECT_FALSE(allowed({"8.8.8.8:53"}, {"8.8.8.8"}, "8.8.8.8", 80));
  EXPECT_TRUE(allowed({"*.example.com:8443"}, {"0.0.0.0/0"}, "1.2.3.4", 8443, "a.example.com"));
  EXPECT_FALSE(allowed({"*.example.com:8443"}, {"0.0.0.0/0"}, "1.2.3.4", 443, "a.example.com"));
}

TEST(EgressPolicy, AlwaysDeniedComesFirst) {
  for (const char* dest : {"0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.255", "127.0.0.1",
                           "127.1.2.3", "169.254.169.254", "172.16.0.1", "172.31.255.255", "192.168.1.1", "224.0.0.1",
                           "239.255.255.250", "240.0.0.1", "255.255.255.255", "::1", "fc00::1", "fd12::1", "fe80::1",
                           "ff02::1", "::", "::ffff:10.0.0.1", "::ffff:127.0.0.1"}) {
    SCOPED_TRACE(dest);
    // Not even an explicit allow opens them, by CIDR or by name.
    Verdict v = judge({"0.0.0.0/0", "::/0", "example.com"}, {}, dest, 443, "example.com");
    EXPECT_FALSE(v.allow);
    EXPECT_EQ(v.by, Verdict::By::always_denied);
    EXPECT_NE(v.reason.find("always denied"), std::string::npos);
  }
  for (const char* dest : {"1.1.1.1", "8.8.8.8", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0",
                           "192.167.255.255", "192.169.0.0", "11.0.0.0", "9.255.255.255", "223.255.255.255",
                           "2606:4700::1111", "::ffff:1.1.1.1"}) {
    SCOPED_TRACE(dest);
    EXPECT_TRUE(allowed({}, {}, dest));
  }
  DeniedSet host({*parse_net("203.0.113.7"), *parse_net("198.51.100.0/24")});
  EXPECT_EQ(host.match(ip("203.0.113.7")), "203.0.113.7/32");
  EXPECT_FALSE(host.denies(ip("203.0.113.8")));
  EXPECT_TRUE(host.denies(ip("198.51.100.200")));
  EXPECT_FALSE(decide(nullptr, host, {ip("203.0.113.7"), 80, ""}).allow);
}

TEST(EgressPolicy, EntriesParse) {
  auto rule = [](const char* s) { return parse_rule(s); };
  ASSERT_TRUE(rule("10.0.0.0/8"));
  EXPECT_EQ(rule("10.1.2.3/8")->kind, Rule::Kind::cidr);
  EXPECT_TRUE(rule("10.1.2.3/8")->holds(ip("10.200.0.1")));  // host bits cleared, as Go reads it
  EXPECT_TRUE(rule("1.2.3.4")->holds(ip("1.2.3.4")));
  EXPECT_FALSE(rule("1.2.3.4")->holds(ip("1.2.3.5")));
  EXPECT_TRUE(rule("0.0.0.0/0")->holds(ip("203.0.113.1")));
  EXPECT_FALSE(rule("0.0.0.0/0")->holds(ip("2001:db8::1")));
  EXPECT_TRUE(rule("::/0")->holds(ip("2001:db8::1")));
  EXPECT_TRUE(rule("2001:db8::/32")->holds(ip("2001:db8:1::1")));
  EXPECT_FALSE(rule("2001:db8::/33")->holds(ip("2001:db8:8000::1")));
  EXPECT_EQ(rule("[2001:db8::1]:443")->port_lo, 443);
  EXPECT_EQ(rule("1.2.3.0/24:1-1024")->port_hi, 1024);
  EXPECT_EQ(rule("1.2.3.4:")->port_lo, 0);  // explicit "every port"
  EXPECT_EQ(rule(" example.com ")->domain, "example.com");
  EXPECT_EQ(rule("*.Example.com")->domain, "*.example.com");
  EXPECT_EQ(rule("*")->domain, "*");
  for (const char* bad : {"", "   ", "10.0.0.0/33", "1.2.3.4/", "1.2.3.4/x", "1.2.3", "256.1.1.1", "::1/129",
                          "example.com:0", "example.com:65536", "example.com:80-20", "example.com:a", "ex ample.com",
                          "*.", "**.example.com", "a.*.example.com", "[::1", "[::1]x", "/8", ":80", "exa/mple.com"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(rule(bad)) << "accepted \"" << bad << "\"";
  }
  EXPECT_FALSE(rule(std::string(300, 'a').c_str()));
  // Domains have no meaning in denyOut (E2B never matches them): refused.
  EXPECT_FALSE(parse_policy({}, {"example.com"}));
  EXPECT_TRUE(parse_policy({"example.com"}, {"0.0.0.0/0"}));
  EXPECT_FALSE(parse_policy(std::vector<std::string>(kMaxEntries + 1, "1.1.1.1"), {}));
}

TEST(EgressPolicy, StrictDns) {
  EXPECT_TRUE(parse_policy({"example.com"}, {"0.0.0.0/0"})->strict_dns());
  EXPECT_FALSE(parse_policy({"example.com"}, {"8.0.0.0/8"})->strict_dns());
  EXPECT_FALSE(parse_policy({"1.1.1.1"}, {"0.0.0.0/0"})->strict_dns());
  EXPECT_FALSE(parse_policy({}, {})->strict_dns());
  EXPECT_FALSE(parse_policy({"example.com"}, {"0.0.0.0/0:443"})->strict_dns());
  auto p = parse_policy({"example.com", "*.wild.test:443"}, {"0.0.0.0/0"});
  EXPECT_TRUE(name_allowed(*p, "example.com"));
  EXPECT_TRUE(name_allowed(*p, "a.wild.test"));
  EXPECT_FALSE(name_allowed(*p, "wild.test"));
  EXPECT_FALSE(name_allowed(*p, "www.example.com"));
  EXPECT_TRUE(p->has_domains());
  EXPECT_FALSE(parse_policy({"1.1.1.1"}, {})->has_domains());
}

}  // namespace
}  // namespace brig::egress
