// Backend: how sandboxes are made. The Linux backend (namespaces + cgroups + seccomp) is the
// only one today; a microVM backend can be added behind this boundary without touching the
// engine, the CLI or the API layers.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "sandbox/sandbox.h"

namespace brig::sandbox {

// What the engine's registry keeps of a sandbox to find its resources again after a restart.
struct SandboxRecord {
  std::string id;
  uint32_t slot = 0;       // uid range slot
  int init_pid = 0;        // host pid of brig-init
  uint64_t init_start = 0; // its start time (clock ticks since boot), against pid reuse
  int owner_pid = 0;       // the brig process holding its control channel
  int32_t net_index = -1;  // its own network's interface is bv<net_index>; -1: none
};

class SandboxHandle : public Sandbox {
 public:
  // Kills every process of the sandbox and releases everything it holds; idempotent.
  virtual Result<> destroy() = 0;
  // The same, but its disk is kept (unmounted, so written through) for a boot on it later: a
  // pause to disk. Afterwards the handle is as destroyed.
  virtual Result<> stop() = 0;
  virtual SandboxRecord record() const = 0;
  // Replaces the sandbox-wide environment (used when a pooled sandbox is handed over).
  virtual Result<> set_env(const std::map<std::string, std::string>& env) = 0;
  // Lets go of a persistent sandbox without killing it (it waits for the next brig process).
  virtual void detach() = 0;
  // Replaces the egress policy of a sandbox with its own network and cuts its open connections
  // that the new one denies (errc::conflict for a sandbox without one).
  virtual Result<> set_egress(const EgressPolicy& policy) = 0;
  // The policy it was created (or last set) with; nullopt when unknown (adopted) or none.
  virtual std::optional<EgressPolicy> egress() const = 0;
  // Freezes every process of the sandbox (brig-init too: its requests wait, and its lifetime
  // timer does not fire) or thaws them (the freezer cgroup). errc::unsupported without one.
  virtual Result<> set_frozen(bool frozen) = 0;
  // When the backend's own part of this sandbox's create ran (CLOCK_MONOTONIC ns, host-wide;
  // zero for an adopted sandbox): for traces, and for the test that proves creates overlap.
  struct CreateTrace {
    int64_t began_ns = 0;
    int64_t ready_ns = 0;
  };
  virtual CreateTrace create_trace() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Result<std::unique_ptr<SandboxHandle>> create(const std::string& id, uint32_t slot,
                                                        const SandboxSpec& spec) = 0;
  // Is the sandbox of `record` still running (on this host, under any brig process)?
  virtual bool is_alive(const SandboxRecord& record) = 0;
  // Reconnects to a persistent sandbox whose brig process is gone.
  virtual Result<std::unique_ptr<SandboxHandle>> adopt(const SandboxRecord& record) = 0;
  // Kills what a record names (when its owner is gone or another process asks).
  virtual Result<> kill(const SandboxRecord& record) = 0;
  // Releases host resources left by a sandbox whose processes are gone (cgroups, its network's
  // firewall objects, its disk unless `keep_disk`). `record` when the registry still has it,
  // else by id only.
  virtual Result<> release(const std::string& id, const SandboxRecord* record = nullptr, bool keep_disk = false) = 0;
  // Releases host resources no sandbox owns any more (firewall objects of interfaces that are
  // gone); best effort.
  virtual void sweep() = 0;
  // Names of host resources that exist for sandboxes (for orphan sweeps).
  virtual std::vector<std::string> list_resources() = 0;
  // Human-readable host facts for `brig doctor`.
  virtual std::vector<std::string> describe() = 0;
};

struct LinuxBackendOptions {
  std::string state_dir;
  // Where the sandboxes' control channels are read (exits pushed, see InitChannel); nullptr:
  // by the threads that wait on them. Must outlive the backend and its sandboxes.
  EventLoop* loop = nullptr;
  // Cold creates in flight at once (each a helper process of the zygote); 1..64.
  size_t max_parallel_creates = 8;
  config::Sandbox sandbox;  // max_lifetime_s
  config::Limits limits;    // metadata; brig-init's watches, contexts, archive unpacking
  config::Network network;  // the sandbox range and the DNS upstream of sandboxes with a network
};

// The cgroup group of a state directory: "brig/<12 hex of its real path>". Sandboxes of one
// state directory live under it; other brig installations never touch it.
std::string cgroup_group(const std::string& state_dir);

// Forks the zygote: call before the process starts any thread.
Result<std::unique_ptr<Backend>> make_linux_backend(const LinuxBackendOptions& options);

}  // namespace brig::sandbox
