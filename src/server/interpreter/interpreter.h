// The code interpreter's data plane (port 49999, e2b-compat.md section 4): POST /execute
// streaming NDJSON, and /contexts, over core/code.h. The daemon has authorised the request;
// these check and bound it, then relay it to the sandbox's kernel host
// (init/kernel_host.h); the kernels themselves run inside the sandbox.
#pragma once

#include <memory>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/code.h"
#include "core/live.h"
#include "server/http.h"

namespace brig::server::interpreter {

// The handler for `head` on port 49999 (already authorised), or a 404 route.
Route route(std::shared_ptr<core::Live> live, const Request& head, const config::Limits& limits);

// The validated kernel-host request for an /execute body; errc::invalid_argument explains a
// client mistake. `timeout_ms` (a brig extension) interrupts the cell when it runs longer.
Result<nlohmann::json> execute_request(std::string_view body, const config::Limits& limits);

// /execute and /contexts (execute.cc, contexts.cc).
Route execute(std::shared_ptr<core::Live> live, const config::Limits& limits);
Route contexts(std::shared_ptr<core::Live> live, const Request& head);

// A plain-text response; a failure to reach the kernel host (a 502, logged once).
Response text(int status, const std::string& body);
Response unavailable(const Error& e, const std::string& prefix);

}  // namespace brig::server::interpreter
