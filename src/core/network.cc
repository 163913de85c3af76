#include "core/network.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "base/cidr.h"
#include "base/util.h"
#include "core/secrets.h"

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

bool is_token(std::string_view name) {
  static constexpr std::string_view kSpecials = "!#$%&'*+-.^_`|~";
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || kSpecials.find(c) != std::string_view::npos;
  });
}

constexpr std::string_view kSecretOpen = "${e2b.secrets.";

// E2B's limits on network.rules (e2b-next.md 2.3).
Result<> check_rules(const HeaderRules& rules) {
  constexpr size_t kDomains = 10, kHeaders = 20, kNameBytes = 64, kValueBytes = 2048, kSecrets = 32;
  if (rules.size() > kDomains)
    return bad("network.rules has " + std::to_string(rules.size()) + " domains; at most " + std::to_string(kDomains));
  for (const auto& [domain, headers] : rules) {
    if (domain == "*" || !is_domain(domain))
      return bad("network.rules key " + shown(domain) + " is not a domain (\"api.example.com\" or \"*.example.com\")");
    if (headers.size() > kHeaders)
      return bad("network.rules[" + domain + "] sets " + std::to_string(headers.size()) + " headers; at most " +
                 std::to_string(kHeaders));
    size_t secrets = 0;
    for (const auto& [name, value] : headers) {
      if (name.size() > kNameBytes || !is_token(name))
        return bad("network.rules[" + domain + "]: header name " + shown(name) + " is not an HTTP token of at most 64");
      if (value.size() > kValueBytes)
        return bad("network.rules[" + domain + "]: the value of " + name + " is over 2048 characters");
      if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
        return bad("network.rules[" + domain + "]: the value of " + name + " holds CR, LF or NUL");
      for (size_t at = value.find("${e2b."); at != std::string::npos; at = value.find("${e2b.", at + 1))
        if (value.compare(at, kSecretOpen.size(), kSecretOpen) != 0)
          return bad("network.rules[" + domain + "]: only ${e2b.secrets.NAME} placeholders are supported by brig (" +
                     shown(value.substr(at, 40)) + ")");
      auto refs = secret_refs(value);
      for (auto& ref : refs)
        if (ref.empty()) return bad("network.rules[" + domain + "]: a secret placeholder without a usable name");
      secrets += refs.size();
    }
    if (secrets > kSecrets)
      return bad("network.rules[" + domain + "] refers to " + std::to_string(secrets) + " secrets; at most " +
                 std::to_string(kSecrets));
  }
  return ok();
}

}  // namespace

std::vector<std::string> secret_refs(std::string_view value) {
  std::vector<std::string> out;
  for (size_t at = value.find(kSecretOpen); at != std::string_view::npos; at = value.find(kSecretOpen, at + 1)) {
    size_t begin = at + kSecretOpen.size();
    size_t end = value.find('}', begin);
    if (end == std::string_view::npos) {
      out.emplace_back();  // unterminated: no name (refused by check_rules)
      break;
    }
    // The secret store's own rule for a name (lower-cased; none: unusable, refused by check_rules).
    auto name = secret_name(std::string(value.substr(begin, end - begin)));
    out.push_back(name ? std::move(*name) : std::string());
  }
  return out;
}

std::vector<egress::HeaderRule> resolve_rules(const HeaderRules& rules,
                                              const std::function<std::optional<std::string>(const std::string&)>& value_of) {
  std::vector<egress::HeaderRule> out;
  for (const auto& [domain, headers] : rules) {
    egress::HeaderRule r;
    r.domain = domain;
    for (const auto& [name, value] : headers) {
      std::string resolved;
      size_t from = 0;
      for (size_t at = value.find(kSecretOpen); at != std::string::npos; at = value.find(kSecretOpen, from)) {
        size_t end = value.find('}', at);
        if (end == std::string::npos) break;
        resolved.append(value, from, at - from);
        auto refs = secret_refs(std::string_view(value).substr(at, end + 1 - at));
        const std::string secret = refs.empty() ? std::string() : refs.front();
        auto v = value_of(secret);
        if (!v) {
          r.broken = "the secret '" + secret + "' of this domain's header rule is not set";
        } else if (v->find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
          r.broken = "the secret '" + secret + "' holds CR, LF or NUL, which no header value can";
        } else {
          resolved += *v;
        }
        from = end + 1;
      }
      resolved.append(value, from);
      r.headers.emplace_back(name, r.broken.empty() ? std::move(resolved) : std::string());
    }
    if (!r.broken.empty()) r.headers.clear();  // nothing of a broken rule is sent
    out.push_back(std::move(r));
  }
  return out;
}

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
  return check_rules(c.rules);
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

