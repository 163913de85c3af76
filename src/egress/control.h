// The control channel between the daemon and brig-egress: one JSON object per line over a
// socketpair (SOCK_STREAM) whose proxy end is `brig egress --control-fd N`. Lines are at most
// kMaxControlLine bytes; a longer line or a malformed one is answered with an error (or, from
// the proxy, ends the channel on the daemon's side).
//
// Daemon -> proxy:
//   {"op":"set","id":7,"source":"10.200.0.1","sandbox":"<id>","allowOut":[...],"denyOut":[...]}
//       the sandbox whose connections come from `source`, and its whole policy (E2B's allowOut
//       and denyOut; both empty: everything but the always-denied set). Replaces any earlier
//       policy of that source; open connections the new policy denies are closed.
//       With "rules":[{"domain":"api.example.com","headers":[["Authorization","Bearer ..."]],
//       "broken":""}]: header rules (network.rules), their secrets resolved. HTTPS requests to a
//       rule's domain are read and get its headers; "broken" non-empty: they are refused with it.
//       The line carries secret values: neither side ever logs it.
//   {"op":"remove","id":8,"source":"10.200.0.1"}
//       forgets the source; its open connections are closed, new ones are refused.
// Proxy -> daemon:
//   {"op":"ready","listen":"0.0.0.0:15001","dns":"0.0.0.0:15353"}   once, when it serves
//   {"op":"ack","id":7}  /  {"op":"error","id":7,"message":"..."}     per request, in order
//   {"op":"decision","sandbox":"<id>","source":"10.200.0.1","kind":"tcp","protocol":"tls",
//    "name":"example.com","dest":"93.184.215.14:443","verdict":"allow","reason":"allowOut
//    example.com","time_ms":1700000000000}
//       one per connection and per DNS question judged (kind "dns": dest is empty); names,
//       addresses and reasons only: never a path, header or payload.
//   {"op":"dropped","count":12}   decisions lost because the daemon did not read fast enough
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "base/result.h"

namespace brig::egress {

inline constexpr size_t kMaxControlLine = 1 << 20;

struct HeaderRule {
  std::string domain;  // "api.example.com" or "*.example.com", lower case
  std::vector<std::pair<std::string, std::string>> headers;  // name, value (secrets resolved)
  std::string broken;  // non-empty: why requests for the domain are refused (a secret that is gone)
  bool operator==(const HeaderRule&) const = default;
};
struct SetPolicy {
  std::string source;  // IPv4 address the sandbox's connections come from
  std::string sandbox;
  std::vector<std::string> allow_out, deny_out;
  std::vector<HeaderRule> rules;
};
struct RemovePolicy {
  std::string source;
};
struct ControlRequest {
  uint64_t id = 0;
  std::variant<SetPolicy, RemovePolicy> op;
};

struct Decision {
  std::string sandbox, source;
  std::string kind;      // "tcp" | "dns"
  std::string protocol;  // tcp: "tls" | "http" | "other" | "unknown"; dns: the query type
  std::string name, dest;
  bool allow = false;
  std::string reason;
  int64_t time_ms = 0;
};
struct Ready {
  std::string listen, dns;
};
struct Ack {
  uint64_t id = 0;
  std::string error;  // empty: done
};
struct Dropped {
  uint64_t count = 0;
};
using ControlEvent = std::variant<Ready, Ack, Decision, Dropped>;

// Daemon side.
std::string encode_request(const ControlRequest& r);
[[nodiscard]] Result<ControlEvent> parse_event(std::string_view line);
// Proxy side.
[[nodiscard]] Result<ControlRequest> parse_request(std::string_view line);
// The "id" of a request line parse_request refused, if it has one (0 otherwise), for its error.
uint64_t request_id(std::string_view line);
std::string encode_event(const ControlEvent& e);

}  // namespace brig::egress
