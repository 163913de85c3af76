// A sandbox's egress configuration in E2B's terms (POST /sandboxes `allow_internet_access` and
// `network.allowOut/denyOut`, PUT /sandboxes/{id}/network), its validation with E2B's rules and
// messages, and the policy the host firewall enforces for it.
//
// E2B's semantics: allowOut holds IPs, CIDRs and domains ("example.com", "*.example.com"),
// denyOut IPs and CIDRs only; allow beats deny; the rest is allowed; allow_internet_access false
// is denyOut 0.0.0.0/0; domains in allowOut need "0.0.0.0/0" in denyOut. A policy with domains
// is enforced by brig egress (core/egress_link.h): the sandbox's TCP and DNS are redirected to
// it. IPv6 entries are accepted and open nothing: sandboxes have no IPv6.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/result.h"
#include "config/config.h"
#include "egress/control.h"
#include "sandbox/sandbox.h"

namespace brig::core {

// network.rules: header transforms on HTTPS requests to a domain ("api.example.com" or
// "*.example.com", lower case), each header's value as given: "${e2b.secrets.NAME}" placeholders
// are resolved only in brig egress, only for that domain (egress/intercept.h). A rule opens no
// traffic by itself.
using HeaderRules = std::map<std::string, std::vector<std::pair<std::string, std::string>>>;

struct NetworkConfig {
  bool allow_internet_access = true;
  std::vector<std::string> allow_out;  // as given, in order
  std::vector<std::string> deny_out;
  HeaderRules rules;
  bool operator==(const NetworkConfig&) const = default;
};

// E2B's message when allowOut names a domain and denyOut lacks 0.0.0.0/0
// (packages/api/internal/handlers/sandbox_create.go, ErrMsgDomainsRequireBlockAll).
inline constexpr const char* kDomainsRequireBlockAll =
    "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out to block all other traffic.";

// Checks `c` as E2B does (errc::invalid_argument with E2B's message), plus brig's bounds:
// limits.network_entries per list, 255 bytes per entry, domains shaped as host names; rules
// within E2B's limits (10 domains, 20 headers each, names of at most 64 token characters, values
// of at most 2,048 without CR, LF or NUL, 32 secret names per domain; no "*" alone).
Result<> check_network(const NetworkConfig& c, const config::Limits& limits);

// What the firewall enforces for `c`: IPv4 allows, IPv4 denies (0.0.0.0/0 when internet access
// is off), and DNS forwarding while 0.0.0.0/0 is not denied.
sandbox::EgressPolicy egress_policy(const NetworkConfig& c);

// allowOut names a domain: only brig egress (the proxy that reads TLS SNI and HTTP Host) can
// enforce it.
bool has_domains(const NetworkConfig& c);
// Domains in allowOut or header rules: the sandbox's TCP and DNS go through brig egress.
bool needs_egress(const NetworkConfig& c);

// The secret names a header value refers to ("${e2b.secrets.NAME}", NAME lower-cased), in order.
std::vector<std::string> secret_refs(std::string_view value);
// The rules as brig egress takes them: each placeholder replaced by `value_of(name)`; a rule
// whose secret is gone (nullopt) or holds CR, LF or NUL is sent "broken" with why, so its
// requests are refused rather than sent without it.
std::vector<egress::HeaderRule> resolve_rules(const HeaderRules& rules,
                                              const std::function<std::optional<std::string>(const std::string&)>& value_of);
// denyOut as brig egress is told it: with 0.0.0.0/0 added when internet access is off.
std::vector<std::string> proxy_deny_out(const NetworkConfig& c);

// The brig-wide default of a create ([network] allow_internet_access, allow_out, deny_out),
// checked like a request.
Result<NetworkConfig> default_network(const config::Network& n, const config::Limits& limits);

// The CAs sandboxes trust ([network] ca_file): a read-only layer, topmost over every template's,
// that holds the bundle as /etc/ssl/certs/ca-certificates.crt, and the variables that name it
// for runtimes that keep their own roots (Node, Python's requests). Hosts behind a
// TLS-inspecting proxy trust its CA in their bundle; so do their sandboxes, then.
struct TrustedCas {
  std::string layer;                          // a directory under <state-dir>/trust; empty: none
  std::map<std::string, std::string> env;     // SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE
};
// Makes the layer for `ca_file`'s bundle plus `extra_pem` (brig's egress CA, for header rules)
// under `state_dir` (named by its content's hash, so a changed bundle is a new layer and
// sandboxes made with the old one keep it). An empty path or a missing file: no layer (the
// templates' own CAs, and header rules cannot be trusted). A file with no certificate in it, or
// over 16 MiB: errc::invalid_argument.
Result<TrustedCas> trusted_cas(const std::string& state_dir, const std::string& ca_file, const std::string& extra_pem = "");

// E2B's SandboxDetail.network ({"allowOut": [...], "denyOut": [...], "rules": {...}}, empty
// ones left out; rules as given, placeholders unresolved); null when all are empty.
nlohmann::json network_json(const NetworkConfig& c);
// E2B's SandboxNetworkConfig.rules: {domain: [{"transform": {"headers": {name: value}}}]}.
nlohmann::json rules_json(const HeaderRules& rules);
// For the state database.
std::string network_to_text(const NetworkConfig& c);
NetworkConfig network_from_text(const std::string& text);  // default (internet on) if unreadable

}  // namespace brig::core
