// core::Service: the filesystem of a sandbox (envd's filesystem service), as its user.
#include "core/service.h"

#include "base/util.h"

namespace brig::core {
Result<sandbox::EntryInfo> Service::stat(Live& live, const std::string& path, sandbox::User user) {
  return live.sandbox->stat(path, user);
}

Result<std::vector<sandbox::EntryInfo>> Service::list_dir(Live& live, const std::string& path, uint32_t depth,
                                                          sandbox::User user) {
  BRIG_TRY_ASSIGN(st, live.sandbox->stat(path, user));
  if (st.type != sandbox::FileType::dir && st.type != sandbox::FileType::symlink)
    return Error::make(errc::invalid_argument, "'" + path + "' is not a directory");
  return live.sandbox->list_dir(path, depth ? depth : 1, user);
}

Result<sandbox::EntryInfo> Service::make_dir(Live& live, const std::string& path, sandbox::User user) {
  if (auto existing = live.sandbox->stat(path, user)) {
    if (existing->type == sandbox::FileType::dir) return Error::from_errno(EEXIST, "directory already exists");
    return Error::make(errc::invalid_argument, "a file exists at '" + path + "'");
  }
  return live.sandbox->make_dir(path, user);
}

Result<sandbox::EntryInfo> Service::move(Live& live, const std::string& from, const std::string& to, sandbox::User user) {
  return live.sandbox->move(from, to, user);
}

Result<> Service::remove(Live& live, const std::string& path, sandbox::User user) {
  auto r = live.sandbox->remove(path, user);
  if (!r && r.error().sys_errno() != ENOENT) return r.error();
  return ok();
}

Result<std::string> Service::create_watcher(Live& live, const std::string& path, bool recursive, sandbox::User user) {
  {
    std::lock_guard lock(live.mu);
    if (live.watchers.size() >= options_.config.limits.watchers)
      return Error::make(errc::limit_exceeded, "too many watchers (limits.watchers)");
  }
  BRIG_TRY_ASSIGN(id, live.sandbox->watch(path, recursive, user));
  std::string watcher = new_sandbox_id();
  std::lock_guard lock(live.mu);
  live.watchers[watcher] = id;
  return watcher;
}

Result<std::vector<sandbox::WatchEvent>> Service::watcher_events(Live& live, const std::string& watcher_id) {
  uint64_t id;
  {
    std::lock_guard lock(live.mu);
    auto it = live.watchers.find(watcher_id);
    if (it == live.watchers.end()) return Error::from_errno(ENOENT, "watcher not found");
    id = it->second;
  }
  return live.sandbox->take_watch_events(id);
}

Result<> Service::remove_watcher(Live& live, const std::string& watcher_id) {
  uint64_t id;
  {
    std::lock_guard lock(live.mu);
    auto it = live.watchers.find(watcher_id);
    if (it == live.watchers.end()) return Error::from_errno(ENOENT, "watcher not found");
    id = it->second;
    live.watchers.erase(it);
  }
  (void)live.sandbox->unwatch(id);
  return ok();
}

Result<uint64_t> Service::watch_dir(Live& live, const std::string& path, bool recursive, sandbox::User user) {
  BRIG_TRY_ASSIGN(st, live.sandbox->stat(path, user));
  if (st.type != sandbox::FileType::dir) return Error::make(errc::invalid_argument, "not a directory");
  return live.sandbox->watch(path, recursive, user);
}

}  // namespace brig::core
