#include "sandbox/engine.h"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <optional>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "sandbox/registry.h"
#include "sandbox/stopped.h"

namespace brig::sandbox {
namespace {

bool process_exists(int pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

Result<> make_dirs(const std::string& path, mode_t mode) {
  std::string cur;
  for (auto& part : split(path, '/')) {
    if (part.empty()) continue;
    cur += "/" + part;
    if (::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) return Error::from_errno(errno, "mkdir(" + cur + ")");
  }
  return ok();
}

}  // namespace


Engine::Engine(EngineOptions options, std::unique_ptr<Backend> backend, std::unique_ptr<Registry> registry)
    : state_dir_(std::move(options.state_dir)),
      sandbox_config_(options.sandbox),
      limits_(options.limits),
      backend_(std::move(backend)),
      registry_(std::move(registry)) {}

Engine::~Engine() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  pool_cv_.notify_all();
  for (auto& t : refillers_) t.join();
  std::map<std::string, std::shared_ptr<SandboxHandle>> owned;
  std::map<std::string, Pool> pools;
  {
    std::lock_guard lock(mu_);
    owned.swap(owned_);
    pools.swap(pools_);
  }
  for (auto& [id, handle] : owned) {
    (void)handle->destroy();
    (void)registry_->remove(id);
  }
  for (auto& [key, pool] : pools)
    for (auto& handle : pool.ready) {
      (void)handle->destroy();
      (void)registry_->remove(handle->id());
    }
}

namespace {

// Sandboxes with equal keys are interchangeable before hand-over.
std::string shape_key(const SandboxSpec& s) {
  std::string key = s.rootfs;
  for (auto& l : s.layers) key += "|" + l;
  key += "|" + std::to_string(s.memory_bytes) + "|" + std::to_string(s.cpu_millis) + "|" + std::to_string(s.pids) +
         "|" + std::to_string(s.disk_bytes) + "|" + std::to_string(s.shm_bytes) + "|" +
         (s.host_network ? "host" : s.egress ? "veth" : "lo") +
         "|" + s.upper_dir + (s.persistent ? "|persistent" : "");
  for (auto& k : s.kernels) key += "|kernel:" + k;
  return key;
}

constexpr std::chrono::hours kPooledLifetime{1};
constexpr std::chrono::milliseconds kRefillDelay{50};
// Cold creates the warm pools run at once: a create with a network spends most of its time
// waiting for the kernel (RCU grace periods: cgroup v1 attach, interfaces), so two overlap
// well, and refills keep up with back-to-back hand-overs.
constexpr size_t kRefillers = 2;

}  // namespace

Result<std::unique_ptr<Engine>> Engine::open(const EngineOptions& options) {
  if (options.state_dir.empty()) return Error::make(errc::invalid_argument, "no state directory given");
  const std::string dir = options.state_dir;
  BRIG_TRY(make_dirs(dir, 0700));
  // A process that exits while we write its stdin must be an EPIPE, not the end of brig.
  ::signal(SIGPIPE, SIG_IGN);
  // The backend first: it forks the zygote, which must happen before the registry opens
  // files or anything starts a thread.
  BRIG_TRY_ASSIGN(backend, make_linux_backend({.state_dir = dir,
                                                .loop = options.loop,
                                                .max_parallel_creates = options.max_parallel_creates,
                                                .sandbox = options.sandbox,
                                                .limits = options.limits,
                                                .network = options.network}));
  BRIG_TRY_ASSIGN(registry, Registry::open(dir + "/brig.db"));
  std::unique_ptr<Engine> engine(new Engine(options, std::move(backend), std::move(registry)));
  if (size_t n = engine->reap()) spdlog::info("reaped {} sandbox(es) left by an earlier brig process", n);
  return engine;
}

Result<std::shared_ptr<Sandbox>> Engine::create(const SandboxSpec& spec) {
  BRIG_TRY(validate(spec, sandbox_config_, limits_));
  SandboxInfo info;
  info.template_name = spec.template_name;
  info.started_at_ms = now_unix_ms();
  info.end_at_ms = info.started_at_ms + spec.lifetime.count();
  info.memory_bytes = spec.memory_bytes;
  info.cpu_millis = spec.cpu_millis;
  info.disk_bytes = spec.disk_bytes;
  info.metadata = spec.metadata;
  info.env = spec.env;

  // A warm sandbox of this shape: apply what is per-sandbox and hand it over.
  if (auto handle = take_pooled(shape_key(spec))) {
    info.id = handle->id();
    Result<> r = registry_->assign(info, spec_to_json(spec));
    // The pool's sandboxes start with the pool shape's policy; another one is set before the
    // sandbox is handed out (its open connections are the pool's own: none of the caller's).
    if (r && spec.egress && handle->egress() != spec.egress) r = handle->set_egress(*spec.egress);
    if (r && !spec.env.empty()) r = handle->set_env(spec.env);
    if (r) r = handle->set_lifetime(spec.lifetime);
    if (r) {
      std::lock_guard lock(mu_);
      owned_[info.id] = handle;
      if (spec.persistent) persistent_.insert(info.id);
      return std::shared_ptr<Sandbox>(handle);
    }
    (void)handle->destroy();
    (void)registry_->remove(info.id);
  }
  BRIG_TRY_ASSIGN(handle, create_cold(spec, std::move(info)));
  std::lock_guard lock(mu_);
  owned_[handle->id()] = handle;
  if (spec.persistent) persistent_.insert(handle->id());
  return std::shared_ptr<Sandbox>(handle);
}

Result<std::shared_ptr<SandboxHandle>> Engine::create_cold(const SandboxSpec& spec, SandboxInfo info) {
  info.id = new_sandbox_id();
  BRIG_TRY_ASSIGN(slot, registry_->insert_creating(info, static_cast<int>(::getpid()), spec_to_json(spec)));
  auto handle = backend_->create(info.id, slot, spec);
  if (!handle) {
    (void)registry_->remove(info.id);
    return handle.error();
  }
  std::shared_ptr<SandboxHandle> shared(std::move(*handle));
  if (auto r = registry_->mark_running(shared->record()); !r) {
    (void)shared->destroy();
    (void)registry_->remove(info.id);
    return r.error();
  }
  return shared;
}

std::shared_ptr<SandboxHandle> Engine::take_pooled(const std::string& key) {
  std::shared_ptr<SandboxHandle> handle;
  {
    std::lock_guard lock(mu_);
    auto it = pools_.find(key);
    if (it == pools_.end()) return nullptr;
    while (!it->second.ready.empty() && !handle) {
      handle = std::move(it->second.ready.front());
      it->second.ready.pop_front();
      if (!handle->alive()) {
        (void)handle->destroy();
        (void)registry_->remove(handle->id());
        handle.reset();
      }
    }
    if (handle) ++stats_.hits;
    else ++stats_.misses;
    // The sandbox just handed over is about to run its first command: a cold create started
    // now would compete with it for the CPU. While another sandbox is ready the refill waits
    // a little; an empty pool is refilled at once.
    if (handle && !it->second.ready.empty()) refill_not_before_ = std::chrono::steady_clock::now() + kRefillDelay;
  }
  pool_cv_.notify_all();
  return handle;
}

void Engine::set_pool(const SandboxSpec& shape, size_t size) {
  std::vector<std::shared_ptr<SandboxHandle>> drop;
  {
    std::lock_guard lock(mu_);
    std::string key = shape_key(shape);
    if (size == 0) {
      if (auto it = pools_.find(key); it != pools_.end()) {
        drop.assign(it->second.ready.begin(), it->second.ready.end());
        pools_.erase(it);
      }
    } else {
      auto& pool = pools_[key];
      pool.shape = shape;
      pool.shape.env.clear();
      pool.shape.metadata.clear();
      pool.shape.template_name = "(pool)";
      pool.shape.lifetime = kPooledLifetime;
      pool.size = size;
      while (refillers_.size() < kRefillers) refillers_.emplace_back([this] { refill_loop(); });
    }
  }
  for (auto& h : drop) {
    (void)h->destroy();
    (void)registry_->remove(h->id());
  }
  pool_cv_.notify_all();
}

Engine::PoolStats Engine::pool_stats() {
  std::lock_guard lock(mu_);
  PoolStats s = stats_;
  for (auto& [key, pool] : pools_) s.ready += pool.ready.size();
  return s;
}

void Engine::refill_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    // The first pool short of its size (counting the creates under way) gets one more
    // sandbox; creates happen unlocked, up to kRefillers at once.
    std::optional<std::pair<std::string, SandboxSpec>> want;
    for (auto& [key, pool] : pools_)
      if (pool.ready.size() + pool.creating < pool.size) {
        want.emplace(key, pool.shape);
        break;
      }
    if (!want) {
      pool_cv_.wait_for(lock, std::chrono::seconds(5));
      continue;
    }
    if (auto now = std::chrono::steady_clock::now(); now < refill_not_before_ && !pools_.at(want->first).ready.empty()) {
      pool_cv_.wait_until(lock, refill_not_before_);
      continue;
    }
    ++pools_.at(want->first).creating;
    lock.unlock();
    SandboxInfo info;
    info.template_name = want->second.template_name;
    info.memory_bytes = want->second.memory_bytes;
    info.cpu_millis = want->second.cpu_millis;
    info.disk_bytes = want->second.disk_bytes;
    info.started_at_ms = now_unix_ms();
    info.end_at_ms = info.started_at_ms + want->second.lifetime.count();
    auto handle = create_cold(want->second, info);
    if (handle && !registry_->mark_pooled((*handle)->id())) {
      (void)(*handle)->destroy();
      (void)registry_->remove((*handle)->id());
      handle = Error::make(errc::protocol, "registry");
    }
    lock.lock();
    auto it = pools_.find(want->first);
    if (it != pools_.end() && it->second.creating) --it->second.creating;
    if (!handle) {
      spdlog::warn("warm pool: {}", handle.error().message());
      pool_cv_.wait_for(lock, std::chrono::seconds(1));  // do not spin on a persistent failure
    } else if (it == pools_.end() || stopping_) {
      lock.unlock();
      (void)(*handle)->destroy();
      (void)registry_->remove((*handle)->id());
      lock.lock();
    } else {
      it->second.ready.push_back(std::move(*handle));
    }
  }
}

