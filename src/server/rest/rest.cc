#include "server/rest/rest.h"

#include <ctime>

namespace brig::server::rest {

Response error(const Error& e, std::string_view what) {
  return Response::error(core::http_status(core::report(e, what)), e.message());
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
