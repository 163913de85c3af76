// core::Service: what brig does, with typed commands and results and no HTTP in sight
// (Firecracker's VmmAction is the model). The REST control plane, envd's Connect services, the
// code interpreter's port, MCP and the CLI are adapters over it: they parse their wire format,
// call one method, and render the result or turn the Error into their status through
// core/status.h.
//
// It owns the live sandboxes the daemon hands out (each a core::Live), their access tokens
// (kept across daemon restarts in the state dir), the processes started in them, and the
// counters /metrics shows. Lifecycle commands are in service.cc, processes in processes.cc,
// the filesystem in files.cc, code cells in code.cc.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <condition_variable>
#include <deque>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/config.h"
#include "core/keys.h"
#include "core/egress_link.h"
#include "core/live.h"
#include "core/network.h"
#include "core/sandbox_log.h"
#include "core/secrets.h"
#include "sandbox/engine.h"
#include "store/template_store.h"

namespace brig::core {

// ---- commands and results ------------------------------------------------------------------

struct CreateSandbox {
  std::string template_ref = "base";  // a name, name:tag or id; "team/name" takes the name
  std::optional<std::chrono::seconds> timeout;  // nullopt: sandbox.lifetime_s
  std::map<std::string, std::string> metadata;
  std::map<std::string, std::string> env;
  // E2B's allow_internet_access and network (allowOut/denyOut); each replaces its part of the
  // brig-wide default ([network]) when given.
  std::optional<bool> allow_internet_access;
  std::optional<NetworkConfig> network;  // its lists only
  Ingress ingress;
};

struct ListSandboxes {
  bool running = true, paused = true;           // E2B's state filter (both by default)
  std::map<std::string, std::string> metadata;  // every pair must match
  std::string template_name;                    // "" = any
  int64_t started_after_ms = 0;
  bool ascending = false;                       // by start time; newest first by default
  size_t limit = 100;
  size_t offset = 0;
};
struct SandboxPage {
  std::vector<sandbox::SandboxInfo> rows;
  std::optional<size_t> next_offset;  // set when more rows follow
};

// One reading of a sandbox's usage (E2B's SandboxMetric).
struct Metric {
  int64_t timestamp_ms = 0;  // unix
  uint32_t cpu_count = 1;
  double cpu_used_pct = 0;   // share of the sandbox's CPUs used since the previous reading
  uint64_t mem_used = 0, mem_total = 0, mem_cache = 0;
  uint64_t disk_used = 0, disk_total = 0;
};

// What /metrics (Prometheus) shows.
struct Counters {
  size_t running = 0, pooled = 0;
  uint64_t creates = 0, create_errors = 0, execs = 0, bytes_streamed = 0;
  std::vector<double> create_ms_buckets;
  std::vector<uint64_t> create_ms_counts;  // one more than buckets (the +Inf bucket)
  double create_ms_sum = 0;
  std::map<std::string, uint64_t> errors_by_route;
};

// A connection to one of a sandbox's ports, for the data plane (ports.cc).
struct OpenPort {
  uint16_t port = 0;          // 1..65535; not envd's (the daemon serves it)
  std::string traffic_token;  // the client's e2b-traffic-access-token header, "" if none
};
struct PortConnection {
  Fd socket;                        // connected to the port inside the sandbox
  std::optional<std::string> host;  // the Host header to send instead of the client's
  bool tls = false;                 // a port of Ingress::https_ports: speak TLS to it
};
// The data plane's name for the header a private sandbox's ports want (E2B's).
inline constexpr const char* kTrafficTokenHeader = "e2b-traffic-access-token";
inline constexpr uint16_t kEnvdPort = 49983;
inline constexpr uint16_t kInterpreterPort = 49999;  // the code interpreter's (the daemon serves it)
// A masked Host is a DNS name and a port (253 + 6 bytes) with room to spare.
inline constexpr size_t kMaxMaskRequestHostBytes = 512;
// httpsPorts: a few ports with servers of their own; a list longer than this is a mistake.
inline constexpr size_t kMaxHttpsPorts = 64;
// A create's ingress rules: a bounded mask of visible ASCII (it becomes a header value), and
// at most kMaxHttpsPorts https ports, none of them the ports the daemon serves itself.
Result<> validate_ingress(const Ingress& ingress);

// A process to start: what to run and, optionally, when to kill it (Connect-Timeout-Ms).
struct StartProcess {
  sandbox::ProcessSpec spec;  // cwd "" = the template's workdir
  std::optional<std::chrono::milliseconds> timeout;
};
// A process by pid, or by tag (the newest running one with that tag).
struct ProcessSelector {
  std::optional<int> pid;
  std::string tag;
};

// ---- the service ---------------------------------------------------------------------------

struct ServiceOptions {
  size_t pool_size = 1;  // warm sandboxes per built-in template that is built
  config::Config config;  // sandbox defaults and [limits]: each limit read from here only
  // The brig binary to start brig egress from (domain rules in allowOut); empty: none, and a
  // policy with domains is refused.
  std::string egress_exe;
};

class Service {
 public:
  // Adopts the sandboxes a previous daemon left running and starts the warm pools.
  static Result<std::unique_ptr<Service>> open(const ServiceOptions& options, sandbox::Engine& engine,
                                               store::TemplateStore& store, KeyStore& keys);
  ~Service();  // stops the reaper; sandboxes keep running for the next daemon

