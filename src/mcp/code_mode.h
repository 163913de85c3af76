// MCP code mode (`brig mcp --mode code`, `/mcp/code`): three tools, search / execute_read /
// execute_write, each running the agent's JavaScript `async () => {...}` in a fresh `node`
// sandbox with no network. `search` sees the OpenAPI document as `spec`; the execute tools see
// `api.request({method, path, query?, body?})`, which reaches brig over the runner's stdio and
// is checked here, in C++, before the backend makes the call with the caller's authority (the
// key never enters the sandbox): over HTTP for `brig mcp`, through the daemon's own router, in
// process, for /mcp/code.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "base/result.h"
#include "config/config.h"
#include "mcp/backend.h"

namespace brig::mcp::code_mode {

// The OpenAPI 3.1 document of brig's REST API (api/openapi.json, embedded).
const std::string& openapi_text();
// What `search` sees: paths callable from code mode, each operation reduced to summary,
// description, tags, parameters, requestBody and responses, every $ref resolved inline.
const nlohmann::json& search_spec();

enum class Access { read, write };

struct CheckedRequest {
  std::string method;  // upper case
  std::string path;    // normalised, matched a spec template
  std::string target;  // path + encoded query
  std::string body;    // JSON, or empty
};

// The guards of one api.request: the method allowed for the tool and documented for the path;
// the path a plain absolute path (no scheme or host, no CR/LF or control characters, no
// backslash, no query or fragment, no empty, "." or ".." segment, at any level of
// percent-decoding) matching a spec template callable from code mode. errc::invalid_argument
// with a message the agent can act on.
Result<CheckedRequest> check_request(const nlohmann::json& request, Access access);

// The tools' definitions (name, title, description with TypeScript declarations and
// examples, schemas, annotations), for tools/list.
nlohmann::json tool_definitions();

struct Limits {
  int max_calls = static_cast<int>(config::Mcp{}.code_mode_api_calls);
  int timeout_ms = static_cast<int>(config::Mcp{}.code_mode_timeout_ms);
  size_t max_result_chars = config::Mcp{}.output_chars;
  // From the configuration's [mcp] section.
  static Limits from(const config::Mcp& mcp);
  // The limits set_process_limits() gave this process (else the defaults). It reads no
  // environment: it remains for mcp/server.cc until that takes the limits as a parameter.
  static Limits from_env();
};
// Sets what Limits::from_env() returns (the CLI, once, from the loaded configuration).
void set_process_limits(const Limits& limits);

// Kills the executor kept ready by this process, if any (at exit: it would otherwise wait out
// its lifetime).
void release_ready_executor(Backend& backend);

// Runs one tool call ("search", "execute_read", "execute_write") and returns the MCP result.
// Background work (refilling the ready executor, killing used ones) keeps `backend` alive.
nlohmann::json run(const std::shared_ptr<Backend>& backend, const std::string& tool, const std::string& code,
                   CancelToken* cancel, const Limits& limits = {});

}  // namespace brig::mcp::code_mode
