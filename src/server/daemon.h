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

#include "sandbox/engine.h"
#include "mcp/server.h"
#include "server/http.h"
#include "server/keys.h"
#include "server/process_hub.h"
#include "store/template_store.h"

namespace brig::server {

struct DaemonOptions {
  ServerOptions http;
  std::string domain;        // for <port>-<id>.<domain> Hosts; empty = localhost:<listening port>
  size_t pool_size = 1;      // warm sandboxes per built template
};

// One live sandbox as the daemon knows it.
struct Live {
  std::shared_ptr<sandbox::Sandbox> sandbox;
  std::string id;
  std::string access_token;  // envdAccessToken
  // trafficAccessToken: derived from the envd token, so it needs no storage of its own.
  std::string traffic_token() const { return store::sha256_hex("brig-traffic|" + access_token).substr(0, 32); }
  store::TemplateInfo tpl;
  std::map<std::string, std::string> env;
  std::mutex mu;
  std::map<int, std::shared_ptr<ProcessHub>> processes;
  std::map<std::string, uint64_t> watchers;  // polling watchers: id -> watch id
  // The last CPU reading (guarded by mu): cpuUsedPct is the share of the sandbox's CPUs used
  // between two readings of its metrics (since its start, on the first).
  struct CpuSample {
    int64_t at_ms = 0;
    uint64_t used_ns = 0;
    double pct = 0;
  } cpu;
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

  friend struct Handlers;
 public:
  // Counters for /metrics.
  struct Metrics {
    std::atomic<uint64_t> creates{0}, create_errors{0}, execs{0}, bytes_streamed{0};
    std::mutex mu;
    std::map<std::string, uint64_t> errors_by_route;
    std::vector<double> create_ms_buckets = {5, 10, 25, 50, 100, 250, 500, 1000, 5000};
    std::vector<uint64_t> create_ms_counts = std::vector<uint64_t>(10, 0);
    double create_ms_sum = 0;
  } metrics_;
};

}  // namespace brig::server