bool needs_egress(const NetworkConfig& c) { return has_domains(c) || !c.rules.empty(); }

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
  if (!c.rules.empty()) j["rules"] = rules_json(c.rules);
  return j.empty() ? nlohmann::json(nullptr) : j;
}

nlohmann::json rules_json(const HeaderRules& rules) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [domain, headers] : rules) {
    nlohmann::json h = nlohmann::json::object();
    for (const auto& [name, value] : headers) h[name] = value;
    out[domain] = nlohmann::json::array({{{"transform", {{"headers", h}}}}});
  }
  return out;
}

std::string network_to_text(const NetworkConfig& c) {
  nlohmann::json j{{"allow_internet_access", c.allow_internet_access}, {"allowOut", c.allow_out}, {"denyOut", c.deny_out}};
  if (!c.rules.empty()) j["rules"] = c.rules;
  return j.dump();
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
  if (auto it = j.find("rules"); it != j.end() && it->is_object()) {
    try {
      c.rules = it->get<HeaderRules>();
    } catch (const nlohmann::json::exception&) {
      c.rules.clear();  // unreadable: none (as for the rest)
    }
  }
  return c;
}

Result<TrustedCas> trusted_cas(const std::string& state_dir, const std::string& ca_file, const std::string& extra_pem) {
  TrustedCas out;
  if (ca_file.empty() || ::access(ca_file.c_str(), F_OK) != 0) return out;
  constexpr size_t kMaxBundle = 16 << 20;
  BRIG_TRY_ASSIGN(host_bundle, wrap(read_small_file(ca_file, kMaxBundle), "network.ca_file"));
  if (host_bundle.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
    return Error::make(errc::invalid_argument, "network.ca_file '" + ca_file + "' holds no PEM certificate");
  std::string bundle = std::move(host_bundle);
  if (!extra_pem.empty()) {
    if (!bundle.ends_with('\n')) bundle += '\n';
    bundle += extra_pem;
  }
  const std::string root = state_dir + "/trust";
  const std::string layer = root + "/" + sha256_hex(bundle).substr(0, 24);
  const std::string rel = "/etc/ssl/certs/ca-certificates.crt";
  struct stat st;
  if (::stat((layer + rel).c_str(), &st) != 0) {
    // Made aside and renamed into place: a layer is whole or absent. Root's, not writable by
    // others (the engine refuses layers that are).
    if (::mkdir(root.c_str(), 0755) != 0 && errno != EEXIST) return Error::from_errno(errno, "mkdir " + root);
    const std::string tmp = layer + ".tmp." + std::to_string(::getpid());
    std::string dir = tmp;
    for (const char* part : {"/etc", "/ssl", "/certs"}) {
      if (::mkdir(tmp.c_str(), 0755) != 0 && errno != EEXIST) return Error::from_errno(errno, "mkdir " + tmp);
      dir += part;
      if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return Error::from_errno(errno, "mkdir " + dir);
    }
    Fd fd(::open((tmp + rel).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd) return Error::from_errno(errno, "create " + tmp + rel);
    BRIG_TRY(write_fd_all(fd.get(), bundle, "the trusted CA bundle"));
    if (::rename(tmp.c_str(), layer.c_str()) != 0 && errno != EEXIST && errno != ENOTEMPTY)
      return Error::from_errno(errno, "rename " + tmp);
    std::error_code ignored;
    std::filesystem::remove_all(tmp, ignored);  // another daemon made it first: ours goes
  }
  out.layer = layer;
  for (const char* var : {"SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE"}) out.env[var] = rel;
  return out;
}

}  // namespace brig::core
