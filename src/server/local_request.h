// A request served by the daemon's own router in memory: no socket, no HTTP parser, no other
// thread. MCP code mode (server/mcp_backend.h) sends its checked API calls this way, so they
// meet exactly the routes, authorisation (the caller's key is in the request) and bounds a
// client's request meets, without the daemon calling itself back over loopback.
//
// Thread safety: a free function; routes run on the calling thread.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "server/http.h"

namespace brig::server {

struct LocalResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// Serves `req` (method, target, headers and body set; path and query are parsed from the
// target here) through `router` as HttpServer would: the route's body limit (413), whichever
// of respond / consume / stream / pull the route chose, 500 for a handler that throws.
// errc::invalid_argument for a malformed target, errc::limit_exceeded when the response body
// passes `max_response` bytes.
Result<LocalResponse> serve_locally(const HttpServer::Router& router, Request req, size_t max_response);

}  // namespace brig::server
