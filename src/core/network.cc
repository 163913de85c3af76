#include "core/network.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "base/cidr.h"
#include "base/util.h"

namespace brig::core {
namespace {

constexpr size_t kMaxEntryBytes = 255;
constexpr const char* kAllTraffic = "0.0.0.0/0";

bool is_ip_or_cidr(std::string_view s) { return parse_ipv4_cidr(s).has_value() || is_ipv6_literal(s); }

// "example.com", "*.example.com": labels of letters, digits, '-' and '_' (1-63 each) after an
// optional "*." prefix, at most 253 characters. (E2B takes anything that is not an address as a
// domain; brig refuses what no host name looks like.)
bool is_domain(std::string_view s) {
  if (s.starts_with("*.")) s.remove_prefix(2);
  if (s.empty() || s.size() > 253) return false;
  size_t labels = 0;
  for (auto& label : split(s, '.')) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    ++labels;
  }
  return labels >= 1;
}

Error bad(std::string message) { return Error::make(errc::invalid_argument, std::move(message)); }

std::string shown(const std::string& entry) { return entry.size() > 64 ? entry.substr(0, 64) + "..." : entry; }

std::vector<std::string> comma_list(const std::string& text) {
  std::vector<std::string> out;
  for (auto& item : split(text, ','))
    if (auto t = trim(item); !t.empty()) out.emplace_back(t);
  return out;
}

}  // namespace

Result<> check_network(const NetworkConfig& c, const config::Limits& limits) {
  for (auto* list : {&c.allow_out, &c.deny_out}) {
    const char* name = list == &c.allow_out ? "allowOut" : "denyOut";
    if (list->size() > limits.network_entries)
      return bad(std::string("network.") + name + " has " + std::to_string(list->size()) + " entries; at most " +
                 std::to_string(limits.network_entries) + " (limits.network_entries)");
    for (auto& e : *list)
      if (e.size() > kMaxEntryBytes)
        return bad(std::string("network.") + name + " entries are at most 255 bytes: " + shown(e));
  }
  // E2B's checks, in its order and with its words.
  for (auto& e : c.deny_out)
    if (!is_ip_or_cidr(e)) return bad("invalid denied CIDR " + shown(e));
  bool domains = false;
  for (auto& e : c.allow_out) {
    if (is_ip_or_cidr(e)) continue;
    if (!is_domain(e)) return bad("invalid allow out entry " + shown(e) + ": not an IP, a CIDR or a domain name");
    domains = true;
  }
  if (domains && std::find(c.deny_out.begin(), c.deny_out.end(), kAllTraffic) == c.deny_out.end())
    return bad(kDomainsRequireBlockAll);
  return ok();
}

sandbox::EgressPolicy egress_policy(const NetworkConfig& c) {
  sandbox::EgressPolicy p;
  for (auto& e : c.allow_out)
    if (auto r = parse_ipv4_cidr(e)) p.allow.push_back(*r);  // domains and IPv6: nothing (yet)
  for (auto& e : c.deny_out)
    if (auto r = parse_ipv4_cidr(e)) p.deny.push_back(*r);
  if (!c.allow_internet_access) p.deny.push_back(Ipv4Cidr{0, 0});
  p.allow = normalize_ranges(std::move(p.allow));
  p.deny = normalize_ranges(std::move(p.deny));
  // DNS is forwarded to the host's resolver only while the internet is open; a sandbox whose
  // allowOut has domains gets names from brig egress's DNS stub (Service::policy_for).
  p.dns = std::none_of(p.deny.begin(), p.deny.end(), [](auto& r) { return r.prefix == 0; });
  return p;
}

bool has_domains(const NetworkConfig& c) {
  return std::any_of(c.allow_out.begin(), c.allow_out.end(), [](auto& e) { return !is_ip_or_cidr(e); });
}

std::vector<std::string> proxy_deny_out(const NetworkConfig& c) {
  std::vector<std::string> out = c.deny_out;
  if (!c.allow_internet_access && std::find(out.begin(), out.end(), kAllTraffic) == out.end()) out.push_back(kAllTraffic);
  return out;
}

Result<NetworkConfig> default_network(const config::Network& n, const config::Limits& limits) {
  NetworkConfig c;
  c.allow_internet_access = n.allow_internet_access != "false";
  c.allow_out = comma_list(n.allow_out);
  c.deny_out = comma_list(n.deny_out);
  if (auto r = check_network(c, limits); !r) return r.error().wrap("the default network policy ([network] allow_out, deny_out)");
  return c;
}

nlohmann::json network_json(const NetworkConfig& c) {
  nlohmann::json j = nlohmann::json::object();
  if (!c.allow_out.empty()) j["allowOut"] = c.allow_out;
  if (!c.deny_out.empty()) j["denyOut"] = c.deny_out;
  return j.empty() ? nlohmann::json(nullptr) : j;
}

std::string network_to_text(const NetworkConfig& c) {
  return nlohmann::json{{"allow_internet_access", c.allow_internet_access}, {"allowOut", c.allow_out}, {"denyOut", c.deny_out}}.dump();
}

NetworkConfig network_from_text(const std::string& text) {
  NetworkConfig c;
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return c;
  if (auto it = j.find("allow_internet_access"); it != j.end() && it->is_boolean()) c.allow_internet_access = it->get<bool>();
  for (auto [key, list] : {std::pair{"allowOut", &c.allow_out}, std::pair{"denyOut", &c.deny_out}})
    if (auto it = j.find(key); it != j.end() && it->is_array())
      for (auto& e : *it)
        if (e.is_string()) list->push_back(e.get<std::string>());
  return c;
}

}  // namespace brig::core
