// cgroup v1 driver: a directory <root>/<controller>/brig/<name> in each of the memory, cpu,
// cpuacct and pids hierarchies, and in the freezer hierarchy when the host has one (pause)
// (co-mounted hierarchies such as "cpu,cpuacct" are handled by de-duplicating on the real path).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <string_view>

#include "base/util.h"
#include "isolate/cgroup.h"

namespace brig::isolate {
namespace {

constexpr const char* kControllers[] = {"memory", "cpu", "cpuacct", "pids", "freezer"};
// Hierarchies a sandbox can do without: the freezer (pause) is missing on some hosts, and
// sandboxes made before brig paused have no directory there.
bool optional_controller(const char* c) { return std::string_view(c) == "freezer"; }

class CgroupV1 final : public Cgroup {
 public:
  CgroupV1(std::vector<std::string> dirs, std::string memory_dir, std::string cpuacct_dir,
           std::string pids_dir, std::string freezer_dir)
      : dirs_(std::move(dirs)), memory_(std::move(memory_dir)), cpuacct_(std::move(cpuacct_dir)),
        pids_(std::move(pids_dir)), freezer_(std::move(freezer_dir)) {}

  Result<std::vector<Fd>> open_procs_files() override {
    std::vector<Fd> fds;
    for (auto& d : dirs_) {
      Fd fd(::open((d + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
      if (!fd) return Error::from_errno(errno, "open(" + d + "/cgroup.procs)");
      fds.push_back(std::move(fd));
    }
    return fds;
  }

  Result<Fd> open_dir_for_clone() override {
    return Error::make(errc::unsupported, "cgroup v1 cannot clone into a cgroup");
  }

  Result<CgroupUsage> usage() override {
    CgroupUsage u;
    if (auto s = read_small_file(memory_ + "/memory.usage_in_bytes"))
      set_memory_usage(u, std::strtoull(s->c_str(), nullptr, 10), read_or_empty(memory_ + "/memory.stat"),
                       "total_inactive_file", "total_cache");
    if (auto s = read_small_file(cpuacct_ + "/cpuacct.usage")) u.cpu_usage_ns = std::strtoull(s->c_str(), nullptr, 10);
    if (auto s = read_small_file(memory_ + "/memory.oom_control")) {
      // "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n" (oom_kill since Linux 4.13)
      for (auto& line : split(*s, '\n'))
        if (line.starts_with("oom_kill ")) u.oom_kills = std::strtoull(line.c_str() + 9, nullptr, 10);
    }
    if (auto s = read_small_file(pids_ + "/pids.current")) u.tasks = static_cast<uint32_t>(std::strtoul(s->c_str(), nullptr, 10));
    return u;
  }

  Result<> freeze(bool frozen) override {
    if (freezer_.empty()) return Error::make(errc::unsupported, "this sandbox has no freezer cgroup");
    const std::string want = frozen ? "FROZEN" : "THAWED";
    return write_and_wait(freezer_ + "/freezer.state", want, freezer_ + "/freezer.state",
                          [want](const std::string& state) { return trim(state) == want; });
  }

  Result<bool> frozen() override {
    if (freezer_.empty()) return false;
    BRIG_TRY_ASSIGN(state, read_small_file(freezer_ + "/freezer.state"));
    return trim(state) != "THAWED";
  }

  Result<> destroy() override {
    Result<> first = ok();
    for (auto& d : dirs_)
      if (auto r = remove_cgroup_dir(d); !r && first) first = r;
    return first;
  }

 private:
  std::vector<std::string> dirs_;
  std::string memory_, cpuacct_, pids_;
  std::string freezer_;  // "" when it has none
};

class CgroupDriverV1 final : public CgroupDriver {
 public:
  CgroupDriverV1(std::string root, std::string group) : root_(std::move(root)), group_(std::move(group)) {}
  std::string name() const override { return "v1"; }

  Result<std::unique_ptr<Cgroup>> create(const std::string& name, const CgroupLimits& limits) override {
    BRIG_TRY_ASSIGN(cg, make(name, /*create=*/true));
    auto fail = [&](Error e) {
      (void)cg->destroy();
      return e.wrap("cgroup v1 " + name);
    };
    for (const auto& w : v1_limit_writes(limits)) {
      const std::string path = dir_of(w.controller.c_str(), name) + "/" + w.file;
      if (w.optional && ::access(path.c_str(), F_OK) != 0) continue;
      if (auto r = write_small_file(path, w.value); !r) return fail(r.error());
    }
    return cg;
  }

  Result<std::unique_ptr<Cgroup>> open(const std::string& name) override { return make(name, false); }

  std::vector<std::string> list() override { return list_subdirs(root_ + "/memory/" + group_); }

  void remove_group() override {
    for (auto* c : kControllers) {
      auto parts = split(group_, '/');
      for (size_t n = parts.size(); n > 0; --n) {
        std::string dir = root_ + "/" + c;
        for (size_t i = 0; i < n; ++i) dir += "/" + parts[i];
        if (::rmdir(dir.c_str()) != 0) break;  // not empty (or gone): leave the rest
      }
    }
  }

  std::vector<std::string> describe() override {
    std::vector<std::string> out{"cgroup v1 hierarchies under " + root_};
    for (auto* c : kControllers) {
      bool present = ::access((root_ + "/" + c + "/cgroup.procs").c_str(), F_OK) == 0;
      out.push_back(std::string(c) + (present ? ": present" : optional_controller(c) ? ": absent (no pause)" : ": MISSING"));
    }
    bool memsw = ::access((root_ + "/memory/memory.memsw.limit_in_bytes").c_str(), F_OK) == 0;
    out.push_back(std::string("swap accounting (memsw): ") +
                  (memsw ? "present" : "absent (memory limit is still hard; swappiness 0)"));
    return out;
  }

 private:
  std::string dir_of(const char* controller, const std::string& name) const {
    return root_ + "/" + controller + "/" + group_ + "/" + name;
  }

  Result<std::unique_ptr<Cgroup>> make(const std::string& name, bool create) {
    std::vector<std::string> dirs;
    std::vector<std::string> real_parents;
    std::string freezer;
    for (auto* c : kControllers) {
      if (optional_controller(c) && ::access((root_ + "/" + c + "/cgroup.procs").c_str(), F_OK) != 0) continue;
      std::string parent = root_ + "/" + c;
      for (auto& part : split(group_, '/')) {
        parent += "/" + part;
        if (create && ::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST)
          return Error::from_errno(errno, "mkdir(" + parent + ")");
      }
      char real[PATH_MAX];
      if (!::realpath(parent.c_str(), real)) return Error::from_errno(errno, "realpath(" + parent + ")");
      bool dup = false;
      for (auto& p : real_parents) dup |= (p == real);
      if (dup) continue;  // co-mounted with an earlier controller
      real_parents.emplace_back(real);
      std::string dir = parent + "/" + name;
      // Another engine on this state dir may have just removed the (empty) group: recreate it.
      if (create && ::mkdir(dir.c_str(), 0755) != 0 && errno == ENOENT) {
        std::string p = root_ + "/" + c;
        for (auto& part : split(group_, '/')) ::mkdir((p += "/" + part).c_str(), 0755);
      }
      if (create && ::access(dir.c_str(), F_OK) != 0 && ::mkdir(dir.c_str(), 0755) != 0) {
        Error e = Error::from_errno(errno, "mkdir(" + dir + ")");
        for (auto& d : dirs) (void)remove_cgroup_dir(d);
        return e;
      }
      if (!create && ::access(dir.c_str(), F_OK) != 0) {
        if (optional_controller(c)) continue;
        return Error::from_errno(errno, "access(" + dir + ")");
      }
      if (optional_controller(c)) freezer = dir;
      dirs.push_back(std::move(dir));
    }
    return std::unique_ptr<Cgroup>(new CgroupV1(std::move(dirs), dir_of("memory", name), dir_of("cpuacct", name),
                                                dir_of("pids", name), std::move(freezer)));
  }

  std::string root_;
  std::string group_;
};

}  // namespace

std::unique_ptr<CgroupDriver> CgroupDriver::make_v1(std::string root, std::string group) {
  return std::make_unique<CgroupDriverV1>(std::move(root), std::move(group));
}

}  // namespace brig::isolate