Result<std::shared_ptr<Sandbox>> Engine::get(const std::string& id) {
  {
    std::lock_guard lock(mu_);
    if (auto it = owned_.find(id); it != owned_.end()) return std::shared_ptr<Sandbox>(it->second);
  }
  BRIG_TRY_ASSIGN(row, registry_->get(id));
  if (!row) return Error::make(errc::not_found, "sandbox '" + id + "' not found");
  return Error::make(errc::conflict, "sandbox '" + id + "' belongs to brig process " +
                                         std::to_string(row->record.owner_pid));
}

SandboxInfo Engine::describe(const RegistryRow& row) {
  SandboxInfo info = row.info;
  std::shared_ptr<SandboxHandle> handle;
  {
    std::lock_guard lock(mu_);
    if (auto it = owned_.find(info.id); it != owned_.end()) handle = it->second;
  }
  // Paused to its disk, it has no process: its disk is what is left of it, until resumed.
  if (info.state == "paused" && info.paused != SandboxInfo::Paused::memory) return info;
  bool alive = handle ? handle->alive() : backend_->is_alive(row.record);
  // A paused one whose processes died stays paused: the reaper keeps its disk (memory_lost).
  if (info.state == "running" && !alive) info.state = "dead";
  return info;
}

std::vector<SandboxInfo> Engine::list() {
  std::vector<SandboxInfo> out;
  auto rows = registry_->all();
  if (!rows) return out;
  for (auto& row : *rows)
    if (row.info.state != "pooled") out.push_back(describe(row));  // idle pool members are no one's yet
  return out;
}

