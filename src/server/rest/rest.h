// The E2B control plane (REST, e2b-compat.md section 2) over core::Service: one file per
// resource. The daemon has checked the API key; each function answers one resource's routes.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/service.h"
#include "core/status.h"
#include "server/http.h"

namespace brig::server::rest {

inline constexpr const char* kEnvdVersion = "0.6.13";

struct Context {
  core::Service& core;
  std::string domain;  // <port>-<id>.<domain> hosts, port included
};

// The JSON error body every control-plane failure has ({"code":N,"message":...}), its status
// from core's table; a server fault is logged once as `what`.
Response error(const Error& e, std::string_view what);

// /sandboxes[...] and /v2/sandboxes[...]: `parts` is the path after the version, split on '/'.
Route sandboxes(const Context& ctx, const Request& head, const std::vector<std::string>& parts);
// /sandboxes/{id}/logs (v2: /v2/sandboxes/{id}/logs), GET.
Route sandbox_logs(const Context& ctx, const std::string& id, bool v2);
// /secrets[/{idOrName}]: `parts` as for sandboxes.
Route secrets(const Context& ctx, const Request& head, const std::vector<std::string>& parts);
// /templates
Route templates(const Context& ctx, const Request& head);
// /health, /metrics, /openapi.json (no key needed); nullopt for other paths.
std::optional<Route> service_info(const Context& ctx, const Request& head);

std::string rfc3339(int64_t unix_ms);

// A route that answers with `fn`.
Route respond(std::function<Response(Request&)> fn);
// A client's mistake (400), saying what is wrong.
Error bad(std::string message);

// E2B's paging query: `limit` (clamped to 1..1000; default_limit when absent) and `nextToken`
// (the offset this server hands out in X-Next-Token).
struct PageQuery {
  size_t limit = 0;
  size_t offset = 0;
};
Result<PageQuery> parse_page(const Request& req, size_t default_limit);

}  // namespace brig::server::rest
