// envd's data plane for one sandbox: the process and filesystem Connect services, /files,
// /health, /envs, /metrics. Each handler gets the sandbox (already authorised) and the user
// the request acts as.
#pragma once

#include "server/http.h"
#include "server/live.h"

namespace brig::server::envd {

// Picks the handler for `path` ("/process.Process/Start", "/files", ...); nullopt if unknown.
std::optional<Route> route(std::shared_ptr<Live> live, const Request& req, sandbox::User user,
                           Metrics& metrics);

// The user a data-plane request acts as: Basic auth or ?username=, else the template default.
Result<sandbox::User> user_of(const Request& req, const Live& live);

// "v1_" + base64(sha256("<path>:<op>:<user>:<token>[:<exp>]")) without padding (signed URLs).
std::string file_signature(const std::string& path, const std::string& op, const std::string& user,
                           const std::string& token, const std::string& expiration);

}  // namespace brig::server::envd
