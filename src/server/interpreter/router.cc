// What the code interpreter's routes share, and the router.
#include <spdlog/spdlog.h>

#include "server/interpreter/interpreter.h"

namespace brig::server::interpreter {

Response text(int status, const std::string& body) {
  Response r;
  r.status = status;
  r.headers = {{"Content-Type", "text/plain; charset=utf-8"}};
  r.body = body;
  return r;
}

// The kernel host could not be reached or failed: a 502, as E2B's proxy answers for a sandbox
// service that is down; logged once here (it is never the client's fault).
Response unavailable(const Error& e, const std::string& prefix) {
  spdlog::error("code interpreter: {}{}", prefix, e.message());
  return text(502, prefix + e.message());
}

Route route(std::shared_ptr<core::Live> live, const Request& head, const config::Limits& limits) {
  Route r;
  const std::string& path = head.path;
  const std::string& m = head.method;
  if (path == "/execute" && m == "POST") return execute(live, limits);
  if (path == "/contexts" || path.starts_with("/contexts/")) return contexts(live, head);
  r.respond = [](Request& req) { return text(404, "no route for " + req.method + " " + req.path.substr(0, 128)); };
  return r;
}

}  // namespace brig::server::interpreter