  KeyStore& keys() { return keys_; }
  // Secrets (/secrets): stored root-only, used at egress, redacted from output.
  SecretStore& secrets() { return *secrets_; }
  const config::Config& config() const { return options_.config; }
  store::TemplateStore& templates_store() { return store_; }

  // -- sandboxes (service.cc)
  Result<std::shared_ptr<Live>> create(const CreateSandbox& cmd);
  SandboxPage list(const ListSandboxes& query);
  // A running sandbox the daemon serves, or nullptr (also for an id that is not well formed).
  std::shared_ptr<Live> live(const std::string& id);
  Result<std::shared_ptr<Live>> find(const std::string& id);  // errc::not_found, worded for clients
  Result<sandbox::SandboxInfo> info(const std::string& id);
  Result<> kill(const std::string& id);
  Result<> set_timeout(const std::string& id, std::chrono::seconds timeout);
  // Extends the sandbox's life to at least now + timeout (nullopt: sandbox.lifetime_s); a
  // paused sandbox is resumed with it (`resumed` says so: E2B answers 201 then, 200 otherwise).
  struct Connected {
    std::shared_ptr<Live> live;
    bool resumed = false;
  };
  // `keep_memory` false (E2B's onResume 'reboot') boots a paused sandbox again on its disk, its
  // memory dropped.
  Result<Connected> connect(const std::string& id, std::optional<std::chrono::seconds> timeout, bool keep_memory = true);
  // Replaces the sandbox's whole egress configuration (omitted parts are cleared, as in E2B);
  // open connections the new one denies are cut. errc::conflict: it has no network of its own.
  Result<> update_network(const std::string& id, const NetworkConfig& network);
  // E2B's pause; the lifetime clock stops either way. With `keep_memory` (the default; the
  // engine's freezer): processes, kernels and open connections stay, frozen, using no CPU, also
  // across daemon restarts; errc::unavailable (503) when the paused sandboxes' memory would pass
  // sandbox.paused_memory_mib (it keeps running). Without (a filesystem pause): its processes
  // are stopped and its disk is kept, also across host restarts. errc::conflict when it is
  // paused already.
  Result<> pause(const std::string& id, bool keep_memory = true);
  // Resumes a paused sandbox with `timeout` to run (nullopt: the lifetime it had left): thawed
  // when it kept its memory, else booted again on its disk (same id, files as they were, the
  // template's start command run again). `keep_memory` false drops a kept memory and boots
  // it on its disk. A sandbox whose memory was lost while paused (host restart) is refused with
  // errc::conflict saying how to boot it from its disk: never silently rebooted. errc::conflict
  // when it is running.
  Result<std::shared_ptr<Live>> resume(const std::string& id, std::optional<std::chrono::seconds> timeout,
                                       bool keep_memory = true);
  // A paused sandbox is refused by everything that needs its processes: errc::conflict, said
  // as E2B says it. Adapters ask before they touch the sandbox.
  static Result<> check_running(const Live& l);
  Metric metric(Live& live);
  // The template id of a template name (the name itself when the store has none).
  std::string template_id(const std::string& name);
  Result<std::vector<store::TemplateInfo>> templates();
  Counters counters();
  void count_http_error(const std::string& route);
  void count_streamed(uint64_t bytes) { metrics_.bytes_streamed += bytes; }

  // -- logs (core/sandbox_log.h): a live sandbox's, or one of the most recently ended ones
  // (limits.ended_sandbox_logs); errc::not_found for any other id.
  Result<std::vector<LogEntry>> logs(const std::string& id, const LogQuery& q);

  // -- ports (ports.cc)
  // Checks the traffic token (a sandbox created with allow_public_traffic false), then connects
  // to the port on the sandbox's loopback, waiting at most server.port_connect_timeout_ms. A
  // missing or wrong token is EACCES (403), a closed port ECONNREFUSED (502), a listener that
  // does not accept ETIMEDOUT (504).
  Result<PortConnection> open_port(Live& live, const OpenPort& req);

  // -- processes (processes.cc)
  Result<std::shared_ptr<ProcessHub>> start_process(Live& live, StartProcess cmd);
  Result<std::shared_ptr<ProcessHub>> find_process(Live& live, const ProcessSelector& sel);
  std::vector<std::shared_ptr<ProcessHub>> running_processes(Live& live);
  Result<> send_input(Live& live, const ProcessSelector& sel, std::string_view data);
  Result<> send_signal(Live& live, const ProcessSelector& sel, int signal);  // SIGTERM or SIGKILL
  Result<> close_stdin(Live& live, const ProcessSelector& sel);
  Result<> resize_pty(Live& live, const ProcessSelector& sel, uint16_t rows, uint16_t cols);

