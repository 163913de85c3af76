// The MCP server core, transport-free: JSON-RPC messages in, responses out, notifications
// (progress) through a callback. Tools are clients of brig serve's API (client::ApiClient),
// acting as whoever the client authenticates as. Used by `brig mcp` (stdio) and by the
// daemon's /mcp endpoint (Streamable HTTP, stateless).
//
// Thread safety: one Server per connection or request; not shared.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>

#include "client/api_client.h"

namespace brig::mcp {

class Server {
 public:
  using Notify = std::function<void(const nlohmann::json&)>;
  // `stateless`: serve requests without a prior initialize (Streamable HTTP, no sessions).
  Server(client::ApiClient client, bool stateless, Notify notify);
  ~Server();
  // One JSON-RPC message in; the response to send, or null for a notification.
  nlohmann::json handle(const nlohmann::json& msg);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

bool supported_protocol_version(const std::string& v);

}  // namespace brig::mcp
