#include "egress/policy.h"

#include "isolate/firewall.h"

#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/address_v6.hpp>

#include <algorithm>
#include <charconv>

namespace brig::egress {

namespace ip = boost::asio::ip;

namespace {

Error bad(std::string_view entry, std::string_view why) {
  return Error::make(errc::invalid_argument, "network entry \"" + std::string(entry) + "\": " + std::string(why));
}

std::optional<uint16_t> parse_port(std::string_view s) {
  unsigned value = 0;
  if (s.empty() || s.size() > 5) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || value == 0 || value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

// "80" or "1-1024"; false for anything else (E2B's parsePortRange).
bool parse_port_range(std::string_view s, uint16_t& lo, uint16_t& hi) {
  if (auto dash = s.find('-'); dash != std::string_view::npos) {
    auto a = parse_port(s.substr(0, dash)), b = parse_port(s.substr(dash + 1));
    if (!a || !b || *a > *b) return false;
    lo = *a, hi = *b;
    return true;
  }
  auto p = parse_port(s);
  if (!p) return false;
  lo = hi = *p;
  return true;
}

IpAddress unmapped(const IpAddress& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, a.to_v6());
  return a;
}

bool net_holds(const std::variant<Net4, Net6>& net, const IpAddress& raw) {
  IpAddress a = unmapped(raw);
  if (const auto* n4 = std::get_if<Net4>(&net)) {
    if (!a.is_v4()) return false;
    uint32_t mask = n4->netmask().to_uint();
    return (a.to_v4().to_uint() & mask) == (n4->network().to_uint() & mask);
  }
  const auto& n6 = std::get<Net6>(net);
  if (!a.is_v6()) return false;
  auto want = n6.network().to_bytes(), got = a.to_v6().to_bytes();
  unsigned bits = n6.prefix_length();
  for (size_t i = 0; i < 16 && bits; ++i) {
    unsigned take = std::min(bits, 8u);
    auto mask = static_cast<uint8_t>(0xff << (8 - take));
    if ((want[i] & mask) != (got[i] & mask)) return false;
    bits -= take;
  }
  return true;
}

std::string net_text(const std::variant<Net4, Net6>& net) {
  if (const auto* n4 = std::get_if<Net4>(&net)) return n4->to_string();
  return std::get<Net6>(net).to_string();
}

}  // namespace

std::optional<std::variant<Net4, Net6>> parse_net(std::string_view text) {
  if (text.empty() || text.size() > 64) return std::nullopt;
  std::string s(text);
  boost::system::error_code ec;
  auto slash = s.find('/');
  if (slash == std::string::npos) {
    auto a = ip::make_address(s, ec);
    if (ec) return std::nullopt;
    if (a.is_v4()) return Net4(a.to_v4(), 32);
    return Net6(a.to_v6(), 128);
  }
  auto a = ip::make_address(s.substr(0, slash), ec);
  if (ec) return std::nullopt;
  std::string_view len = std::string_view(s).substr(slash + 1);
  unsigned prefix = 0;
  auto [end, perr] = std::from_chars(len.data(), len.data() + len.size(), prefix);
  if (len.empty() || len.size() > 3 || perr != std::errc() || end != len.data() + len.size()) return std::nullopt;
  if (a.is_v4()) {
    if (prefix > 32) return std::nullopt;
    Net4 n(a.to_v4(), static_cast<unsigned short>(prefix));
    return Net4(n.network(), n.prefix_length());  // host bits cleared
  }
  if (prefix > 128) return std::nullopt;
  Net6 n(a.to_v6(), static_cast<unsigned short>(prefix));
  return Net6(n.network(), n.prefix_length());
}

bool is_ip_literal(std::string_view text) {
  if (text.empty() || text.size() > 64) return false;
  boost::system::error_code ec;
  (void)ip::make_address(std::string(text), ec);
  return !ec;
}

std::optional<std::string> normalize_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return std::nullopt;
  std::string out;
  out.reserve(name.size());
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return std::nullopt;  // empty label ("a..b", ".a")
      label = 0;
      out.push_back('.');
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok || ++label > 63) return std::nullopt;
    out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
  }
  if (label == 0) return std::nullopt;
  return out;
}

bool domain_matches(std::string_view pattern, std::string_view name) {
  if (pattern.empty() || name.empty()) return false;
  if (pattern == "*") return true;
  if (pattern.starts_with("*.")) {
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    return name.size() > suffix.size() && name.ends_with(suffix);
  }
  return pattern == name;
}

bool Rule::holds(const IpAddress& ip) const { return kind == Kind::cidr && net_holds(net, ip); }