Result<SandboxInfo> Engine::info(const std::string& id) {
  BRIG_TRY_ASSIGN(row, registry_->get(id));
  if (!row || row->info.state == "pooled") return Error::make(errc::not_found, "sandbox '" + id + "' not found");
  return describe(*row);
}

Result<> Engine::set_timeout(const std::string& id, std::chrono::milliseconds from_now) {
  if (from_now < std::chrono::seconds(1) || from_now > std::chrono::seconds(sandbox_config_.max_lifetime_s))
    return Error::make(errc::invalid_argument,
                       "timeout must be between 1 and " + std::to_string(sandbox_config_.max_lifetime_s) + " seconds");
  // A paused sandbox's brig-init is frozen and would not answer; its timeout is set when it
  // resumes.
  if (auto row = registry_->get(id); row && *row && (*row)->info.state == "paused")
    return Error::make(errc::conflict, "sandbox '" + id + "' is paused: resume it first");
  BRIG_TRY_ASSIGN(sandbox, get(id));
  BRIG_TRY(sandbox->set_lifetime(from_now));
  return registry_->set_end_at(id, now_unix_ms() + from_now.count());
}

namespace {
// A paused sandbox's brig-init keeps a deadline this far off: its timer cannot fire while it is
// frozen, and the real one is set the moment it is thawed. (brig-init takes 32-bit ms.)
constexpr std::chrono::milliseconds kPausedDeadline = std::chrono::hours(24 * 45);
}  // namespace

