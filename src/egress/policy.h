// A sandbox's egress policy and the decision for one outgoing connection, with E2B's semantics
// (e2b-dev/infra tcpfirewall: isEgressAllowed, matchDomain, sandbox-network ParseRule):
//
//   1. a destination in the always-denied set is denied, whatever the policy (brig's order:
//      checked first, on the address the sandbox chose);
//   2. the allowOut entries, in order: a domain entry that matches the connection's name (TLS
//      SNI or HTTP Host) and port allows it, to be dialled by that name; a CIDR entry that holds
//      the destination and port allows it, to be dialled at the destination;
//   3. the denyOut entries: a CIDR entry that holds the destination and port denies it (domain
//      entries in denyOut are refused when the policy is parsed: E2B never matches them);
//   4. anything else is allowed.
//
// Entries: "1.2.3.4", "1.2.3.0/24", "::1", "fc00::/7", "example.com", "*.example.com", "*", each
// optionally with a port or a port range ("example.com:443", "1.2.3.0/24:1-1024",
// "[::1]:80"). "*.example.com" matches every name below example.com but not example.com itself
// (E2B's matchDomain: "suffix wildcard does not match exact domain"); "*" matches every name.
// Names compare case-insensitively, without a trailing dot.
//
// Pure: no I/O, no globals; callers may share a const Policy across threads.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/result.h"

namespace brig::egress {

using IpAddress = boost::asio::ip::address;
using Net4 = boost::asio::ip::network_v4;
using Net6 = boost::asio::ip::network_v6;

// Longest entry text and most entries per list that parse_policy accepts.
inline constexpr size_t kMaxEntryBytes = 255;
inline constexpr size_t kMaxEntries = 4096;

struct Rule {
  enum class Kind { cidr, domain };
  Kind kind = Kind::cidr;
  std::variant<Net4, Net6> net;  // kind == cidr
  // kind == domain: a normalized name, "*.suffix" (normalized suffix) or "*".
  std::string domain;
  uint16_t port_lo = 0, port_hi = 0;  // 0, 0: every port
  std::string text;                   // the entry as given, for reasons and logs

  bool port_matches(uint16_t port) const { return (port_lo == 0 && port_hi == 0) || (port >= port_lo && port <= port_hi); }
  bool holds(const IpAddress& ip) const;
};

struct Policy {
  std::vector<Rule> allow;
  std::vector<Rule> deny;

  // allowOut has at least one domain entry: only then can a name change a decision, so only
  // then does the proxy read the first bytes of a connection.
  bool has_domains() const;
  // allowOut has domains and denyOut holds 0.0.0.0/0 (E2B requires that combination): the DNS
  // stub answers NXDOMAIN for names no domain entry allows.
  bool strict_dns() const;
};

// Parses the entries (E2B's allowOut / denyOut). Errors name the entry: an empty or overlong
// entry, a malformed address, CIDR, name or port, a domain in denyOut.
[[nodiscard]] Result<Policy> parse_policy(const std::vector<std::string>& allow_out,
                                          const std::vector<std::string>& deny_out);
[[nodiscard]] Result<Rule> parse_rule(std::string_view entry);

// A host name as brig compares it: lowercase, without one trailing dot, 1..253 characters of
// labels of 1..63 [a-z0-9_-]. nullopt for anything else (including an empty name). An IP literal
// is not a name: see is_ip_literal.
std::optional<std::string> normalize_name(std::string_view name);
bool is_ip_literal(std::string_view text);

// Whether `name` (normalized) matches `pattern` (a Rule::domain).
bool domain_matches(std::string_view pattern, std::string_view name);

// The ranges no policy opens. E2B's list (0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12,
// 192.168/16, ::1, fc00::/7, fe80::/10), plus multicast (224/4, ff00::/8), the reserved 240/4
// (which holds the broadcast address), the unspecified ::, and `extra` (the host's own addresses,
// the sandbox range). An IPv4-mapped IPv6 address is judged as its IPv4 address.
class DeniedSet {
 public:
  DeniedSet() : DeniedSet(std::vector<std::variant<Net4, Net6>>{}) {}
  explicit DeniedSet(std::vector<std::variant<Net4, Net6>> extra);
  // The range that holds `ip`, as text ("10.0.0.0/8"); nullopt when `ip` is not denied.
  std::optional<std::string> match(const IpAddress& ip) const;
  bool denies(const IpAddress& ip) const { return match(ip).has_value(); }

 private:
  std::vector<std::variant<Net4, Net6>> nets_;
};
// "10.1.2.3" or "10.0.0.0/8" (host bits cleared, as Go's ParseCIDR reads it), v4 or v6.
std::optional<std::variant<Net4, Net6>> parse_net(std::string_view text);

struct Connection {
  IpAddress dest;     // the destination the sandbox chose (SO_ORIGINAL_DST)
  uint16_t port = 0;
  std::string name;   // normalized TLS SNI or HTTP Host; empty: none
};

struct Verdict {
  enum class By { always_denied, allow_domain, allow_cidr, deny_cidr, default_allow };
  bool allow = false;
  By by = By::default_allow;
  std::string reason;  // e.g. "allowOut *.example.com", "always denied (10.0.0.0/8)"
  // allow_domain: dial the name, not the destination (pinning).
  bool dial_name() const { return allow && by == By::allow_domain; }
};

// The decision for `c`; `policy` nullptr means no policy (everything but the always-denied set).
Verdict decide(const Policy* policy, const DeniedSet& denied, const Connection& c);

// Whether a domain entry of `policy` allows `name` (normalized) on some port: what the DNS stub
// asks in strict mode.
bool name_allowed(const Policy& policy, std::string_view name);

}  // namespace brig::egress
