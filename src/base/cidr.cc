#include "base/cidr.h"

#include <arpa/inet.h>

#include <algorithm>

namespace brig {

std::optional<uint32_t> parse_ipv4(std::string_view text) {
  uint32_t ip = 0;
  int parts = 0;
  size_t i = 0;
  while (parts < 4) {
    size_t start = i;
    uint32_t part = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9' && i - start < 3) part = part * 10 + uint32_t(text[i++] - '0');
    const size_t digits = i - start;
    if (digits == 0 || part > 255 || (digits > 1 && text[start] == '0')) return std::nullopt;
    ip = ip << 8 | part;
    if (++parts < 4) {
      if (i >= text.size() || text[i] != '.') return std::nullopt;
      ++i;
    }
  }
  if (i != text.size()) return std::nullopt;
  return ip;
}

std::optional<Ipv4Cidr> parse_ipv4_cidr(std::string_view text) {
  auto slash = text.find('/');
  auto ip = parse_ipv4(text.substr(0, slash));
  if (!ip) return std::nullopt;
  Ipv4Cidr c{*ip, 32};
  if (slash != std::string_view::npos) {
    std::string_view p = text.substr(slash + 1);
    if (p.empty() || p.size() > 2 || (p.size() > 1 && p[0] == '0')) return std::nullopt;
    unsigned n = 0;
    for (char ch : p) {
      if (ch < '0' || ch > '9') return std::nullopt;
      n = n * 10 + unsigned(ch - '0');
    }
    if (n > 32) return std::nullopt;
    c.prefix = static_cast<uint8_t>(n);
  }
  c.addr &= c.mask();
  return c;
}

bool is_ipv6_literal(std::string_view text) {
  if (text.size() > 50) return false;
  auto slash = text.find('/');
  std::string addr(text.substr(0, slash));
  if (addr.find(':') == std::string::npos) return false;
  struct in6_addr out;
  if (::inet_pton(AF_INET6, addr.c_str(), &out) != 1) return false;
  if (slash == std::string_view::npos) return true;
  std::string_view p = text.substr(slash + 1);
  if (p.empty() || p.size() > 3 || (p.size() > 1 && p[0] == '0')) return false;
  unsigned n = 0;
  for (char ch : p) {
    if (ch < '0' || ch > '9') return false;
    n = n * 10 + unsigned(ch - '0');
  }
  return n <= 128;
}

std::string ipv4_text(uint32_t ip) {
  return std::to_string(ip >> 24) + "." + std::to_string((ip >> 16) & 255) + "." + std::to_string((ip >> 8) & 255) + "." +
         std::to_string(ip & 255);
}

std::string cidr_text(const Ipv4Cidr& c) { return ipv4_text(c.addr) + "/" + std::to_string(c.prefix); }

std::vector<Ipv4Cidr> normalize_ranges(std::vector<Ipv4Cidr> ranges) {
  // Widest first, so a range is dropped when a kept one covers it.
  std::sort(ranges.begin(), ranges.end(), [](auto& a, auto& b) { return a.prefix != b.prefix ? a.prefix < b.prefix : a.addr < b.addr; });
  std::vector<Ipv4Cidr> kept;
  for (auto& r : ranges)
    if (std::none_of(kept.begin(), kept.end(), [&](auto& k) { return k.covers(r); })) kept.push_back(r);
  std::sort(kept.begin(), kept.end());
  return kept;
}

}  // namespace brig
