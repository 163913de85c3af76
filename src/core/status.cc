#include "core/status.h"

#include <cerrno>

#include <spdlog/spdlog.h>

namespace brig::core {
namespace {

struct Row {
  Status status;
  int http;
  const char* code;  // Connect's name, also used in logs and by MCP
};

// Connect's HTTP mapping (connectrpc.com/docs/protocol#error-codes), plus payload_too_large
// (413: Beast's and E2B's answer to an oversized body) and bad_gateway (502: the sandbox-side
// peer misbehaved, as E2B's proxy reports it).
constexpr Row kTable[] = {
    {Status::ok, 200, "ok"},
    {Status::invalid_argument, 400, "invalid_argument"},
    {Status::unauthenticated, 401, "unauthenticated"},
    {Status::permission_denied, 403, "permission_denied"},
    {Status::not_found, 404, "not_found"},
    {Status::already_exists, 409, "already_exists"},
    {Status::failed_precondition, 400, "failed_precondition"},
    {Status::aborted, 409, "aborted"},
    {Status::payload_too_large, 413, "resource_exhausted"},
    {Status::resource_exhausted, 429, "resource_exhausted"},
    {Status::canceled, 499, "canceled"},
    {Status::deadline_exceeded, 504, "deadline_exceeded"},
    {Status::unimplemented, 501, "unimplemented"},
    {Status::unavailable, 503, "unavailable"},
    {Status::bad_gateway, 502, "unavailable"},
    {Status::internal, 500, "internal"},
};

const Row& row(Status s) {
  for (auto& r : kTable)
    if (r.status == s) return r;
  return kTable[sizeof kTable / sizeof kTable[0] - 1];
}

}  // namespace

Status classify(const Error& e) {
  switch (e.sys_errno()) {
    case 0: break;
    case ENOENT:
    case ESRCH: return Status::not_found;
    case EACCES:
    case EPERM:
    case EROFS: return Status::permission_denied;
    case EEXIST: return Status::already_exists;
    case EINVAL:
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
    case ENAMETOOLONG:
    case EXDEV:
    case ENOTEMPTY: return Status::invalid_argument;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
    case EMFILE:
    case ENFILE: return Status::resource_exhausted;
    case ETIMEDOUT: return Status::deadline_exceeded;
    // A sandbox's port with nothing behind it (the data plane's connection to it).
    case ECONNREFUSED:
    case ECONNRESET:
    case ENETUNREACH:
    case EHOSTUNREACH:
    case EADDRNOTAVAIL: return Status::bad_gateway;
    default: return Status::internal;
  }
  if (e.is(errc::invalid_argument)) return Status::invalid_argument;
  if (e.is(errc::not_found)) return Status::not_found;
  if (e.is(errc::limit_exceeded)) return Status::resource_exhausted;
  if (e.is(errc::timed_out)) return Status::deadline_exceeded;
  if (e.is(errc::unsupported)) return Status::unimplemented;
  if (e.is(errc::conflict)) return Status::aborted;
  if (e.is(errc::unavailable)) return Status::unavailable;
  if (e.is(errc::protocol)) return Status::bad_gateway;
  return Status::internal;
}

int http_status(Status s) { return row(s).http; }
const char* connect_code(Status s) { return row(s).code; }
const char* status_name(Status s) { return s == Status::payload_too_large ? "payload_too_large" : s == Status::bad_gateway ? "bad_gateway" : row(s).code; }

Status report(const Error& e, std::string_view what) {
  Status s = classify(e);
  if (server_fault(s)) spdlog::error("{} failed ({}): {}", what, status_name(s), e.message());
  return s;
}

}  // namespace brig::core
