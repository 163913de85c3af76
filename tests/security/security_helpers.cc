#include "security/security_helpers.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

extern char** environ;

namespace brig::security {

std::string show(const RunResult& r) {
  std::ostringstream s;
  s << "[exit=" << r.status.exit_code << " signal=" << r.status.signal << " timed_out=" << r.timed_out
    << " oom_killed=" << r.oom_killed << " truncated=" << r.output_truncated << "]\n  stdout: "
    << (r.out.size() > 4000 ? r.out.substr(0, 4000) + "..." : r.out)
    << "\n  stderr: " << (r.err.size() > 2000 ? r.err.substr(0, 2000) + "..." : r.err);
  return s.str();
}

std::string field(std::string_view out, std::string_view key) {
  std::string k = std::string(key) + "=";
  size_t pos = 0;
  while ((pos = out.find(k, pos)) != std::string_view::npos) {
    if (pos == 0 || out[pos - 1] == ' ' || out[pos - 1] == '\n') {
      size_t start = pos + k.size();
      size_t end = out.find_first_of(" \r\n", start);
      return std::string(out.substr(start, end == std::string_view::npos ? out.size() - start : end - start));
    }
    pos += k.size();
  }
  return "";
}

long long field_num(std::string_view out, std::string_view key) {
  std::string v = field(out, key);
  if (v.empty()) return -1;
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 0);
  return (end && *end == 0) ? n : -1;
}

std::vector<std::string> split_list(std::string_view csv, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= csv.size()) {
    size_t end = csv.find(sep, start);
    if (end == std::string_view::npos) end = csv.size();
    if (end > start) out.emplace_back(csv.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string errno_name(int err) {
  if (err == 0) return "no-errno";
  const char* n = strerrorname_np(err);
  return n ? n : std::to_string(err);
}

HostRun run_on_host(const std::vector<std::string>& argv) {
  HostRun result;
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return result;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(p[1]);
  if (rc != 0) {
    ::close(p[0]);
    return result;
  }
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) result.out.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  else result.exit_code = WEXITSTATUS(status);
  return result;
}

std::string random_hex(size_t chars) {
  std::string out;
  while (out.size() < chars) {
    unsigned char b[16];
    if (::getrandom(b, sizeof b, 0) != sizeof b) std::abort();
    for (unsigned char c : b) {
      static const char* hex = "0123456789abcdef";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  out.resize(chars);
  return out;
}

HostTempFile::HostTempFile(const std::string& prefix, const std::string& content)
    : path(prefix + random_hex(12)) {
  std::ofstream(path) << content;
}

HostTempFile::~HostTempFile() { ::unlink(path.c_str()); }

std::string file_digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  uint64_t h = 1469598103934665603ull;
  uint64_t size = 0;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    auto n = static_cast<size_t>(in.gcount());
    for (size_t i = 0; i < n; ++i) {
      h ^= static_cast<unsigned char>(buf[i]);
      h *= 1099511628211ull;
    }
    size += n;
  }
  std::ostringstream s;
  s << size << ":" << std::hex << h;
  return s.str();
}

std::string host_readlink(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

namespace {

std::vector<std::string> dir_entries(const std::string& path, bool dirs_only) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (!d) return out;
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    if (dirs_only && e->d_type != DT_DIR) continue;
    out.emplace_back(e->d_name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

size_t count_fds(pid_t pid) { return dir_entries("/proc/" + std::to_string(pid) + "/fd", false).size(); }

size_t count_host_mounts() {
  std::ifstream in("/proc/self/mountinfo");
  size_t n = 0;
  std::string line;
  while (std::getline(in, line)) ++n;
  return n;
}

std::vector<pid_t> host_pids() {
  std::vector<pid_t> out;
  for (auto& name : dir_entries("/proc", true)) {
    char* end = nullptr;
    long v = std::strtol(name.c_str(), &end, 10);
    if (end && *end == 0 && v > 0) out.push_back(static_cast<pid_t>(v));
  }
  return out;
}

uint32_t host_uid_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Uid:", 0) == 0) return static_cast<uint32_t>(std::strtoul(line.c_str() + 4, nullptr, 10));
  return UINT32_MAX;
}

std::string cgroup_of(pid_t pid) { return slurp("/proc/" + std::to_string(pid) + "/cgroup"); }

std::vector<pid_t> processes_of_sandbox(const std::string& id) {
  std::vector<pid_t> out;
  for (pid_t pid : host_pids()) {
    // Lines are "N:controllers:/path"; a sandbox's path is under brig's parent
    // (/brig/<id> or /brig/<engine group>/<id>) and ends with its id.
    std::istringstream lines(cgroup_of(pid));
    std::string line;
    while (std::getline(lines, line)) {
      auto colon = line.find(':', line.find(':') + 1);
      if (colon == std::string::npos) continue;
      std::string path = line.substr(colon + 1);
      if (!has(path, "/brig/")) continue;
      if (path.size() > id.size() && path.compare(path.size() - id.size(), id.size(), id) == 0 &&
          path[path.size() - id.size() - 1] == '/') {
        out.push_back(pid);
        break;
      }
    }
  }
  return out;
}

std::vector<pid_t> processes_with_sandbox_uids() {
  std::vector<pid_t> out;
  for (pid_t pid : host_pids()) {
    uint32_t uid = host_uid_of(pid);
    if (uid != UINT32_MAX && uid >= (1u << 30)) out.push_back(pid);
  }
  return out;
}

namespace {
// The brig parents that exist on this host: v1 per-controller dirs, or the v2 one.
std::vector<std::pair<std::string, std::string>> brig_parents() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const char* c : {"memory", "cpu", "cpuacct", "pids", "freezer"}) {
    std::string p = std::string("/sys/fs/cgroup/") + c + "/brig";
    if (::access(p.c_str(), F_OK) == 0) out.emplace_back(c, p);
  }
  if (::access("/sys/fs/cgroup/brig", F_OK) == 0) out.emplace_back("unified", "/sys/fs/cgroup/brig");
  return out;
}
}  // namespace

namespace {
// Directories under `parent` up to two levels deep (brig/<id> or brig/<engine group>/<id>),
// as paths relative to it.
std::vector<std::string> brig_subdirs(const std::string& parent) {
  std::vector<std::string> out;
  for (auto& name : dir_entries(parent, true)) {
    out.push_back(name);
    for (auto& sub : dir_entries(parent + "/" + name, true)) out.push_back(name + "/" + sub);
  }
  return out;
}
std::string basename_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}
}  // namespace