Result<std::shared_ptr<SandboxHandle>> Engine::owned_handle(const std::string& id) {
  std::lock_guard lock(mu_);
  if (auto it = owned_.find(id); it != owned_.end()) return it->second;
  return Error::make(errc::not_found, "sandbox '" + id + "' is not one of this process's");
}

Result<> Engine::pause(const std::string& id, bool keep_memory) {
  std::lock_guard transition(transition_mu_);
  BRIG_TRY_ASSIGN(row, registry_->get(id));
  if (!row || row->info.state == "pooled") return Error::make(errc::not_found, "sandbox '" + id + "' not found");
  if (row->info.state == "paused") return Error::make(errc::conflict, "sandbox '" + id + "' is already paused");
  if (row->info.state != "running")
    return Error::make(errc::conflict, "sandbox '" + id + "' cannot be paused while in '" + row->info.state + "' state");
  BRIG_TRY_ASSIGN(handle, owned_handle(id));
  const auto left = std::chrono::milliseconds(std::max<int64_t>(1000, row->info.end_at_ms - now_unix_ms()));
  if (!keep_memory) {
    if (row->spec.empty())
      return Error::make(errc::unsupported, "sandbox '" + id + "' was made by an older brig that kept no spec to boot "
                                            "it again from: pause it with its memory");
    BRIG_TRY(registry_->set_paused(id, left.count()));
    return stop_to_disk(id, handle, SandboxInfo::Paused::disk);
  }
  BRIG_TRY(handle->set_lifetime(kPausedDeadline));
  auto undo = [&](Error e) {
    (void)handle->set_frozen(false);
    (void)handle->set_lifetime(left);
    return e.wrap("pause sandbox " + id);
  };
  if (auto r = handle->set_frozen(true); !r) return undo(r.error());
  if (auto r = registry_->set_paused(id, left.count()); !r) return undo(r.error());
  return ok();
}

Result<> Engine::resume(const std::string& id, std::optional<std::chrono::milliseconds> lifetime) {
  std::lock_guard transition(transition_mu_);
  BRIG_TRY_ASSIGN(row, paused_row(id));
  if (row.info.paused != SandboxInfo::Paused::memory)
    return Error::make(errc::conflict, "sandbox '" + id + "' has no memory to resume: only its disk is kept");
  BRIG_TRY_ASSIGN(handle, owned_handle(id));
  const auto max = std::chrono::milliseconds(std::chrono::seconds(sandbox_config_.max_lifetime_s));
  const auto left = std::clamp(lifetime.value_or(std::chrono::milliseconds(row.info.paused_left_ms)),
                               std::chrono::milliseconds(1000), max);
  BRIG_TRY(handle->set_frozen(false));
  // Thawed, brig-init answers: its real deadline first. Should that fail, the sandbox is
  // frozen again rather than left running with the far one.
  if (auto r = handle->set_lifetime(left); !r) {
    (void)handle->set_frozen(true);
    return r.error().wrap("resume sandbox " + id);
  }
  return registry_->set_resumed(id, now_unix_ms() + left.count());
}

Result<RegistryRow> Engine::paused_row(const std::string& id) {
  BRIG_TRY_ASSIGN(row, registry_->get(id));
  if (!row || row->info.state == "pooled") return Error::make(errc::not_found, "sandbox '" + id + "' not found");
  if (row->info.state == "running") return Error::make(errc::conflict, "sandbox '" + id + "' is already running");
  if (row->info.state != "paused")
    return Error::make(errc::conflict, "sandbox '" + id + "' cannot be resumed while in '" + row->info.state + "' state");
  return std::move(*row);
}

