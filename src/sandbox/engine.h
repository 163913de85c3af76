// Engine: the sandbox lifecycle over a Backend and a registry (SQLite under the state dir).
// create / list / info / set_timeout / kill, and the reaper that cleans up after sandboxes
// that expired or whose brig process died.
//
// Thread safety: all methods are thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "sandbox/backend.h"
#include "sandbox/sandbox.h"

namespace brig::sandbox {

class Registry;
struct RegistryRow;

struct EngineOptions {
  std::string state_dir;    // created if missing; required (the CLI resolves the default)
  // The daemon's event loop: sandboxes' control channels are read there and process exits
  // pushed (Sandbox::on_exit). nullptr (brig run, the builder's CLI, tests): callers read the
  // channels themselves. Must outlive the engine and every sandbox it handed out; start it
  // after Engine::open (which forks the zygote before any thread exists).
  EventLoop* loop = nullptr;
  // Cold creates in flight at once; 1..64 (1 is one at a time, as before creates overlapped).
  size_t max_parallel_creates = 8;
  config::Sandbox sandbox;  // max_lifetime_s bounds creates and set_timeout
  config::Limits limits;    // env, metadata, and what brig-init keeps per sandbox
  config::Network network;  // sandboxes with their own network: the range, the DNS upstream
};

class Engine {
 public:
  // Forks the zygote, so call it before starting threads. Reaps what a crashed brig left.
  static Result<std::unique_ptr<Engine>> open(const EngineOptions& options);
  ~Engine();

  // A sandbox for `spec`: handed over from the warm pool when one of the same shape is
  // ready (then only its env, lifetime and metadata are applied), else created cold.
  Result<std::shared_ptr<Sandbox>> create(const SandboxSpec& spec);

  // Keeps `size` idle sandboxes of `shape`'s shape (root filesystem, limits, network) ready,
  // refilled in the background. size 0 removes the pool. Env, lifetime and metadata of
  // `shape` are ignored: they are applied at hand-over.
  void set_pool(const SandboxSpec& shape, size_t size);
  struct PoolStats {
    uint64_t hits = 0, misses = 0;
    size_t ready = 0;
  };
  PoolStats pool_stats();
  // The live sandbox owned by this process (for processes and files).
  Result<std::shared_ptr<Sandbox>> get(const std::string& id);
  std::vector<SandboxInfo> list();
  Result<SandboxInfo> info(const std::string& id);
  Result<> set_timeout(const std::string& id, std::chrono::milliseconds from_now);
  // Replaces the egress policy of a sandbox with its own network (see SandboxHandle::set_egress).
  Result<> set_egress(const std::string& id, const EgressPolicy& policy);
  // Pauses a running sandbox, and its lifetime clock stops (what it had left is kept in the
  // registry). With `keep_memory`, every process of it (brig-init too) is frozen, so it keeps
  // its memory, processes and open connections but uses no CPU (brig-init's own deadline is
  // moved out of the way first); this survives a restart of this process. Without, its
  // processes are stopped and only its disk is kept (SandboxInfo::Paused::disk), which
  // survives a restart of the host; reboot() boots it again. errc::conflict when it is not
  // running ("already paused"), errc::unsupported when the host has no freezer for it.
  Result<> pause(const std::string& id, bool keep_memory = true);
  // Thaws a memory-paused sandbox and gives it `lifetime` to run (nullopt: what it had left
  // when it was paused). errc::conflict when it is not paused, or when only its disk is left
  // (reboot it).
  Result<> resume(const std::string& id, std::optional<std::chrono::milliseconds> lifetime);
  // Boots a paused sandbox again on its disk, with its id, slot, spec and files as they were:
  // one paused to its disk, or one whose memory was lost; a memory-paused one has its memory
  // dropped first. `egress`: its network policy (nullopt: loopback only). The template's start
  // command is the caller's to run. errc::conflict when it is not paused.
  Result<> reboot(const std::string& id, std::optional<std::chrono::milliseconds> lifetime,
                  std::optional<EgressPolicy> egress);
  // Kills the sandbox and removes every trace of it (not_found if unknown).
  Result<> kill(const std::string& id);
  // Cleans up sandboxes that are gone (expired, crashed, owner died). Returns how many.
  size_t reap();
  // Takes over the persistent sandboxes whose brig process is gone; returns their ids.
  std::vector<std::string> adopt_orphans();
  // Lets go of every persistent sandbox without killing it (graceful daemon shutdown); the
  // others are killed as usual when the engine closes.
  void detach_persistent();

  Backend& backend() { return *backend_; }
  const std::string& state_dir() const { return state_dir_; }
  // The longest lifetime create() and set_timeout() accept (sandbox.max_lifetime_s).
  uint64_t max_lifetime_s() const { return sandbox_config_.max_lifetime_s; }

 private:
  Engine(EngineOptions options, std::unique_ptr<Backend> backend, std::unique_ptr<Registry> registry);
  Result<> cleanup(const std::string& id, const SandboxRecord* record = nullptr);
  // The row's info with its state checked against the live sandbox ("running" -> "dead").
  SandboxInfo describe(const RegistryRow& row);
  Result<std::shared_ptr<SandboxHandle>> create_cold(const SandboxSpec& spec, SandboxInfo info);
  Result<std::shared_ptr<SandboxHandle>> owned_handle(const std::string& id);
  // The registry row of a paused sandbox (the not-found and conflict errors of a resume).
  Result<RegistryRow> paused_row(const std::string& id);
  // Stops a paused sandbox's processes, keeping its disk (under transition_mu_), and puts a
  // StoppedSandbox in its place.
  Result<> stop_to_disk(const std::string& id, const std::shared_ptr<SandboxHandle>& handle, SandboxInfo::Paused how);
  void install_stopped(const SandboxRecord& record);
  std::shared_ptr<SandboxHandle> take_pooled(const std::string& key);
  void refill_loop();

  struct Pool {
    SandboxSpec shape;
    size_t size = 0;
    size_t creating = 0;  // refills under way
    std::deque<std::shared_ptr<SandboxHandle>> ready;
  };

  std::string state_dir_;
  config::Sandbox sandbox_config_;
  config::Limits limits_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Registry> registry_;
  std::mutex mu_;
  std::mutex transition_mu_;  // one pause or resume at a time (held across the freezer's wait)
  std::map<std::string, std::shared_ptr<SandboxHandle>> owned_;
  std::set<std::string> persistent_;  // owned ids created (or adopted) as persistent
  std::map<std::string, Pool> pools_;  // by shape key
  PoolStats stats_;
  std::condition_variable pool_cv_;
  // No refill starts before this while the pool still has a sandbox ready (see take_pooled).
  std::chrono::steady_clock::time_point refill_not_before_{};
  bool stopping_ = false;
  std::vector<std::thread> refillers_;
};

// Every program that opens an Engine calls this first thing in main(): the engine's zygote is
// the same program re-exec'd from a sealed copy, and in that process this runs the zygote and
// never returns. Otherwise it returns at once.
void run_zygote_if_requested(int argc, char** argv);

}  // namespace brig::sandbox
