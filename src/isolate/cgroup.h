// Cgroup drivers: one sandbox = one cgroup (v2) or one directory per controller hierarchy
// (v1), under a group directory such as "brig/<instance>" (one instance per state directory,
// so two brig installations on one host never sweep each other's cgroups). The driver is picked at runtime from what /sys/fs/cgroup is.
//
// Thread safety: a driver is immutable after detect(); Cgroup objects are not shared.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace brig::isolate {

struct CgroupLimits {
  uint64_t memory_bytes = 0;  // hard limit, no swap; 0 = unlimited
  uint32_t cpu_millis = 0;    // CPU quota in thousandths of a CPU; 0 = unlimited
  uint32_t pids = 0;          // max tasks; 0 = unlimited
};

struct CgroupUsage {
  // The working set: charged memory less the inactive file cache the kernel reclaims first (as
  // `docker stats` and the kubelet count it). A sandbox that writes a lot to its disk fills its
  // cache, not this.
  uint64_t memory_bytes = 0;
  uint64_t cache_bytes = 0;  // page cache charged to the cgroup
  uint64_t cpu_usage_ns = 0;
  uint64_t oom_kills = 0;
  uint32_t tasks = 0;
};

class Cgroup {
 public:
  virtual ~Cgroup() = default;
  // fds the zygote uses to place a new process: cgroup.procs files (v1: one per hierarchy),
  // or the cgroup directory itself for clone3(CLONE_INTO_CGROUP) (v2).
  virtual Result<std::vector<Fd>> open_procs_files() = 0;
  virtual Result<Fd> open_dir_for_clone() = 0;
  virtual Result<CgroupUsage> usage() = 0;
  // Freezes every task of the cgroup (true) or thaws them, and waits (at most about two
  // seconds) until the kernel says it is done. errc::unsupported when the cgroup has no
  // freezer (a v1 host without the freezer hierarchy, or a cgroup made before brig used it).
  virtual Result<> freeze(bool frozen) = 0;
  virtual Result<bool> frozen() = 0;
  // Removes the cgroup; it must have no tasks left (retries briefly while they exit).
  virtual Result<> destroy() = 0;
};

class CgroupDriver {
 public:
  virtual ~CgroupDriver() = default;
  virtual std::string name() const = 0;  // "v1" or "v2"
  virtual Result<std::unique_ptr<Cgroup>> create(const std::string& name, const CgroupLimits& limits) = 0;
  // Re-opens an existing cgroup (e.g. after a restart), without changing limits.
  virtual Result<std::unique_ptr<Cgroup>> open(const std::string& name) = 0;
  // Names of every cgroup in the group.
  virtual std::vector<std::string> list() = 0;
  // Human-readable facts for `brig doctor`.
  virtual std::vector<std::string> describe() = 0;
  // Removes the group's directories if they are empty (best effort; on engine shutdown).
  virtual void remove_group() = 0;

  // Picks v2 when `root` is a cgroup2 mount, v1 when it holds v1 hierarchies.
  static Result<std::unique_ptr<CgroupDriver>> detect(const std::string& group = "brig",
                                                      const std::string& root = "/sys/fs/cgroup");
  static std::unique_ptr<CgroupDriver> make_v1(std::string root, std::string group);
  static std::unique_ptr<CgroupDriver> make_v2(std::string root, std::string group);
};

// The interface-file writes that apply `limits`, in order (pure: unit-tested on their own).
struct LimitWrite {
  std::string controller;  // v1 hierarchy ("memory", "cpu", "pids"); empty for v2
  std::string file;
  std::string value;
  bool optional = false;   // skipped when the file does not exist (e.g. memsw without swap accounting)
};
std::vector<LimitWrite> v1_limit_writes(const CgroupLimits& limits);
std::vector<LimitWrite> v2_limit_writes(const CgroupLimits& limits);

// Names of the directories directly under `path` (none if it does not exist).
std::vector<std::string> list_subdirs(const std::string& path);

// A small interface file's text, "" when unreadable.
std::string read_or_empty(const std::string& path);

// The value of `key` in a "key value" per line file (memory.stat, cpu.stat); 0 if absent.
uint64_t stat_field(const std::string& text, std::string_view key);

// Working set and cache from a memory.stat: `usage` less the inactive file pages (`inactive_key`:
// v1's "total_inactive_file", v2's "inactive_file"); cache is `cache_key`'s value.
void set_memory_usage(CgroupUsage& u, uint64_t usage, const std::string& memory_stat, std::string_view inactive_key,
                      std::string_view cache_key);

// Removes a cgroup directory, retrying while the kernel still counts exiting tasks.
Result<> remove_cgroup_dir(const std::string& path);

// Writes `value` to `file`, then reads `state_file` until `done` says the state is reached
// (bounded: about two seconds); for the freezer of either version.
Result<> write_and_wait(const std::string& file, const std::string& value, const std::string& state_file,
                        const std::function<bool(const std::string&)>& done);

}  // namespace brig::isolate
