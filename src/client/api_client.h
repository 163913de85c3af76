// A small HTTP/1.1 client of a running `brig serve` (the CLI verbs, the MCP tools)
// (BRIG_URL, default http://127.0.0.1:49982; BRIG_API_KEY, else the local state dir's key).
#pragma once

#include <functional>
#include <map>
#include <string>

#include "base/result.h"

namespace brig::client {

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

class ApiClient {
 public:
  static Result<ApiClient> from_env(const std::string& state_dir);
  // A client of the daemon at http://HOST:PORT acting with `key`.
  static Result<ApiClient> to(const std::string& host_port, const std::string& key);
  Result<HttpResult> call(const std::string& method, const std::string& target, const std::string& body = "",
                          std::map<std::string, std::string> headers = {});
  // Streams the response body to `on_data` as it arrives (for Connect server streams).
  Result<int> stream(const std::string& method, const std::string& target, const std::string& body,
                     std::map<std::string, std::string> headers, const std::function<bool(std::string_view)>& on_data);
  // Headers that route a request to sandbox `id`'s envd, with its access token.
  Result<std::map<std::string, std::string>> envd_headers(const std::string& id);
  const std::string& url() const { return url_; }

 private:
  std::string host_, port_, url_, key_;
};

// "{"code":404,"message":"..."}" -> "... (HTTP 404)"
std::string api_error(const HttpResult& r);

}  // namespace brig::client
