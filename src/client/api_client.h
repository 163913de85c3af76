// A small HTTP/1.1 client of a running `brig serve` (the CLI verbs, the MCP tools). The CLI
// finds the daemon and the key in the configuration's [client] section.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <vector>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/wire.h"

namespace brig::client {

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// Cancels a streaming call from another thread: the call's socket is shut down, so a read
// blocked on a silent stream returns at once.
class CancelToken {
 public:
  void cancel();
  bool cancelled();
  void attach(int fd);  // the socket of the call in progress
  void detach();

 private:
  std::mutex mu_;
  bool cancelled_ = false;
  int fd_ = -1;
};

class ApiClient {
 public:
  // A client of the daemon at `url` (http://HOST:PORT) acting with `key`.
  static Result<ApiClient> connect(const std::string& url, const std::string& key);
  // A client of the daemon at http://HOST:PORT acting with `key`.
  static Result<ApiClient> to(const std::string& host_port, const std::string& key);
  // `max_body`: a longer response body is errc::limit_exceeded (read no further).
  Result<HttpResult> call(const std::string& method, const std::string& target, const std::string& body = "",
                          std::map<std::string, std::string> headers = {}, size_t max_body = 256u << 20);
  // Streams the response body to `on_data` as it arrives (for Connect server streams).
  // errc::conflict ("cancelled") when `cancel` fired.
  // `response_headers`, if given, receives the response's headers (lower-case names).
  Result<int> stream(const std::string& method, const std::string& target, const std::string& body,
                     std::map<std::string, std::string> headers, const std::function<bool(std::string_view)>& on_data,
                     CancelToken* cancel = nullptr, std::map<std::string, std::string>* response_headers = nullptr);
  // Headers that route a request to sandbox `id`'s envd, with its access token.
  Result<std::map<std::string, std::string>> envd_headers(const std::string& id);
  const std::string& url() const { return url_; }
  bool has_key() const { return !key_.empty(); }

 private:
  std::string host_, port_, url_, key_;
};

// One command through envd's process.Process/Start (Connect, JSON codec).
struct ExecRequest {
  std::string sandbox_id;
  std::string cmd;
  std::vector<std::string> args;
  std::string cwd;   // "" = the template's default
  std::string user;  // "" = the template's default
  std::map<std::string, std::string> env;
  int timeout_ms = 0;  // 0 = none (Connect-Timeout-Ms)
  bool stdin = false;  // a stdin pipe (write with process.Process/SendInput), else /dev/null
  // The sandbox's envdAccessToken, when the caller has it (from the create response): saves
  // the GET /sandboxes/ID that envd_headers() makes.
  std::string access_token;
  std::function<void(int pid)> on_start;
};
struct ExecResult {
  bool exited = false;  // false: killed by a signal or the stream ended early
  int exit_code = -1;   // when exited
  std::string status;   // the end event's, e.g. "exit status 1", "signal: killed"
  bool oom_killed = false;  // the kernel's OOM killer ended it
  std::string error;    // the stream's error message, if any
  std::string error_code;  // its Connect code (e.g. deadline_exceeded)
};
// Runs `req`, calling `on_output(is_stderr, bytes)` as output arrives. When `cancel` fires the
// process is killed (processes outlive their stream otherwise) and the result is errc::conflict.
Result<ExecResult> exec(ApiClient& api, const ExecRequest& req,
                        const std::function<void(bool is_stderr, std::string_view)>& on_output,
                        CancelToken* cancel = nullptr);

// GET /v2/sandboxes?<query> (up to 1000), each row with "usage" set to its latest
// SandboxMetric from GET /sandboxes/metrics (CPU %, memory in use), or null if it has none.
Result<nlohmann::json> list_sandboxes(ApiClient& api, const std::string& query = "");

// "{"code":404,"message":"..."}" -> "... (HTTP 404)"
std::string api_error(const HttpResult& r);

}  // namespace brig::client
