// The MCP server core, transport-free: JSON-RPC messages in, responses out, notifications
// (progress) through a callback. Tools act through an mcp::Backend (mcp/backend.h): `brig mcp`
// (stdio) gives it a client of a daemon's API (RemoteBackend), the daemon's /mcp endpoint
// (Streamable HTTP, stateless) its core service in process.
//
// Thread safety: one Server per connection or request; not shared.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>
#include <nlohmann/json.hpp>

#include "mcp/backend.h"

namespace brig::mcp {

// The tools/call requests in flight, by "<scope><request id>", so notifications/cancelled
// (which may arrive on another connection, over HTTP) can stop them. Thread-safe.
// Two callers sharing a key can have calls with the same id in flight (every client numbers
// from 0): a cancellation that matches more than one call is ambiguous and stops none.
class CancelRegistry {
 public:
  std::shared_ptr<CancelToken> begin(const std::string& key);
  void end(const std::string& key, const std::shared_ptr<CancelToken>& token);
  void cancel(const std::string& key);

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<std::shared_ptr<CancelToken>>> live_;
};

// The default toolset (one tool per operation), or code mode (search / execute_read /
// execute_write over brig's own API, mcp/code_mode.h).
enum class Mode { tools, code };

class Server {
 public:
  using Notify = std::function<void(const nlohmann::json&)>;
  // `stateless`: serve requests without a prior initialize (Streamable HTTP, no sessions).
  // `scope` keeps callers apart in a shared `cancels` (e.g. a hash of the API key).
  Server(std::shared_ptr<Backend> backend, bool stateless, Notify notify, std::shared_ptr<CancelRegistry> cancels = nullptr,
         std::string scope = "", Mode mode = Mode::tools);
  ~Server();
  // One JSON-RPC message in; the response to send, or null for a notification or a request
  // that was cancelled (no response is sent for those). Calls may run concurrently.
  nlohmann::json handle(const nlohmann::json& msg);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

bool supported_protocol_version(const std::string& v);

}  // namespace brig::mcp
