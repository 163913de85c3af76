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

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/result.h"
#include "config/config.h"
#include "sandbox/sandbox.h"

namespace brig::core {

struct NetworkConfig {
  bool allow_internet_access = true;
  std::vector<std::string> allow_out;  // as given, in order
  std::vector<std::string> deny_out;
  bool operator==(const NetworkConfig&) const = default;
};

// E2B's message when allowOut names a domain and denyOut lacks 0.0.0.0/0
// (packages/api/internal/handlers/sandbox_create.go, ErrMsgDomainsRequireBlockAll).
inline constexpr const char* kDomainsRequireBlockAll =
    "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out to block all other traffic.";

// Checks `c` as E2B does (errc::invalid_argument with E2B's message), plus brig's bounds:
// limits.network_entries per list, 255 bytes per entry, domains shaped as host names.
Result<> check_network(const NetworkConfig& c, const config::Limits& limits);

// What the firewall enforces for `c`: IPv4 allows, IPv4 denies (0.0.0.0/0 when internet access
// is off), and DNS forwarding while 0.0.0.0/0 is not denied.
sandbox::EgressPolicy egress_policy(const NetworkConfig& c);

// allowOut names a domain: only brig egress (the proxy that reads TLS SNI and HTTP Host) can
// enforce it.
bool has_domains(const NetworkConfig& c);
// denyOut as brig egress is told it: with 0.0.0.0/0 added when internet access is off.
std::vector<std::string> proxy_deny_out(const NetworkConfig& c);

// The brig-wide default of a create ([network] allow_internet_access, allow_out, deny_out),
// checked like a request.
Result<NetworkConfig> default_network(const config::Network& n, const config::Limits& limits);

// E2B's SandboxDetail.network ({"allowOut": [...], "denyOut": [...]}, empty lists left out);
// null when both are empty.
nlohmann::json network_json(const NetworkConfig& c);
// For the state database.
std::string network_to_text(const NetworkConfig& c);
NetworkConfig network_from_text(const std::string& text);  // default (internet on) if unreadable

}  // namespace brig::core
