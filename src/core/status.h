// The one table from brig's errors to what each front door reports: a Status (the vocabulary
// of Connect/gRPC codes), its HTTP status and its Connect code. The REST control plane, envd's
// Connect services, the code interpreter and MCP all answer through it, and every failure that
// maps to a 5xx is logged once, with its cause, where it is turned into a response (report()).
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace brig::core {

enum class Status {
  ok,
  invalid_argument,     // the client's mistake: a bad field, path or size
  unauthenticated,      // no or a wrong key or token
  permission_denied,    // the sandbox user may not do that (EACCES/EPERM)
  not_found,            // no such sandbox, template, process, file
  already_exists,
  failed_precondition,  // the state does not allow it (e.g. a directory that is not empty)
  aborted,              // it conflicts with the state of what it names (HTTP 409)
  payload_too_large,    // a body past its route's bound
  resource_exhausted,   // a bound of the sandbox or of brig was hit (ENOSPC, too many watchers)
  canceled,             // the client went away
  deadline_exceeded,
  unimplemented,
  unavailable,          // a sandbox-side service is not there (the kernel host went away)
  bad_gateway,          // a sandbox-side peer answered with something malformed, or is not there (a closed port)
  internal,             // brig's own failure: logged with its cause
};

// What the error means for a client. errno values from inside a sandbox map by their meaning
// (ENOENT is not_found...), brig's own errc conditions by theirs; anything else is internal.
Status classify(const Error& e);

int http_status(Status s);
const char* connect_code(Status s);   // "not_found", ...
const char* status_name(Status s);    // the same words, for logs and MCP

// True for the statuses that are brig's (or a sandbox peer's) fault rather than the client's.
inline bool server_fault(Status s) { return http_status(s) >= 500 && s != Status::unimplemented; }

// Classifies `e`; when the status is a server fault, logs `what` and the cause once. Adapters
// call this exactly where they turn an error into a response.
Status report(const Error& e, std::string_view what);

}  // namespace brig::core