std::vector<std::string> cgroup_dirs_of(const std::string& id) {
  std::vector<std::string> out;
  for (auto& [controller, parent] : brig_parents())
    for (auto& rel : brig_subdirs(parent))
      if (basename_of(rel) == id) out.push_back(parent + "/" + rel);
  return out;
}

std::vector<std::string> all_brig_cgroup_dirs() {
  std::set<std::string> out;
  for (auto& [controller, parent] : brig_parents())
    for (auto& rel : brig_subdirs(parent)) out.insert(controller + "/" + rel);
  return {out.begin(), out.end()};
}

pid_t find_zygote() {
  const pid_t self = ::getpid();
  for (pid_t pid : host_pids()) {
    std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos || stat.find("(brig-zygote)") == std::string::npos) continue;
    // "pid (comm) S ppid ..."
    std::istringstream rest(stat.substr(close + 2));
    std::string state;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == self) return pid;
  }
  return 0;
}

std::vector<HostFs> host_free_space(const std::vector<std::string>& paths) {
  std::vector<HostFs> out;
  std::set<unsigned long> seen;
  for (auto& p : paths) {
    struct statvfs v;
    if (::statvfs(p.c_str(), &v) != 0) continue;
    if (!seen.insert(v.f_fsid).second) continue;
    out.push_back({p, static_cast<unsigned long long>(v.f_bavail) * v.f_frsize});
  }
  return out;
}

}  // namespace brig::security
