// A sandbox paused to its disk: no process runs (no brig-init, no cgroup, no network), only
// its registry row and its disk are kept, and resuming boots it again on that disk with the
// same id (Engine::resume). This handle stands for it meanwhile, so that it is listed, can be
// killed, and answers every other call with errc::conflict ("paused") instead of a crash.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "sandbox/backend.h"

namespace brig::sandbox {

class StoppedSandbox final : public SandboxHandle {
 public:
  // `release` frees what it still holds on the host (its disk) when it is killed.
  StoppedSandbox(SandboxRecord record, std::function<Result<>()> release)
      : record_(std::move(record)), release_(std::move(release)) {}

  const std::string& id() const override { return record_.id; }
  SandboxRecord record() const override { return record_; }
  CreateTrace create_trace() const override { return {}; }
  EventLoop* event_loop() override { return nullptr; }
  // It exists (as its disk) until it is killed or resumed.
  bool alive() override { return !destroyed_.load(); }
  Result<> destroy() override;
  Result<> stop() override { return ok(); }
  void detach() override {}
  Result<> on_gone(std::function<void()>) override { return ok(); }  // it never ends by itself
  Result<Usage> usage() override { return Usage{}; }
  std::optional<EgressPolicy> egress() const override { return std::nullopt; }

  Result<SpawnedProcess> spawn(const ProcessSpec&) override { return paused(); }
  Result<> signal(int, int, bool) override { return paused(); }
  Result<std::vector<ProcessInfo>> list_processes() override { return paused(); }
  Result<std::optional<ExitStatus>> wait_exit(int, std::chrono::milliseconds) override { return paused(); }
  Result<> on_exit(int, std::function<void(std::optional<ExitStatus>)>) override { return paused(); }
  Result<RunResult> run(const ProcessSpec&, const RunOptions&) override { return paused(); }
  Result<EntryInfo> stat(const std::string&, User) override { return paused(); }
  Result<std::vector<EntryInfo>> list_dir(const std::string&, uint32_t, User) override { return paused(); }
  Result<EntryInfo> make_dir(const std::string&, User) override { return paused(); }
  Result<EntryInfo> move(const std::string&, const std::string&, User) override { return paused(); }
  Result<> remove(const std::string&, User) override { return paused(); }
  Result<Fd> open_read(const std::string&, User, EntryInfo*) override { return paused(); }
  Result<Fd> open_write(const std::string&, User, uint32_t) override { return paused(); }
  Result<> set_metadata(const std::string&, User, const std::map<std::string, std::string>&) override { return paused(); }
  Result<std::string> read_file(const std::string&, User, size_t) override { return paused(); }
  Result<> write_file(const std::string&, std::string_view, User, uint32_t) override { return paused(); }
  Result<uint64_t> watch(const std::string&, bool, User) override { return paused(); }
  Result<> unwatch(uint64_t) override { return paused(); }
  std::vector<WatchEvent> take_watch_events(uint64_t, std::chrono::milliseconds) override { return {}; }
  Result<> on_watch_events(uint64_t, std::function<void()>) override { return paused(); }
  Result<Fd> open_kernels() override { return paused(); }
  Result<Fd> export_archive(const std::string&, User, const std::string&, uint64_t, uint32_t) override { return paused(); }
  Result<std::pair<Fd, Fd>> import_archive(const std::string&, User, const std::string&, uint64_t, uint32_t) override {
    return paused();
  }
  Result<Fd> connect_port(uint16_t, std::chrono::milliseconds) override { return paused(); }
  Result<> set_lifetime(std::chrono::milliseconds) override { return paused(); }
  Result<> set_env(const std::map<std::string, std::string>&) override { return paused(); }
  Result<> set_egress(const EgressPolicy&) override { return paused(); }
  Result<> set_frozen(bool) override { return paused(); }

 private:
  Error paused() const {
    return Error::make(errc::conflict, "sandbox '" + record_.id + "' is paused (its processes are stopped, its disk is "
                                       "kept): resume it first");
  }

  const SandboxRecord record_;
  std::function<Result<>()> release_;
  std::atomic<bool> destroyed_{false};
};

}  // namespace brig::sandbox
