// The code interpreter's data plane (port 49999, e2b-compat.md section 4): POST /execute
// streaming NDJSON, and /contexts. The daemon checks and bounds each request, then relays it to
// the sandbox's kernel host (init/kernel_host.h) over a connection brig-init hands out; the
// kernels themselves run inside the sandbox.
#pragma once

#include <nlohmann/json.hpp>

#include "server/http.h"
#include "core/live.h"

namespace brig::server::code_interpreter {

// The handler for `head` on port 49999 (already authorised), or a 404 route.
Route route(std::shared_ptr<core::Live> live, const Request& head);

// The validated kernel-host request for an /execute body; errc::invalid_argument explains a
// client mistake. `timeout_ms` (a brig extension) interrupts the cell when it runs longer.
Result<nlohmann::json> execute_request(std::string_view body);

}  // namespace brig::server::code_interpreter