Result<> Engine::stop_to_disk(const std::string& id, const std::shared_ptr<SandboxHandle>& handle,
                              SandboxInfo::Paused how) {
  auto stopped = handle->stop();
  // Whatever stop() says, its processes are gone or going: the row and the handle say so.
  BRIG_TRY(registry_->set_stopped(id, how));
  BRIG_TRY_ASSIGN(row, registry_->get(id));
  if (!row) return Error::make(errc::not_found, "sandbox '" + id + "' not found");
  install_stopped(row->record);
  if (!stopped) return stopped.error().wrap("stop sandbox " + id + " (its disk is kept)");
  return ok();
}

void Engine::install_stopped(const SandboxRecord& record) {
  auto stopped = std::make_shared<StoppedSandbox>(
      record, [backend = backend_.get(), id = record.id] { return backend->release(id, nullptr); });
  std::lock_guard lock(mu_);
  owned_[record.id] = std::move(stopped);
}

Result<> Engine::reboot(const std::string& id, std::optional<std::chrono::milliseconds> lifetime,
                        std::optional<EgressPolicy> egress) {
  std::lock_guard transition(transition_mu_);
  BRIG_TRY_ASSIGN(row, paused_row(id));
  if (row.spec.empty())
    return Error::make(errc::unsupported, "sandbox '" + id + "' was made by an older brig that kept no spec to boot it "
                                          "again from");
  BRIG_TRY_ASSIGN(spec, spec_from_json(row.spec));
  if (row.info.paused == SandboxInfo::Paused::memory) {  // frozen: its memory is dropped now
    BRIG_TRY_ASSIGN(handle, owned_handle(id));
    BRIG_TRY(stop_to_disk(id, handle, SandboxInfo::Paused::disk));
  }
  const auto max = std::chrono::milliseconds(std::chrono::seconds(sandbox_config_.max_lifetime_s));
  spec.lifetime = std::clamp(lifetime.value_or(std::chrono::milliseconds(row.info.paused_left_ms)),
                             std::chrono::milliseconds(1000), max);
  spec.egress = std::move(egress);
  spec.existing_disk = true;
  auto made = backend_->create(id, row.record.slot, spec);
  if (!made) return made.error().wrap("boot sandbox " + id + " again on its disk");
  std::shared_ptr<SandboxHandle> handle(std::move(*made));
  if (auto r = registry_->set_rebooted(handle->record(), now_unix_ms() + spec.lifetime.count()); !r) {
    (void)handle->stop();
    return r.error().wrap("boot sandbox " + id + " again on its disk");
  }
  std::lock_guard lock(mu_);
  owned_[id] = std::move(handle);
  return ok();
}

Result<> Engine::set_egress(const std::string& id, const EgressPolicy& policy) {
  std::shared_ptr<SandboxHandle> handle;
  {
    std::lock_guard lock(mu_);
    if (auto it = owned_.find(id); it != owned_.end()) handle = it->second;
  }
  if (!handle) BRIG_TRY(get(id));  // the not-found or belongs-to-another-process error
  if (!handle) return Error::make(errc::not_found, "sandbox '" + id + "' not found");
  return handle->set_egress(policy);
}

Result<> Engine::kill(const std::string& id) {
  // Not in the middle of a pause, resume or boot of it (a boot mounts the disk a kill deletes).
  std::lock_guard transition(transition_mu_);
  BRIG_TRY_ASSIGN(row, registry_->get(id));
  bool owned;
  {
    std::lock_guard lock(mu_);
    owned = owned_.count(id) > 0;
  }
  if (!row && !owned) return Error::make(errc::not_found, "sandbox '" + id + "' not found");
  if (row && !owned) BRIG_TRY(backend_->kill(row->record));
  return cleanup(id, row ? &row->record : nullptr);
}

Result<> Engine::cleanup(const std::string& id, const SandboxRecord* record) {
  std::shared_ptr<SandboxHandle> handle;
  {
    std::lock_guard lock(mu_);
    if (auto it = owned_.find(id); it != owned_.end()) {
      handle = it->second;
      owned_.erase(it);
    }
  }
  {
    std::lock_guard lock(mu_);
    persistent_.erase(id);
  }
  Result<> result = ok();
  if (handle) result = handle->destroy();
  else result = backend_->release(id, record);
  if (!result) return result.error().wrap("clean up sandbox " + id);
  return registry_->remove(id);
}

