#include <dirent.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <linux/magic.h>
#include <algorithm>
#include <thread>

#include "base/util.h"
#include "isolate/cgroup.h"

namespace brig::isolate {

std::string read_or_empty(const std::string& path) {
  auto text = read_small_file(path);
  return text ? std::move(*text) : std::string();
}

uint64_t stat_field(const std::string& text, std::string_view key) {
  for (auto& line : split(text, '\n'))
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ' ')
      return std::strtoull(line.c_str() + key.size() + 1, nullptr, 10);
  return 0;
}

void set_memory_usage(CgroupUsage& u, uint64_t usage, const std::string& memory_stat, std::string_view inactive_key,
                      std::string_view cache_key) {
  const uint64_t inactive = stat_field(memory_stat, inactive_key);
  u.memory_bytes = usage > inactive ? usage - inactive : 0;
  u.cache_bytes = stat_field(memory_stat, cache_key);
}

std::vector<std::string> list_subdirs(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (!d) return out;
  while (auto* e = ::readdir(d))
    if (e->d_type == DT_DIR && e->d_name[0] != '.') out.emplace_back(e->d_name);
  ::closedir(d);
  return out;
}

Result<> remove_cgroup_dir(const std::string& path) {
  // After a PID namespace dies its tasks are gone, but the cgroup may report busy for a few
  // milliseconds while they finish exiting.
  for (int attempt = 0; attempt < 200; ++attempt) {
    if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return ok();
    if (errno != EBUSY) return Error::from_errno(errno, "rmdir(" + path + ")");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return Error::from_errno(EBUSY, "rmdir(" + path + ")");
}

Result<> write_and_wait(const std::string& file, const std::string& value, const std::string& state_file,
                        const std::function<bool(const std::string&)>& done) {
  BRIG_TRY(write_small_file(file, value));
  // A freeze waits for every task to reach a safe point (a task in an uninterruptible sleep
  // delays it); 2000 looks 1 ms apart, then it is said to have failed.
  for (int attempt = 0; attempt < 2000; ++attempt) {
    BRIG_TRY_ASSIGN(state, read_small_file(state_file));
    if (done(state)) return ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return Error::make(errc::timed_out, "cgroup freezer: " + file + " = " + value + " not reached in 2 s");
}

namespace {
constexpr uint64_t kCpuPeriodUs = 100'000;
// The kernel's minimum CFS quota is 1 ms.
uint64_t cpu_quota_us(uint32_t millis) { return std::max<uint64_t>(1000, kCpuPeriodUs * millis / 1000); }
}  // namespace

std::vector<LimitWrite> v1_limit_writes(const CgroupLimits& l) {
  std::vector<LimitWrite> w;
  if (l.memory_bytes) {
    // Swappiness 0 and memsw == limit: the limit is hard and the sandbox never swaps.
    w.push_back({"memory", "memory.swappiness", "0", true});
    w.push_back({"memory", "memory.limit_in_bytes", std::to_string(l.memory_bytes)});
    w.push_back({"memory", "memory.memsw.limit_in_bytes", std::to_string(l.memory_bytes), true});
  }
  if (l.cpu_millis) {
    w.push_back({"cpu", "cpu.cfs_period_us", std::to_string(kCpuPeriodUs)});
    w.push_back({"cpu", "cpu.cfs_quota_us", std::to_string(cpu_quota_us(l.cpu_millis))});
  }
  if (l.pids) w.push_back({"pids", "pids.max", std::to_string(l.pids)});
  return w;
}

std::vector<LimitWrite> v2_limit_writes(const CgroupLimits& l) {
  std::vector<LimitWrite> w;
  if (l.memory_bytes) {
    w.push_back({"", "memory.max", std::to_string(l.memory_bytes)});
    w.push_back({"", "memory.swap.max", "0", true});
  }
  if (l.cpu_millis)
    w.push_back({"", "cpu.max", std::to_string(cpu_quota_us(l.cpu_millis)) + " " + std::to_string(kCpuPeriodUs)});
  if (l.pids) w.push_back({"", "pids.max", std::to_string(l.pids)});
  return w;
}

Result<std::unique_ptr<CgroupDriver>> CgroupDriver::detect(const std::string& group, const std::string& root) {
  struct statfs fs;
  if (::statfs(root.c_str(), &fs) != 0) return Error::from_errno(errno, "statfs(" + root + ")");
  if (fs.f_type == CGROUP2_SUPER_MAGIC) return make_v2(root, group);
  struct statfs mem;
  if (::statfs((root + "/memory").c_str(), &mem) == 0 && mem.f_type == CGROUP_SUPER_MAGIC)
    return make_v1(root, group);
  return Error::make(errc::unsupported,
                     root + " is neither a cgroup2 mount nor a set of v1 hierarchies with 'memory'");
}

}  // namespace brig::isolate