  // -- filesystem (files.cc); paths resolve inside the sandbox as `user`
  Result<sandbox::EntryInfo> stat(Live& live, const std::string& path, sandbox::User user);
  Result<std::vector<sandbox::EntryInfo>> list_dir(Live& live, const std::string& path, uint32_t depth, sandbox::User user);
  Result<sandbox::EntryInfo> make_dir(Live& live, const std::string& path, sandbox::User user);
  Result<sandbox::EntryInfo> move(Live& live, const std::string& from, const std::string& to, sandbox::User user);
  Result<> remove(Live& live, const std::string& path, sandbox::User user);  // a missing path is fine
  // Polling watchers (CreateWatcher / GetWatcherEvents / RemoveWatcher).
  Result<std::string> create_watcher(Live& live, const std::string& path, bool recursive, sandbox::User user);
  Result<std::vector<sandbox::WatchEvent>> watcher_events(Live& live, const std::string& watcher_id);
  Result<> remove_watcher(Live& live, const std::string& watcher_id);
  // A streaming watch of a directory: the sandbox's watch id, to be given back to unwatch().
  Result<uint64_t> watch_dir(Live& live, const std::string& path, bool recursive, sandbox::User user);

 private:
  Service(ServiceOptions options, sandbox::Engine& engine, store::TemplateStore& store, KeyStore& keys);
  void reap_loop();
  void adopt();
  void add_live(std::shared_ptr<Live> l);
  // A new Live for sandbox `id` once the engine has put another handle in its place (stopped
  // to its disk, or booted again), replacing the one the daemon serves (only if that is
  // `expected`, when given): the same token, template, network and log, no processes. nullptr
  // when there is none (killed meanwhile) or it is not `expected`.
  std::shared_ptr<Live> relive(const std::string& id, bool paused, const Live* expected = nullptr);
  // Boots a paused sandbox again on its disk (Service::resume).
  Result<std::shared_ptr<Live>> boot(const std::shared_ptr<Live>& l, std::optional<std::chrono::milliseconds> lifetime);
  void forget(const std::string& id);
  // `l` left live_ (mu_ held): its log says why, and is kept among the ended ones.
  void retire_locked(const Live& l, std::string why);
  // A decision brig egress reported, in its sandbox's log.
  void log_decision(const egress::Decision& d);
  void record_create(double ms);
  Result<std::chrono::seconds> check_timeout(std::chrono::seconds t) const;

  ServiceOptions options_;
  sandbox::Engine& engine_;
  store::TemplateStore& store_;
  KeyStore& keys_;
  std::unique_ptr<DaemonState> state_;
  std::shared_ptr<SecretStore> secrets_;
  NetworkConfig default_network_;  // [network], checked at open
  TrustedCas trusted_cas_;         // [network] ca_file's layer, made at open
  std::unique_ptr<EgressLink> egress_;  // nullptr: domain rules cannot be enforced
  // What the firewall enforces for `c`: with domains, its TCP and DNS go to brig egress.
  Result<sandbox::EgressPolicy> policy_for(const NetworkConfig& c) const;
  // Header rules can be applied: sandboxes trust brig's CA, and every secret they name exists.
  Result<> check_rules_can_run(const NetworkConfig& c) const;
  std::vector<egress::HeaderRule> resolved_rules(const NetworkConfig& c) const;
  // A secret changed: every sandbox with header rules has them sent again, resolved anew.
  void retell_rules();
  // Tells brig egress the policy of `l` (under its network_mu), or forgets it when `c` has no
  // domains.
  Result<> tell_egress(Live& l, const NetworkConfig& c);
  void untell_egress(Live& l);
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Live>> live_;
  // The logs of the sandboxes that ended most recently, oldest first (guarded by mu_).
  std::deque<std::pair<std::string, std::shared_ptr<SandboxLog>>> ended_logs_;
  Metrics metrics_;
  // The reaper forgets sandboxes that ended by themselves (expired, or killed from inside): each
  // live sandbox's end is pushed from the event loop (Sandbox::on_gone), which wakes it; it also
  // sweeps every [server] reap_sweep_ms for what nobody reports. The loop's callbacks share the
  // waker, so one that fires after the Service is gone touches nothing of it.
  struct ReapWaker {
    std::mutex mu;
    std::condition_variable cv;
    bool due = false;
    bool stopping = false;
    void wake();
  };
  std::shared_ptr<ReapWaker> waker_ = std::make_shared<ReapWaker>();
  std::thread reaper_;
};


}  // namespace brig::core