Result<Rule> parse_rule(std::string_view entry) {
  // E2B trims spaces (strings.TrimSpace).
  while (!entry.empty() && (entry.front() == ' ' || entry.front() == '\t')) entry.remove_prefix(1);
  while (!entry.empty() && (entry.back() == ' ' || entry.back() == '\t')) entry.remove_suffix(1);
  if (entry.empty()) return bad(entry, "empty entry");
  if (entry.size() > kMaxEntryBytes) return bad(entry.substr(0, 64), "longer than 255 bytes");
  Rule r;
  r.text = std::string(entry);
  std::string_view host = entry, ports;
  bool has_ports = false;
  if (entry.front() == '[') {  // [v6]:port
    auto close = entry.find(']');
    if (close == std::string_view::npos) return bad(entry, "missing ']'");
    host = entry.substr(1, close - 1);
    std::string_view rest = entry.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad(entry, "expected ':' after ']'");
      ports = rest.substr(1);
      has_ports = !ports.empty();
    }
  } else if (std::count(entry.begin(), entry.end(), ':') == 1) {
    auto colon = entry.find(':');
    host = entry.substr(0, colon);
    ports = entry.substr(colon + 1);
    has_ports = !ports.empty();
  }  // more than one colon and no brackets: an IPv6 address or CIDR, every port
  if (has_ports && !parse_port_range(ports, r.port_lo, r.port_hi))
    return bad(entry, "the port must be 1-65535 or a range LO-HI");
  if (host.empty()) return bad(entry, "no address or name");
  if (auto net = parse_net(host)) {
    r.kind = Rule::Kind::cidr;
    r.net = *net;
    return r;
  }
  if (host.find('/') != std::string_view::npos || is_ip_literal(host)) return bad(entry, "malformed CIDR");
  r.kind = Rule::Kind::domain;
  if (host == "*") {
    r.domain = "*";
    return r;
  }
  bool wildcard = host.starts_with("*.");
  auto name = normalize_name(wildcard ? host.substr(2) : host);
  if (!name) return bad(entry, "not an IP address, a CIDR or a domain name");
  // A name made only of digits and dots is a malformed address ("1.2.3"), not a domain.
  if (std::all_of(name->begin(), name->end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; }))
    return bad(entry, "malformed IP address");
  r.domain = wildcard ? "*." + *name : *name;
  return r;
}

Result<Policy> parse_policy(const std::vector<std::string>& allow_out, const std::vector<std::string>& deny_out) {
  if (allow_out.size() > kMaxEntries || deny_out.size() > kMaxEntries)
    return Error::make(errc::invalid_argument, "too many network entries");
  Policy p;
  for (const auto& e : allow_out) {
    BRIG_TRY_ASSIGN(rule, parse_rule(e));
    p.allow.push_back(std::move(rule));
  }
  for (const auto& e : deny_out) {
    BRIG_TRY_ASSIGN(rule, parse_rule(e));
    if (rule.kind == Rule::Kind::domain) return bad(e, "denyOut takes IP addresses and CIDRs only");
    p.deny.push_back(std::move(rule));
  }
  return p;
}

bool Policy::has_domains() const {
  return std::any_of(allow.begin(), allow.end(), [](const Rule& r) { return r.kind == Rule::Kind::domain; });
}

bool Policy::strict_dns() const {
  if (!has_domains()) return false;
  return std::any_of(deny.begin(), deny.end(), [](const Rule& r) {
    const auto* n4 = std::get_if<Net4>(&r.net);
    return r.kind == Rule::Kind::cidr && n4 && n4->prefix_length() == 0 && r.port_lo == 0 && r.port_hi == 0;
  });
}

DeniedSet::DeniedSet(std::vector<std::variant<Net4, Net6>> extra) {
  // IPv4: the host firewall's list (one owner: isolate::always_denied). IPv6, which sandboxes
  // do not have but a name may resolve to: unspecified, loopback, unique-local, link-local,
  // multicast.
  for (const auto& r : isolate::always_denied())
    nets_.push_back(Net4(boost::asio::ip::address_v4(r.addr), r.prefix));
  static constexpr const char* kBuiltin6[] = {"::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8"};
  for (const char* text : kBuiltin6) nets_.push_back(*parse_net(text));
  for (auto& n : extra) nets_.push_back(std::move(n));
}

std::optional<std::string> DeniedSet::match(const IpAddress& ip) const {
  for (const auto& n : nets_)
    if (net_holds(n, ip)) return net_text(n);
  return std::nullopt;
}

Verdict decide(const Policy* policy, const DeniedSet& denied, const Connection& c) {
  using By = Verdict::By;
  if (auto range = denied.match(c.dest)) return {false, By::always_denied, "always denied (" + *range + ")"};
  if (!policy) return {true, By::default_allow, "no policy"};
  for (const auto& r : policy->allow) {
    if (!r.port_matches(c.port)) continue;
    if (r.kind == Rule::Kind::domain) {
      if (!c.name.empty() && domain_matches(r.domain, c.name)) return {true, By::allow_domain, "allowOut " + r.text};
    } else if (r.holds(c.dest)) {
      return {true, By::allow_cidr, "allowOut " + r.text};
    }
  }
  for (const auto& r : policy->deny)
    if (r.port_matches(c.port) && r.holds(c.dest)) return {false, By::deny_cidr, "denyOut " + r.text};
  return {true, By::default_allow, "no rule matched"};
}

bool name_allowed(const Policy& policy, std::string_view name) {
  return std::any_of(policy.allow.begin(), policy.allow.end(), [&](const Rule& r) {
    return r.kind == Rule::Kind::domain && domain_matches(r.domain, name);
  });
}

}  // namespace brig::egress
