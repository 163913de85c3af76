#include "server/rest/rest.h"

#include <algorithm>
#include <ctime>

namespace brig::server::rest {

Response error(const Error& e, std::string_view what) {
  return Response::error(core::http_status(core::report(e, what)), e.message());
}

Route respond(std::function<Response(Request&)> fn) {
  Route r;
  r.respond = std::move(fn);
  return r;
}

Error bad(std::string message) { return Error::make(errc::invalid_argument, std::move(message)); }

Result<PageQuery> parse_page(const Request& req, size_t default_limit) {
  PageQuery q{default_limit, 0};
  if (req.has_param("limit")) {
    std::string l = req.param("limit");
    if (l.empty() || l.size() > 5 || l.find_first_not_of("0123456789") != std::string::npos) return bad("limit must be an integer");
    q.limit = static_cast<size_t>(std::clamp(std::stoi(l), 1, 1000));
  }
  if (std::string t = req.param("nextToken"); !t.empty()) {
    if (t.size() > 10 || t.find_first_not_of("0123456789") != std::string::npos) return bad("invalid nextToken");
    q.offset = std::stoul(t);
  }
  return q;
}

std::string rfc3339(int64_t ms) {
  std::time_t t = ms / 1000;
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

}  // namespace brig::server::rest
