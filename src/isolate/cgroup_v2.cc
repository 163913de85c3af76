// cgroup v2 driver: <root>/brig/<name>, with memory, cpu and pids enabled in brig's
// subtree_control. The sandbox init is placed with clone3(CLONE_INTO_CGROUP), so it is never
// briefly outside its limits.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "base/util.h"
#include "isolate/cgroup.h"

namespace brig::isolate {
namespace {

class CgroupV2 final : public Cgroup {
 public:
  explicit CgroupV2(std::string dir) : dir_(std::move(dir)) {}

  Result<std::vector<Fd>> open_procs_files() override {
    std::vector<Fd> fds;
    Fd fd(::open((dir_ + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return Error::from_errno(errno, "open(" + dir_ + "/cgroup.procs)");
    fds.push_back(std::move(fd));
    return fds;
  }

  Result<Fd> open_dir_for_clone() override {
    Fd fd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return Error::from_errno(errno, "open(" + dir_ + ")");
    return fd;
  }

  Result<CgroupUsage> usage() override {
    CgroupUsage u;
    if (auto s = read_small_file(dir_ + "/memory.current"))
      set_memory_usage(u, std::strtoull(s->c_str(), nullptr, 10), read_or_empty(dir_ + "/memory.stat"),
                       "inactive_file", "file");
    if (auto s = read_small_file(dir_ + "/cpu.stat")) u.cpu_usage_ns = stat_field(*s, "usage_usec") * 1000;
    if (auto s = read_small_file(dir_ + "/memory.events")) u.oom_kills = stat_field(*s, "oom_kill");
    if (auto s = read_small_file(dir_ + "/pids.current")) u.tasks = static_cast<uint32_t>(std::strtoul(s->c_str(), nullptr, 10));
    return u;
  }

  Result<> freeze(bool frozen) override {
    if (::access((dir_ + "/cgroup.freeze").c_str(), F_OK) != 0)
      return Error::make(errc::unsupported, "this kernel's cgroup v2 has no freezer");
    const std::string want = frozen ? "frozen 1" : "frozen 0";
    return write_and_wait(dir_ + "/cgroup.freeze", frozen ? "1" : "0", dir_ + "/cgroup.events",
                          [want](const std::string& events) {
                            for (auto& line : split(events, '\n'))
                              if (line == want) return true;
                            return false;
                          });
  }

  Result<bool> frozen() override {
    auto events = read_small_file(dir_ + "/cgroup.events");
    if (!events) return false;
    for (auto& line : split(*events, '\n'))
      if (line == "frozen 1") return true;
    return false;
  }

  Result<> destroy() override {
    // cgroup.kill (5.14+) takes out anything left, e.g. after a crash.
    (void)write_small_file(dir_ + "/cgroup.kill", "1");
    return remove_cgroup_dir(dir_);
  }

 private:
  std::string dir_;
};

class CgroupDriverV2 final : public CgroupDriver {
 public:
  CgroupDriverV2(std::string root, std::string group)
      : root_(std::move(root)), group_(std::move(group)), parent_(root_ + "/" + group_) {}
  std::string name() const override { return "v2"; }

  Result<std::unique_ptr<Cgroup>> create(const std::string& name, const CgroupLimits& limits) override {
    BRIG_TRY(ensure_parent());
    std::string dir = parent_ + "/" + name;
    if (::mkdir(dir.c_str(), 0755) != 0 && errno == ENOENT) {
      BRIG_TRY(ensure_parent());  // removed by another engine in between: recreate it
      ::mkdir(dir.c_str(), 0755);
    }
    if (::access(dir.c_str(), F_OK) != 0) return Error::from_errno(errno, "mkdir(" + dir + ")");
    auto cg = std::make_unique<CgroupV2>(dir);
    for (const auto& w : v2_limit_writes(limits)) {
      const std::string path = dir + "/" + w.file;
      if (w.optional && ::access(path.c_str(), F_OK) != 0) continue;
      if (auto r = write_small_file(path, w.value); !r) {
        (void)cg->destroy();
        return r.error().wrap("cgroup v2 " + name);
      }
    }
    return std::unique_ptr<Cgroup>(std::move(cg));
  }

  Result<std::unique_ptr<Cgroup>> open(const std::string& name) override {
    std::string dir = parent_ + "/" + name;
    if (::access(dir.c_str(), F_OK) != 0) return Error::from_errno(errno, "access(" + dir + ")");
    return std::unique_ptr<Cgroup>(new CgroupV2(dir));
  }

  std::vector<std::string> list() override { return list_subdirs(parent_); }

  void remove_group() override {
    auto parts = split(group_, '/');
    for (size_t n = parts.size(); n > 0; --n) {
      std::string dir = root_;
      for (size_t i = 0; i < n; ++i) dir += "/" + parts[i];
      if (::rmdir(dir.c_str()) != 0) break;
    }
  }

  std::vector<std::string> describe() override {
    std::vector<std::string> out{"cgroup v2 (unified) at " + root_};
    auto controllers = read_small_file(root_ + "/cgroup.controllers");
    out.push_back("controllers available: " + (controllers ? std::string(trim(*controllers)) : "unreadable"));
    return out;
  }

 private:
  Result<> ensure_parent() {
    auto have = read_small_file(parent_ + "/cgroup.subtree_control");
    if (have && have->find("memory") != std::string::npos && have->find("pids") != std::string::npos)
      return ok();
    // Create each level and enable the controllers top-down (the no-internal-process rule:
    // these levels hold no processes, only sandbox cgroups).
    std::string dir = root_;
    for (auto& part : split(group_, '/')) {
      for (const char* c : {"+memory", "+pids", "+cpu"}) (void)write_small_file(dir + "/cgroup.subtree_control", c);
      dir += "/" + part;
      if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return Error::from_errno(errno, "mkdir(" + dir + ")");
    }
    for (const char* c : {"+memory", "+pids", "+cpu"})
      if (auto r = write_small_file(parent_ + "/cgroup.subtree_control", c); !r)
        return r.error().wrap("enable controller " + std::string(c + 1) + " for " + parent_);
    return ok();
  }

  std::string root_;
  std::string group_;
  std::string parent_;
};

}  // namespace

std::unique_ptr<CgroupDriver> CgroupDriver::make_v2(std::string root, std::string group) {
  return std::make_unique<CgroupDriverV2>(std::move(root), std::move(group));
}

}  // namespace brig::isolate