std::vector<std::string> Engine::adopt_orphans() {
  std::vector<std::string> adopted;
  auto rows = registry_->all();
  if (!rows) return adopted;
  for (auto& row : *rows) {
    // A paused one stays frozen: adopting it only connects to brig-init's listener, and its
    // requests wait for the resume.
    if ((row.info.state != "running" && row.info.state != "paused") || process_exists(row.record.owner_pid)) continue;
    {
      std::lock_guard lock(mu_);
      if (owned_.count(row.info.id)) continue;
    }
    if (row.info.state == "paused" && row.info.paused != SandboxInfo::Paused::memory) {  // only its disk is left
      install_stopped(row.record);
      (void)registry_->set_owner(row.info.id, static_cast<int>(::getpid()));
      std::lock_guard lock(mu_);
      persistent_.insert(row.info.id);
      adopted.push_back(row.info.id);
      continue;
    }
    auto handle = backend_->adopt(row.record);
    if (!handle) {  // not persistent, or gone: reap() deals with it
      spdlog::info("sandbox {} is not adopted: {}", row.info.id, handle.error().message());
      continue;
    }
    (void)registry_->set_owner(row.info.id, static_cast<int>(::getpid()));
    std::lock_guard lock(mu_);
    owned_[row.info.id] = std::shared_ptr<SandboxHandle>(std::move(*handle));
    persistent_.insert(row.info.id);
    adopted.push_back(row.info.id);
  }
  return adopted;
}

void Engine::detach_persistent() {
  std::lock_guard lock(mu_);
  for (auto it = owned_.begin(); it != owned_.end();) {
    if (persistent_.count(it->first)) {
      it->second->detach();
      persistent_.erase(it->first);
      it = owned_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t Engine::reap() {
  // Sandboxes in a pause, resume or boot look gone for a moment: not to be cleaned up then.
  std::lock_guard transition(transition_mu_);
  size_t reaped = 0;
  auto rows = registry_->all();
  if (!rows) return 0;
  for (auto& row : *rows) {
    const auto& id = row.info.id;
    bool owned;
    std::shared_ptr<SandboxHandle> handle;
    {
      std::lock_guard lock(mu_);
      auto it = owned_.find(id);
      owned = it != owned_.end();
      if (owned) handle = it->second;
    }
    // Paused to its disk: kept until it is resumed or killed.
    if (row.info.state == "paused" && row.info.paused != SandboxInfo::Paused::memory) continue;
    bool gone;
    if (owned) gone = !handle->alive();
    else if (row.info.state == "creating") gone = !process_exists(row.record.owner_pid);
    else if (row.info.state == "pooled" && !process_exists(row.record.owner_pid)) {
      // An idle pool sandbox whose brig process died: nobody will hand it over.
      (void)backend_->kill(row.record);
      gone = true;
    } else gone = !backend_->is_alive(row.record);
    if (!gone) continue;
    // Paused with its memory, and its processes are gone (the host restarted, or they were
    // killed): its memory is lost, but not what it wrote. Kept on its disk; a resume says so, and
    // only a resume from its disk (memory: false) boots it again.
    if (row.info.state == "paused" && !row.spec.empty()) {
      if (handle) handle->detach();  // its handle must not take the disk along when it goes
      (void)backend_->release(id, &row.record, /*keep_disk=*/true);
      if (registry_->set_stopped(id, SandboxInfo::Paused::memory_lost)) {
        // Ours: a stopped handle stands for it now. Else adopt_orphans takes it over.
        if (auto now_row = registry_->get(id); owned && now_row && *now_row) install_stopped((*now_row)->record);
        spdlog::warn("sandbox {} was paused with its memory and its processes are gone: only its disk is kept", id);
        continue;
      }
    }
    if (auto r = cleanup(id, &row.record); !r) {
      spdlog::warn("reap {}: {}", id, r.error().message());
      continue;
    }
    ++reaped;
  }
  // Host resources with no registry row (a crash between their creation and the insert is
  // impossible, since the row comes first; a crash after the delete is not).
  auto now_rows = registry_->all();
  for (auto& name : backend_->list_resources()) {
    if (!is_valid_sandbox_id(name)) continue;
    bool known = false;
    if (now_rows)
      for (auto& r : *now_rows) known |= r.info.id == name;
    if (!known && backend_->release(name)) ++reaped;
  }
  // Firewall objects of sandbox networks whose interface is gone (whoever's they were).
  backend_->sweep();
  return reaped;
}

}  // namespace brig::sandbox
