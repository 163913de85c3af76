// `brig serve`: the E2B-compatible daemon. One port for the control plane (by path) and the
// data plane (by E2b-Sandbox-Id + E2b-Sandbox-Port headers, or a <port>-<id>.<domain> Host).
// The daemon speaks envd's protocols itself and relays to each sandbox's brig-init.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json_fwd.hpp>

#include "config/config.h"
#include "sandbox/engine.h"
#include "mcp/server.h"
#include "server/http.h"
#include "server/keys.h"
#include "server/live.h"
#include "store/template_store.h"

namespace brig::server {

struct DaemonOptions {
  ServerOptions http;
  std::string domain;        // for <port>-<id>.<domain> Hosts; empty = localhost:<listening port>
  size_t pool_size = 1;      // warm sandboxes per built template
  config::Config config;     // every limit and default (the fields above are its [server] values)
};

class Daemon {
 public:
  static Result<std::unique_ptr<Daemon>> start(const DaemonOptions& options, sandbox::Engine& engine,
                                               store::TemplateStore& store, KeyStore& keys);
  ~Daemon();
  const std::string& address() const { return server_->address(); }
  // The domain of <port>-<id>.<domain> hosts (what E2B_DOMAIN should be), port included.
  const std::string& domain() const { return options_.domain; }
  void run();  // until stop()
  // Stops accepting and ends streams; sandboxes keep running for the next daemon to adopt.
  void stop();

 private:
  Daemon(DaemonOptions options, sandbox::Engine& engine, store::TemplateStore& store, KeyStore& keys);
  Route route(const Request& req);
  Route control_plane(const Request& req);
  Route mcp_route(const Request& req, mcp::Mode mode);
  Route data_plane(const Request& req, const std::string& id, int port);
  std::shared_ptr<Live> live(const std::string& id);
  void reap_loop();
  void adopt();
  void add_live(std::shared_ptr<Live> l);
  void forget(const std::string& id);
  void log(const Request& req, int status, double ms);
  // One SandboxMetric (E2B's shape) for a live sandbox, read now.
  nlohmann::json metric(Live& l);

  DaemonOptions options_;
  std::string domain_name_;  // options_.domain without its port
  sandbox::Engine& engine_;
  store::TemplateStore& store_;
  KeyStore& keys_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<DaemonState> state_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Live>> live_;
  std::atomic<bool> stopping_{false};
  std::thread reaper_;
  std::shared_ptr<mcp::CancelRegistry> mcp_cancels_ = std::make_shared<mcp::CancelRegistry>();
  Metrics metrics_;
};

}  // namespace brig::server
