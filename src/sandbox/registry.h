// Registry: what the engine knows about sandboxes, in SQLite (state_dir/brig.db), shared by
// every brig process on the host. It allocates uid-range slots atomically, so two processes
// creating sandboxes at once never hand out the same host uid range.
//
// Thread safety: all methods are serialised internally.
#pragma once

#include <sqlite3.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "sandbox/backend.h"
#include "sandbox/sandbox.h"

namespace brig::sandbox {

struct RegistryRow {
  SandboxInfo info;      // state here is the stored state ("creating" or "running")
  SandboxRecord record;
  std::string spec;      // spec_to_json of what it was created with ("" for rows older than it)
};

class Registry {
 public:
  static Result<std::unique_ptr<Registry>> open(const std::string& path);
  ~Registry();

  // Inserts a "creating" row and returns the lowest free uid-range slot. `spec` (spec_to_json)
  // is what a resume from its disk boots it with again.
  Result<uint32_t> insert_creating(const SandboxInfo& info, int owner_pid, const std::string& spec);
  Result<> mark_running(const SandboxRecord& record);
  Result<> set_end_at(const std::string& id, int64_t end_at_ms);
  // A running sandbox is paused with `left_ms` of its lifetime still to run, and back
  // (errc::conflict when it was not in the state the change starts from).
  Result<> set_paused(const std::string& id, int64_t left_ms);
  Result<> set_resumed(const std::string& id, int64_t end_at_ms);
  // A paused sandbox's processes are gone and only its disk is kept (`how`: disk or
  // memory_lost); it keeps its slot and row.
  Result<> set_stopped(const std::string& id, SandboxInfo::Paused how);
  // A sandbox paused to its disk runs again as `record` (booted again), until `end_at_ms`.
  Result<> set_rebooted(const SandboxRecord& record, int64_t end_at_ms);
  // Parks a running sandbox in the warm pool (hidden from listings) ...
  Result<> mark_pooled(const std::string& id);
  // A new brig process took over the sandbox's control channel.
  Result<> set_owner(const std::string& id, int owner_pid);
  // ... and hands it over: it becomes a running sandbox described by `info` and `spec`.
  Result<> assign(const SandboxInfo& info, const std::string& spec);
  Result<> remove(const std::string& id);
  Result<std::vector<RegistryRow>> all();
  Result<std::optional<RegistryRow>> get(const std::string& id);

 private:
  explicit Registry(sqlite3* db) : db_(db) {}
  Result<> exec(const char* sql);
  sqlite3* db_;
  std::mutex mu_;
};

}  // namespace brig::sandbox
