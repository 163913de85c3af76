// What the daemon's handlers share: the live sandboxes it serves and its counters. The
// control plane (daemon.cc), envd's data plane (envd.cc) and the code interpreter's
// (code_interpreter.cc) include this, not each other.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/util.h"
#include "sandbox/sandbox.h"
#include "core/network.h"
#include "core/ingress.h"
#include "core/secrets.h"
#include "core/process_hub.h"
#include "core/sandbox_log.h"
#include "store/template_store.h"

namespace brig::core {

// One live sandbox as the daemon knows it.
struct Live {
  std::shared_ptr<sandbox::Sandbox> sandbox;
  std::string id;
  std::string access_token;  // envdAccessToken
  // trafficAccessToken: derived from the envd token, so it needs no storage of its own.
  std::string traffic_token() const { return sha256_hex("brig-traffic|" + access_token).substr(0, 32); }
  store::TemplateInfo tpl;
  std::map<std::string, std::string> env;
  Ingress ingress;
  std::mutex mu;
  NetworkConfig network;  // its egress configuration as given (guarded by mu)
  std::mutex network_mu;  // held while its network policy changes
  // The address brig egress knows it by, while its allowOut has domains (guarded by network_mu).
  std::optional<uint32_t> proxied;
  std::map<int, std::shared_ptr<ProcessHub>> processes;
  // Whose values are redacted from its output (processes, code cells); set when it goes live.
  std::shared_ptr<SecretStore> secrets;
  std::map<std::string, uint64_t> watchers;  // polling watchers: id -> watch id
  std::shared_ptr<SandboxLog> log;  // set when it goes live
  // Paused (Service::pause): its processes are frozen, so nothing that needs brig-init or a
  // port of it is served until it resumes.
  std::atomic<bool> paused{false};
  // The last CPU reading (guarded by mu): cpuUsedPct is the share of the sandbox's CPUs used
  // between two readings of its metrics (since the hand-over, on the first).
  struct CpuSample {
    int64_t at_ms = 0;  // steady clock
    uint64_t used_ns = 0;
    double pct = 0;
  } cpu;
};

// Counters for /metrics.
struct Metrics {
  std::atomic<uint64_t> creates{0}, create_errors{0}, execs{0}, bytes_streamed{0};
  std::mutex mu;
  std::map<std::string, uint64_t> errors_by_route;
  std::vector<double> create_ms_buckets = {5, 10, 25, 50, 100, 250, 500, 1000, 5000};
  std::vector<uint64_t> create_ms_counts = std::vector<uint64_t>(10, 0);
  double create_ms_sum = 0;
};

}  // namespace brig::core
