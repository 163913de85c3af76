// IPv4 addresses and CIDR ranges, as sandbox network policies and the configuration name them
// ("10.0.0.0/8", "1.1.1.1"), and a check for IPv6 literals (which brig accepts and stores but
// never routes: sandboxes have no IPv6).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace brig {

struct Ipv4Cidr {
  uint32_t addr = 0;   // host byte order, host bits cleared
  uint8_t prefix = 32;
  uint32_t mask() const { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }
  bool contains(uint32_t ip) const { return (ip & mask()) == addr; }
  // Every address of `other` is in this range.
  bool covers(const Ipv4Cidr& other) const { return prefix <= other.prefix && contains(other.addr); }
  bool operator==(const Ipv4Cidr&) const = default;
  auto operator<=>(const Ipv4Cidr&) const = default;
};

// A dotted-quad IPv4 address (exactly four decimal parts, no leading zeros beyond "0"), in host
// byte order; nullopt otherwise.
std::optional<uint32_t> parse_ipv4(std::string_view text);
// "a.b.c.d" or "a.b.c.d/n" (0 <= n <= 32); host bits are cleared ("10.1.2.3/8" is 10.0.0.0/8,
// as Go's net.ParseCIDR reads it). nullopt for anything else.
std::optional<Ipv4Cidr> parse_ipv4_cidr(std::string_view text);
// An IPv6 address or CIDR literal ("::1", "fc00::/7"); brig accepts these where E2B does.
bool is_ipv6_literal(std::string_view text);

std::string ipv4_text(uint32_t ip);
std::string cidr_text(const Ipv4Cidr& c);  // "10.0.0.0/8"; a /32 keeps its "/32"

// `ranges` without duplicates and without ranges covered by another one, sorted.
std::vector<Ipv4Cidr> normalize_ranges(std::vector<Ipv4Cidr> ranges);

}  // namespace brig
