// The daemon's side of brig-egress (src/egress: the egress proxy and DNS stub that enforce domain
// rules). The service starts one when it opens, tells it the policy of each sandbox whose
// allowOut names domains (by the sandbox's address: the proxy knows a connection by its source),
// logs its decisions, and restarts it on the same ports should it end (policies are sent again).
// The sandbox's nat chain redirects its TCP and DNS to those ports (EgressPolicy::proxy_port,
// dns_stub_port); a sandbox without domains is not redirected and never meets the proxy.
//
// Thread safety: every method may be called from any thread. One thread (brig-egress-link)
// reads the proxy's events.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "config/config.h"
#include "egress/control.h"

namespace brig::core {

class EgressLink {
 public:
  struct Ports {
    uint16_t proxy = 0, dns = 0;
  };
  // Starts `exe egress` (the brig binary) listening on every address at ports the kernel picks,
  // with the configuration's [egress] settings, the sandbox range and every address of the host
  // denied, and waits until it serves.
  // `ca_cert`/`ca_key`: brig's CA (egress/tls.h), for header rules; empty: rules are not applied.
  // Upstream servers of rules are verified against config.network.ca_file.
  static Result<std::unique_ptr<EgressLink>> start(const std::string& exe, const config::Config& config,
                                                   const std::string& ca_cert = "", const std::string& ca_key = "");
  ~EgressLink();  // closes the channel (the proxy exits with it) and reaps the proxy

  Ports ports() const { return ports_; }
  // The whole policy of the sandbox whose connections come from `source` (host byte order), with
  // its header rules (secrets resolved: kept in memory to tell a restarted proxy, never logged).
  Result<> set(uint32_t source, const std::string& sandbox, const std::vector<std::string>& allow_out,
               const std::vector<std::string>& deny_out, const std::vector<egress::HeaderRule>& rules = {});
  Result<> remove(uint32_t source);
  uint64_t decisions() const;  // how many the proxy reported (for tests and metrics)
  // Called with each decision the proxy reports, on the link's reader thread.
  void on_decision(std::function<void(const egress::Decision&)> fn);

 private:
  struct Policy {
    std::string sandbox;
    std::vector<std::string> allow_out, deny_out;
    std::vector<egress::HeaderRule> rules;
  };
  EgressLink(std::string exe, std::vector<std::string> args) : exe_(std::move(exe)), args_(std::move(args)) {}
  Result<> launch(const std::string& listen, const std::string& dns_listen);  // mu_ held
  Result<> request(const std::string& line, uint64_t id);
  void read_loop();

  const std::string exe_;
  const std::vector<std::string> args_;  // after --listen/--dns-listen
  Ports ports_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  pid_t pid_ = -1;   // guarded by mu_
  Fd control_;       // guarded by mu_ (the reader reads it while it is open)
  uint64_t next_id_ = 1;
  std::set<uint64_t> waiting_;               // requests whose answer someone waits for
  struct Answer {
    std::string error;  // "": acknowledged
    bool lost = false;  // the proxy ended before it answered
  };
  std::map<uint64_t, Answer> answers_;
  std::map<uint32_t, Policy> policies_;      // what a restarted proxy is told again
  uint64_t decisions_ = 0;
  std::function<void(const egress::Decision&)> on_decision_;  // guarded by mu_
  bool stopping_ = false;
  std::thread reader_;
};

}  // namespace brig::core
