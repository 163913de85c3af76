// MCP over Streamable HTTP, stateless: each POST carries one JSON-RPC message. The caller's key
// is checked here; the tools then call the core in process (server/mcp_backend.h), for what
// that key may do.
#include <nlohmann/json.hpp>

#include "base/util.h"
#include "server/daemon.h"
#include "server/mcp_backend.h"

namespace brig::server {
namespace {

using nlohmann::json;

}  // namespace

Route mcp_route(core::Service& core, const Request& head, mcp::Mode mode, std::shared_ptr<McpHost> host,
                std::shared_ptr<mcp::CancelRegistry> cancels) {
  Route r;
  auto rpc_error = [](int status, int code, const std::string& message) {
    return Response::json(status, dump({{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", {{"code", code}, {"message", message}}}}));
  };
  if (head.method != "POST") {
    r.respond = [rpc_error](Request&) {
      auto res = rpc_error(405, -32000, "Method not allowed: this MCP endpoint is stateless (POST only).");
      res.headers.emplace_back("Allow", "POST");
      return res;
    };
    return r;
  }
  const std::string key = api_key_of(head);
  if (!core.keys().valid(key)) {
    r.respond = [rpc_error](Request&) {
      auto res = rpc_error(401, -32000, "missing or invalid API key (Authorization: Bearer <key>)");
      res.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\", error_description=\"missing or invalid API key\"");
      return res;
    };
    return r;
  }
  std::string accept = head.header("accept");
  if (accept.find("application/json") == std::string::npos || accept.find("text/event-stream") == std::string::npos) {
    r.respond = [rpc_error](Request&) {
      return rpc_error(406, -32000, "Accept must list application/json and text/event-stream");
    };
    return r;
  }
  if (!head.header("content-type").starts_with("application/json")) {
    r.respond = [rpc_error](Request&) { return rpc_error(415, -32000, "Content-Type must be application/json"); };
    return r;
  }
  if (auto v = head.header("mcp-protocol-version"); !v.empty() && !mcp::supported_protocol_version(v)) {
    r.respond = [rpc_error, v](Request&) { return rpc_error(400, -32000, "unsupported MCP-Protocol-Version " + v.substr(0, 32)); };
    return r;
  }
  r.stream = [host, cancels, key, rpc_error, mode](Request& req, Stream& s) {
    auto msg = json::parse(req.body, nullptr, false);
    auto reply = [&](const Response& res) {
      s.begin(res.status, res.headers);
      s.write(res.body);
    };
    if (msg.is_discarded()) return reply(rpc_error(400, -32700, "parse error"));
    if (msg.is_array()) return reply(rpc_error(400, -32600, "batches are not supported"));
    if (!msg.is_object() || (msg.contains("id") && msg["id"].is_null()))
      return reply(rpc_error(400, -32600, "invalid JSON-RPC message"));
    // A caller's requests are known by its key (hashed) and request id, so its cancellation
    // reaches a tools/call running on another connection.
    const std::string scope = sha256_hex(key) + "|";
    if (!msg.contains("id") || !msg.contains("method")) {  // a notification or a response
      if (msg.value("method", "") == "notifications/cancelled" && msg.contains("params") && msg["params"].is_object() &&
          msg["params"].contains("requestId"))
        cancels->cancel(scope + msg["params"]["requestId"].dump());
      return reply(Response::empty(202));
    }
    bool sse = msg.contains("params") && msg["params"].is_object() && msg["params"].contains("_meta") &&
               msg["params"]["_meta"].is_object() && msg["params"]["_meta"].contains("progressToken");
    auto event = [](const json& j) { return "event: message\ndata: " + dump(j) + "\n\n"; };
    if (sse) s.begin(200, {{"Content-Type", "text/event-stream"}, {"Cache-Control", "no-cache"}});
    mcp::Server server(
        std::make_shared<InProcessBackend>(host, key), /*stateless=*/true, [&](const json& note) {
          if (sse) s.write(event(note));
        },
        cancels, scope, mode);
    json response = server.handle(msg);
    if (response.is_null()) {  // cancelled: nobody is waiting for an answer
      if (!sse) reply(Response::empty(202));
      return;
    }
    if (sse) s.write(event(response));
    else reply(Response::json(200, dump(response)));
  };
  return r;
}


}  // namespace brig::server
