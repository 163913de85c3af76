// envd's data plane for one sandbox (port 49983): the process and filesystem Connect services,
// /files and /files/archive, /health, /envs, /metrics. The daemon has already found the
// sandbox; this checks the access token (or a /files signature) and the user, then picks the
// handler: one file per RPC in this folder.
#pragma once

#include <memory>
#include <string>

#include "core/service.h"
#include "server/http.h"

namespace brig::server::envd {

// The route for a request to sandbox `live`'s envd (404s included).
Route route(core::Service& core, std::shared_ptr<core::Live> live, const Request& head);

// The user a data-plane request acts as: Basic auth or ?username=, else the template default.
Result<sandbox::User> user_of(const Request& req, const core::Live& live);

// "v1_" + base64(sha256("<path>:<op>:<user>:<token>[:<exp>]")) without padding (signed URLs).
std::string file_signature(const std::string& path, const std::string& op, const std::string& user,
                           const std::string& token, const std::string& expiration);

// Compares secrets in constant time.
bool same_secret(const std::string& a, const std::string& b);

}  // namespace brig::server::envd
