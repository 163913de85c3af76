// `brig serve`: the E2B-compatible daemon. One port for the control plane (by path) and the
// data plane (by E2b-Sandbox-Id + E2b-Sandbox-Port headers, or a <port>-<id>.<domain> Host).
// It owns the HTTP server and the core service; every route is an adapter over the core:
// rest/ (the control plane), envd/ (port 49983), code_interpreter (port 49999), mcp_http (MCP
// over Streamable HTTP, calling the core in process).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "base/event_loop.h"
#include "config/config.h"
#include "core/service.h"
#include "mcp/server.h"
#include "server/http.h"
#include "server/mcp_backend.h"
#include "server/tls_bridge.h"

namespace brig::server {

struct DaemonOptions {
  ServerOptions http;
  std::string domain;        // for <port>-<id>.<domain> Hosts; empty = localhost:<listening port>
  size_t pool_size = 1;      // warm sandboxes per built template
  // The daemon's event loop, shared with the engine (EngineOptions::loop) so that sockets,
  // control channels and process pipes are all read on it; it must outlive the daemon. Null:
  // the daemon runs a loop of its own for HTTP.
  EventLoop* loop = nullptr;
  config::Config config;     // every limit and default (the fields above are its [server] values)
  std::string egress_exe;    // ServiceOptions::egress_exe: the brig binary, for brig egress
};

class Daemon {
 public:
  static Result<std::unique_ptr<Daemon>> start(const DaemonOptions& options, sandbox::Engine& engine,
                                               store::TemplateStore& store, core::KeyStore& keys);
  ~Daemon();
  const std::string& address() const { return server_->address(); }
  // The domain of <port>-<id>.<domain> hosts (what E2B_DOMAIN should be), port included.
  const std::string& domain() const { return options_.domain; }
  core::Service& core() { return *core_; }
  // What the MCP it hosts acts through (server/mcp_backend.h).
  const std::shared_ptr<McpHost>& mcp_host() const { return mcp_host_; }
  void run();  // until stop()
  // Stops accepting and ends streams; sandboxes keep running for the next daemon to adopt.
  void stop();

 private:
  explicit Daemon(DaemonOptions options) : options_(std::move(options)) {}
  Route route(const Request& req);
  Route pick_route(const Request& req);
  Route control_plane(const Request& req);
  // `by_headers`: routed by E2b-Sandbox-Id/-Port rather than by a <port>-<id>.<domain> Host.
  Route data_plane(const Request& req, const std::string& id, const std::string& port, bool by_headers);
  void log(const Request& req, int status, double ms);

  DaemonOptions options_;
  std::string domain_name_;  // options_.domain without its port
  // The loop: the one given in the options, else the daemon's own (declared before server_:
  // it outlives it).
  std::unique_ptr<EventLoop> own_loop_;
  EventLoop* loop_ = nullptr;
  std::unique_ptr<core::Service> core_;
  std::unique_ptr<HttpServer> server_;
  std::atomic<bool> stopping_{false};
  std::shared_ptr<mcp::CancelRegistry> mcp_cancels_ = std::make_shared<mcp::CancelRegistry>();
  std::shared_ptr<McpHost> mcp_host_;  // the core and router the hosted MCP uses, until stop()
  // The TLS client context of the data plane's bridges to httpsPorts (server/tls_bridge.h).
  std::shared_ptr<boost::asio::ssl::context> tls_bridge_ctx_ = tls_bridge_context();
};

// The caller's API key: X-API-KEY (E2B clients), else Authorization: Bearer (everyone else).
std::string api_key_of(const Request& req);

// MCP over Streamable HTTP (mcp_http.cc), stateless: one JSON-RPC message per POST.
Route mcp_route(core::Service& core, const Request& head, mcp::Mode mode, std::shared_ptr<McpHost> host,
                std::shared_ptr<mcp::CancelRegistry> cancels);

}  // namespace brig::server
