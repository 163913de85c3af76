// brig-startup-bench: sandbox start-up latency of brig against its peers, in one run, on one
// rootfs, on this machine.
//
// Scenarios (every runtime, round-robin within each iteration so machine noise hits all alike):
//   (a) echo:  start -> first byte of `echo hi` on stdout -> everything torn down.
//              brig: in-process Engine::create -> Sandbox::spawn -> poll(stdout) -> Engine::kill.
//              peers: the whole runtime process (`bwrap ... /bin/echo hi`, `runc run`), first byte
//              and exit.
//   (b) true:  a one-shot `true`, whole process, wall time from fork to exit
//              (`brig run --rootfs R -- /bin/true`, `bwrap ... /bin/true`, `runc run`).
//
// Only fork/exec, pipes, poll and clock_gettime(CLOCK_MONOTONIC); no shell anywhere.
// Build standalone (no engine; brig's in-process scenario is then skipped):
//   g++ -std=c++20 -O2 -DBRIG_BENCH_NO_ENGINE bench/e2e/startup_bench.cc -o startup-bench
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#ifndef BRIG_BENCH_NO_ENGINE
#include "sandbox/backend.h"
#include "sandbox/engine.h"
#endif

namespace {

namespace fs = std::filesystem;

double now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

std::string first_line(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line.empty() ? "(no message)" : line;
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

// Runs of whitespace become one space ("0 1073741824      65536" -> "0 1073741824 65536").
[[maybe_unused]] std::string squeeze(const std::string& s) {
  std::string r;
  for (char c : s) {
    bool sp = std::isspace(static_cast<unsigned char>(c));
    if (sp && (r.empty() || r.back() == ' ')) continue;
    r += sp ? ' ' : c;
  }
  return trim(r);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Resolves a program name against PATH (execv takes no PATH).
std::optional<std::string> find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (access(name.c_str(), X_OK) == 0) return name;
    return std::nullopt;
  }
  const char* path = getenv("PATH");
  std::string p = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  std::stringstream ss(p);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    std::string full = dir + "/" + name;
    if (access(full.c_str(), X_OK) == 0) return full;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// One child process, timed.

struct ProcResult {
  bool started = false;
  double first_byte_ms = -1;  // from just before fork to the first stdout byte
  double exit_ms = -1;        // from just before fork to the child's exit (waitpid)
  int status = -1;            // waitpid status
  std::string out, err;
  std::string error;          // our own failure (fork, timeout, ...)

  bool exited_ok() const { return started && error.empty() && WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  std::string describe() const {
    if (!error.empty()) return error;
    if (!err.empty()) return first_line(err);
    if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
    return "status " + std::to_string(status);
  }
};

int pidfd_open_(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

// fork/exec argv[0] (absolute) with stdin from /dev/null and stdout/stderr on pipes. Waits for the
// child's exit (a pidfd), not for EOF: a descendant that keeps a pipe open cannot stall us.
ProcResult run_process(const std::vector<std::string>& argv, int timeout_ms = 30'000) {
  ProcResult r;
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) return r.error = std::string("pipe2: ") + strerror(errno), r;
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(out[0]), close(out[1]);
    return r.error = std::string("pipe2: ") + strerror(errno), r;
  }
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

  double t0 = now_ms();
  pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execv(cargv[0], cargv.data());
    static const char msg[] = "exec failed\n";
    [[maybe_unused]] auto n = write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  if (devnull >= 0) close(devnull);
  close(out[1]);
  close(err[1]);
  if (pid < 0) {
    close(out[0]), close(err[0]);
    return r.error = std::string("fork: ") + strerror(errno), r;
  }
  r.started = true;
  int pidfd = pidfd_open_(pid);

  bool out_open = true, err_open = true, exited = false;
  double deadline = t0 + timeout_ms;
  char buf[4096];
  while (!exited) {
    pollfd fds[3];
    int n = 0, i_out = -1, i_err = -1, i_pid = -1;
    if (out_open) i_out = n, fds[n++] = {out[0], POLLIN, 0};
    if (err_open) i_err = n, fds[n++] = {err[0], POLLIN, 0};
    if (pidfd >= 0) i_pid = n, fds[n++] = {pidfd, POLLIN, 0};
    int left = static_cast<int>(deadline - now_ms());
    if (left <= 0) {
      kill(pid, SIGKILL);
      r.error = "timed out after " + std::to_string(timeout_ms) + " ms";
      break;
    }
    if (pidfd < 0 && !out_open && !err_open) break;  // no pidfd: EOF stands in for exit
    int rc = poll(fds, n, std::min(left, pidfd >= 0 ? left : 50));
    if (rc < 0 && errno == EINTR) continue;
    double t = now_ms();
    if (i_out >= 0 && fds[i_out].revents) {
      ssize_t k = read(out[0], buf, sizeof buf);
      if (k > 0) {
        if (r.first_byte_ms < 0) r.first_byte_ms = t - t0;
        r.out.append(buf, static_cast<size_t>(k));
      } else if (k == 0 || errno != EINTR) {
        out_open = false;
      }
    }
    if (i_err >= 0 && fds[i_err].revents) {
      ssize_t k = read(err[0], buf, sizeof buf);
      if (k > 0) r.err.append(buf, static_cast<size_t>(k));
      else if (k == 0 || errno != EINTR) err_open = false;
    }
    if (i_pid >= 0 && fds[i_pid].revents) exited = true;
  }
  if (waitpid(pid, &r.status, 0) < 0) {
    if (r.error.empty()) r.error = std::string("waitpid: ") + strerror(errno);
  }
  r.exit_ms = now_ms() - t0;
  // Whatever is already in the pipes (no waiting: a lingering descendant may hold them).
  for (int fd : {out[0], err[0]}) {
    fcntl(fd, F_SETFL, O_NONBLOCK);
    ssize_t k;
    while ((k = read(fd, buf, sizeof buf)) > 0) (fd == out[0] ? r.out : r.err).append(buf, static_cast<size_t>(k));
  }
  if (pidfd >= 0) close(pidfd);
  close(out[0]);
  close(err[0]);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Samples and the table.

struct Series {
  std::string runtime, scenario;
  std::vector<double> samples;
  int failures = 0;
  std::string last_failure;
};

double percentile(std::vector<double> v, double p) {  // nearest rank
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}
double mean(const std::vector<double>& v) {
  if (v.empty()) return NAN;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

std::string fmt_ms(double v) {
  if (std::isnan(v)) return "n/a";
  char b[32];
  snprintf(b, sizeof b, v < 10 ? "%.2f" : "%.1f", v);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Machine facts.

std::string machine_summary() {
  utsname u{};
  uname(&u);
  std::string cpu = "unknown CPU";
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = trim(line.substr(line.find(':') + 1));
      break;
    }
  }
  std::string cg;
  struct statfs sf{};
  if (statfs("/sys/fs/cgroup", &sf) == 0 && sf.f_type == 0x63677270 /* CGROUP2_SUPER_MAGIC */) {
    cg = "cgroup v2";
  } else if (access("/sys/fs/cgroup/unified", F_OK) == 0) {
    cg = "cgroup v1 (hybrid)";
  } else {
    cg = "cgroup v1";
  }
  return std::string(u.sysname) + " " + u.release + " " + u.machine + " · nproc " +
         std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " · " + cpu + " · " + cg;
}

std::string utc_now() {
  time_t t = time(nullptr);
  tm tmv{};
  gmtime_r(&t, &tmv);
  char b[64];
  strftime(b, sizeof b, "%Y-%m-%d %H:%M:%S UTC", &tmv);
  return b;
}

std::string loadavg() {
  std::string s = read_text("/proc/loadavg");
  std::stringstream ss(s);
  std::string a, b, c;
  ss >> a >> b >> c;
  return a + " " + b + " " + c;
}

std::string version_of(const std::string& bin) {
  auto r = run_process({bin, "--version"}, 5000);
  return first_line(r.out.empty() ? r.err : r.out);
}

// ---------------------------------------------------------------------------------------------
// Options.

struct Options {
  std::string rootfs;
  std::string brig;       // brig binary, for the one-shot `brig run` scenario
  std::string state_dir;  // engine state dir (in-process scenario); default: a fresh temp dir
  int iterations = 200;
  int warmup = 10;
  bool skip_brig = false;
  bool isolation_check = true;
};

[[noreturn]] void usage(const char* argv0, int code) {
  fprintf(code ? stderr : stdout,
          "usage: %s --rootfs DIR [--brig PATH] [--iterations N] [--warmup N] [--state-dir DIR]\n"
          "          [--skip-brig] [--no-isolation-check]\n"
          "  --rootfs DIR        the Debian tree every runtime runs (scripts/build-test-rootfs.sh)\n"
          "  --brig PATH         the brig binary, for `brig run --rootfs DIR -- /bin/true`\n"
          "                      (default: the one built beside this program, if present)\n"
          "  --iterations N      measured iterations per scenario (default 200)\n"
          "  --warmup N          uncounted warm-up iterations first (default 10)\n"
          "  --state-dir DIR     engine state dir for the in-process scenario (default: fresh temp dir)\n"
          "  --skip-brig         measure the peers only\n"
          "  --no-isolation-check  skip the one-off check that brig's layers are on\n",
          argv0);
  exit(code);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        fprintf(stderr, "%s needs a value\n", a.c_str());
        usage(argv[0], 2);
      }
      return argv[++i];
    };
    auto number = [&]() {
      std::string v = value();
      char* end = nullptr;
      long n = strtol(v.c_str(), &end, 10);
      if (!end || *end || n < 0 || n > 1'000'000) {
        fprintf(stderr, "%s: bad number %s\n", a.c_str(), v.c_str());
        usage(argv[0], 2);
      }
      return static_cast<int>(n);
    };
    if (a == "--rootfs") o.rootfs = value();
    else if (a == "--brig") o.brig = value();
    else if (a == "--state-dir") o.state_dir = value();
    else if (a == "--iterations") o.iterations = number();
    else if (a == "--warmup") o.warmup = number();
    else if (a == "--skip-brig") o.skip_brig = true;
    else if (a == "--no-isolation-check") o.isolation_check = false;
    else if (a == "-h" || a == "--help") usage(argv[0], 0);
    else {
      fprintf(stderr, "unknown argument %s\n", a.c_str());
      usage(argv[0], 2);
    }
  }
  if (o.rootfs.empty()) usage(argv[0], 2);
#ifdef BRIG_BENCH_DEFAULT_BRIG
  if (o.brig.empty() && access(BRIG_BENCH_DEFAULT_BRIG, X_OK) == 0) o.brig = BRIG_BENCH_DEFAULT_BRIG;
#endif
  if (o.iterations < 1) o.iterations = 1;
  return o;
}

// ---------------------------------------------------------------------------------------------
// Runtimes. Each offers (a) echo and (b) true as a callable producing one sample.

// One measured step: returns the samples it produced (by series index) or a failure message.
struct Step {
  std::string name;
  std::function<std::string(std::vector<double>& out)> run;  // "" = ok; out sized to its series
  std::vector<size_t> series;                                 // indices into the series table
};

std::string check_echo(const ProcResult& r) {
  if (!r.exited_ok()) return r.describe();
  if (r.out != "hi\n") return "unexpected output '" + first_line(r.out) + "'";
  if (r.first_byte_ms < 0) return "no output";
  return {};
}
std::string check_true(const ProcResult& r) { return r.exited_ok() ? std::string{} : r.describe(); }

// An OCI bundle per scenario (runc and crun share them): `runc spec` + a small JSON edit.
struct Bundles {
  std::string dir, echo, truth;
  std::string error;
};

Bundles make_bundles(const std::string& runc, const std::string& rootfs) {
  Bundles b;
  char tmpl[] = "/tmp/brig-bench-oci-XXXXXX";
  if (!mkdtemp(tmpl)) return b.error = std::string("mkdtemp: ") + strerror(errno), b;
  b.dir = tmpl;
  auto spec = run_process({runc, "spec", "--bundle", b.dir});
  if (!spec.exited_ok()) return b.error = "runc spec: " + spec.describe(), b;
  nlohmann::json base;
  try {
    base = nlohmann::json::parse(read_text(b.dir + "/config.json"));
  } catch (const std::exception& e) {
    return b.error = std::string("config.json: ") + e.what(), b;
  }
  fs::remove(b.dir + "/config.json");
  base["root"]["path"] = fs::absolute(rootfs).string();
  base["root"]["readonly"] = true;
  base["process"]["terminal"] = false;
  auto write = [&](const std::string& name, std::vector<std::string> args) {
    std::string d = b.dir + "/" + name;
    fs::create_directory(d);
    nlohmann::json c = base;
    c["process"]["args"] = args;
    std::ofstream(d + "/config.json") << c.dump(2) << "\n";
    return d;
  };
  b.echo = write("echo", {"/bin/echo", "hi"});
  b.truth = write("true", {"/bin/true"});
  return b;
}

#ifndef BRIG_BENCH_NO_ENGINE
namespace sb = brig::sandbox;

std::string brig_error(const brig::Error& e) {
  std::string m = e.message();
  if (m.empty()) m = e.code().message();
  return m;
}

// The v1 (or v2) cgroup limits of a host pid, read on the host.
std::string host_cgroup_limits(int host_pid) {
  std::string cg = read_text("/proc/" + std::to_string(host_pid) + "/cgroup");
  if (cg.empty()) return "cannot read /proc/" + std::to_string(host_pid) + "/cgroup";
  std::map<std::string, std::string> paths;  // controller -> path
  std::stringstream ss(cg);
  for (std::string line; std::getline(ss, line);) {
    auto c1 = line.find(':'), c2 = line.find(':', c1 + 1);
    if (c1 == std::string::npos || c2 == std::string::npos) continue;
    std::string ctrls = line.substr(c1 + 1, c2 - c1 - 1), path = line.substr(c2 + 1);
    std::stringstream cs(ctrls);
    for (std::string c; std::getline(cs, c, ',');) paths[c] = path;
    if (ctrls.empty()) paths["(v2)"] = path;
  }
  auto rd = [](const std::string& p) {
    std::string v = trim(read_text(p));
    return v.empty() ? std::string("?") : v;
  };
  std::string s;
  if (paths.count("memory")) {
    std::string d = "/sys/fs/cgroup/memory" + paths["memory"];
    s += "memory.limit_in_bytes=" + rd(d + "/memory.limit_in_bytes");
    if (access((d + "/memory.memsw.limit_in_bytes").c_str(), F_OK) == 0)
      s += " memsw=" + rd(d + "/memory.memsw.limit_in_bytes");
    s += " swappiness=" + rd(d + "/memory.swappiness");
    s += " (" + paths["memory"] + ")";
  }
  if (paths.count("cpu")) {
    std::string d = "/sys/fs/cgroup/cpu" + paths["cpu"];
    if (access(d.c_str(), F_OK) != 0) d = "/sys/fs/cgroup/cpu,cpuacct" + paths["cpu"];
    s += "; cpu.cfs_quota_us=" + rd(d + "/cpu.cfs_quota_us") + "/" + rd(d + "/cpu.cfs_period_us");
  }
  if (paths.count("pids")) s += "; pids.max=" + rd("/sys/fs/cgroup/pids" + paths["pids"] + "/pids.max");
  if (s.empty() && paths.count("(v2)")) {
    std::string d = "/sys/fs/cgroup" + paths["(v2)"];
    s = "memory.max=" + rd(d + "/memory.max") + " memory.swap.max=" + rd(d + "/memory.swap.max") +
        "; cpu.max=" + rd(d + "/cpu.max") + "; pids.max=" + rd(d + "/pids.max") + " (" + paths["(v2)"] + ")";
  }
  return s.empty() ? "no memory/cpu/pids cgroup found" : s;
}

// Once, untimed: proves the measured configuration has its layers on (namespaces, user mapping,
// seccomp, no_new_privs, no capabilities, cgroup limits).
void brig_isolation_check(sb::Engine& engine, const sb::SandboxSpec& spec, std::vector<std::string>& notes) {
  auto created = engine.create(spec);
  if (!created) {
    notes.push_back("brig isolation check: create failed: " + brig_error(created.error()));
    return;
  }
  auto sandbox = *created;
  std::string id = sandbox->id();
  auto run = [&](std::vector<std::string> argv) -> std::string {
    sb::ProcessSpec p;
    p.cmd = argv[0];
    p.args.assign(argv.begin() + 1, argv.end());
    auto r = sandbox->run(p, sb::RunOptions{});
    if (!r) return "ERROR " + brig_error(r.error());
    return r->out;
  };
  std::string status = run({"/bin/cat", "/proc/self/status"});
  auto field = [&](const std::string& key) {
    auto pos = status.find("\n" + key + ":");
    if (pos == std::string::npos) return std::string("?");
    auto start = pos + key.size() + 2, end = status.find('\n', start);
    return squeeze(status.substr(start, end - start));
  };
  std::string uid_map = squeeze(run({"/bin/cat", "/proc/self/uid_map"}));
  std::string hostname = trim(run({"/bin/cat", "/proc/sys/kernel/hostname"}));
  std::vector<std::string> kinds = {"user", "mnt", "pid", "net", "ipc", "uts", "cgroup"};
  std::vector<std::string> rl = {"/usr/bin/readlink"};
  for (auto& k : kinds) rl.push_back("/proc/self/ns/" + k);
  std::string inside = run(rl);
  std::string differ;
  int ndiff = 0;
  {
    std::stringstream ss(inside);
    std::string line;
    for (auto& k : kinds) {
      if (!std::getline(ss, line)) break;
      std::error_code ec;
      auto host = fs::read_symlink("/proc/self/ns/" + k, ec).string();
      if (!ec && trim(line) != host) differ += " " + k, ++ndiff;
    }
  }
  std::string limits = "n/a (sandbox is not a SandboxHandle)";
  if (auto handle = std::dynamic_pointer_cast<sb::SandboxHandle>(sandbox)) {
    limits = host_cgroup_limits(handle->record().init_pid);
  }
  std::string ls_sys = trim(run({"/bin/ls", "/sys"}));
  notes.push_back("brig isolation check (default `user`, same spec as measured): namespaces unshared from host:" +
                  differ + " (" + std::to_string(ndiff) + "/" + std::to_string(kinds.size()) + ")" +
                  "; Uid " + field("Uid") + "; uid_map `" + uid_map + "`; hostname `" + hostname + "`" +
                  "; Seccomp " + field("Seccomp") + " (filters " + field("Seccomp_filters") + ")" +
                  "; NoNewPrivs " + field("NoNewPrivs") + "; CapEff " + field("CapEff") + "; CapBnd " +
                  field("CapBnd") + "; /sys entries: " + (ls_sys.empty() ? "none" : std::to_string(std::count(ls_sys.begin(), ls_sys.end(), '\n') + 1)) +
                  "; host-side cgroup of brig-init: " + limits);
  sandbox.reset();
  if (auto k = engine.kill(id); !k) notes.push_back("brig isolation check: kill failed: " + brig_error(k.error()));
}
#endif

}  // namespace

int main(int argc, char** argv) {
#ifndef BRIG_BENCH_NO_ENGINE
  sb::run_zygote_if_requested(argc, argv);
#endif
  Options opt = parse(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  if (access(opt.rootfs.c_str(), F_OK) != 0) {
    fprintf(stderr, "rootfs %s: %s\n", opt.rootfs.c_str(), strerror(errno));
    return 2;
  }
  opt.rootfs = fs::absolute(opt.rootfs).string();
  if (geteuid() != 0) fprintf(stderr, "warning: not root; runc and brig need root here\n");

  std::vector<std::string> notes;       // printed under the table
  std::vector<std::string> skipped;     // "crun: skipped (...)" lines
  std::vector<Series> series;
  std::vector<Step> steps;
  auto add_series = [&](std::string runtime, std::string scenario) {
    series.push_back({std::move(runtime), std::move(scenario), {}, 0, {}});
    series.back().samples.reserve(static_cast<size_t>(opt.iterations));
    return series.size() - 1;
  };

  // ---- brig, in-process (a) ----------------------------------------------------------------
#ifndef BRIG_BENCH_NO_ENGINE
  std::unique_ptr<sb::Engine> engine;
  std::string state_dir = opt.state_dir;
  bool own_state_dir = false;
  sb::SandboxSpec spec;
  spec.rootfs = opt.rootfs;
  spec.template_name = "bench";
  // Forks the zygote: before anything else forks or starts threads.
  if (!opt.skip_brig) {
    if (state_dir.empty()) {
      char tmpl[] = "/var/tmp/brig-bench-state-XXXXXX";
      if (mkdtemp(tmpl)) state_dir = tmpl, own_state_dir = true;
    }
    sb::EngineOptions engine_options;  // the configuration's defaults
    engine_options.state_dir = state_dir;
    auto e = sb::Engine::open(engine_options);
    if (!e) {
      skipped.push_back("brig (in-process): skipped (Engine::open: " + brig_error(e.error()) + ")");
    } else {
      engine = std::move(*e);
    }
  }
  struct BrigParts {
    std::vector<double> create, spawn, first, kill;
  } parts;
  // Cold: every create clones a new sandbox. Pooled: the engine keeps 2 ready sandboxes of this
  // shape (refilled in the background, which also costs CPU during the other runtimes' turns)
  // and create() hands one over, applying env, lifetime and metadata.
  sb::SandboxSpec pooled_spec = spec;
  pooled_spec.memory_bytes += 1 << 20;  // a distinct shape, so only the pooled scenario hits the pool
  auto add_brig_echo = [&](const std::string& label, const sb::SandboxSpec& spec, bool record_parts) {
    auto s_first = add_series("brig", "(a) echo hi: " + label + "create → first byte");
    auto s_destroyed = add_series("brig", "(a) echo hi: " + label + "create → destroyed");
    Step st;
    st.name = "brig (a) " + label;
    st.series = {s_first, s_destroyed};
    st.run = [&, spec, record_parts, eng = engine.get()](std::vector<double>& out) -> std::string {
      double t0 = now_ms();
      auto created = eng->create(spec);
      if (!created) return "create: " + brig_error(created.error());
      double t_create = now_ms();
      std::shared_ptr<sb::Sandbox> sandbox = *created;
      std::string id = sandbox->id();
      std::string failure;
      double t_spawn = 0, t_first = 0;
      {
        sb::ProcessSpec p;
        p.cmd = "/bin/echo";
        p.args = {"hi"};
        auto spawned = sandbox->spawn(p);
        t_spawn = now_ms();
        if (!spawned) {
          failure = "spawn: " + brig_error(spawned.error());
        } else {
          pollfd pfd{spawned->stdout_fd.get(), POLLIN, 0};
          int rc;
          do rc = poll(&pfd, 1, 10'000);
          while (rc < 0 && errno == EINTR);
          char c[16];
          ssize_t k = rc > 0 ? read(pfd.fd, c, sizeof c) : -1;
          t_first = now_ms();
          if (rc == 0) failure = "no output within 10 s";
          else if (k <= 0) failure = "stdout closed without output";
          else if (c[0] != 'h') failure = "unexpected output";
        }
      }
      sandbox.reset();
      auto killed = eng->kill(id);
      double t_killed = now_ms();
      if (!killed && failure.empty()) failure = "kill: " + brig_error(killed.error());
      if (!failure.empty()) return failure;
      out = {t_first - t0, t_killed - t0};
      if (record_parts) {
        parts.create.push_back(t_create - t0);
        parts.spawn.push_back(t_spawn - t_create);
        parts.first.push_back(t_first - t_spawn);
        parts.kill.push_back(t_killed - t_first);
      }
      return {};
    };
    steps.push_back(std::move(st));
  };
  // The same with a network of its own (what `brig serve` gives every sandbox: a veth, NAT, its
  // firewall set, DNS forwarded; the default policy, everything but the always-denied ranges),
  // cold and pooled (the pool makes the interfaces ahead).
  sb::SandboxSpec net_spec = spec, pooled_net_spec = pooled_spec;
  net_spec.memory_bytes += 2 << 20;
  pooled_net_spec.memory_bytes += 3 << 20;
  sb::EgressPolicy open_policy;
  open_policy.dns = true;
  net_spec.egress = pooled_net_spec.egress = open_policy;
  if (engine) {
    add_brig_echo("", spec, true);
    add_brig_echo("own network, ", net_spec, false);
    engine->set_pool(pooled_spec, 2);
    engine->set_pool(pooled_net_spec, 2);
    add_brig_echo("pooled, ", pooled_spec, false);
    add_brig_echo("pooled, own network, ", pooled_net_spec, false);
  }
#else
  if (!opt.skip_brig) skipped.push_back("brig (in-process): skipped (built with BRIG_BENCH_NO_ENGINE)");
#endif

  // ---- brig, one-shot (b) ------------------------------------------------------------------
  if (!opt.skip_brig) {
    if (opt.brig.empty()) {
      skipped.push_back("brig run: skipped (no --brig PATH)");
    } else {
      auto s = add_series("brig", "(b) `brig run` true, one-shot");
      std::vector<std::string> argv = {opt.brig, "run", "--rootfs", opt.rootfs, "--", "/bin/true"};
      steps.push_back({"brig (b)", [argv](std::vector<double>& out) {
                         auto r = run_process(argv);
                         if (auto e = check_true(r); !e.empty()) return e;
                         out = {r.exit_ms};
                         return std::string{};
                       },
                       {s}});
    }
  }

  // ---- peers --------------------------------------------------------------------------------
  std::map<std::string, std::string> versions;
  auto add_process_runtime = [&](const std::string& runtime, std::function<std::vector<std::string>(bool echo)> argv_of) {
    // Validate once before measuring: a runtime that fails here is skipped with its reason.
    auto probe = run_process(argv_of(true));
    if (auto e = check_echo(probe); !e.empty()) {
      skipped.push_back(runtime + ": skipped (" + e + ")");
      return;
    }
    auto s_first = add_series(runtime, "(a) echo hi: start → first byte");
    auto s_exit = add_series(runtime, "(a) echo hi: start → exit");
    auto s_true = add_series(runtime, "(b) true, one-shot");
    steps.push_back({runtime + " (a)", [argv_of](std::vector<double>& out) {
                       auto r = run_process(argv_of(true));
                       if (auto e = check_echo(r); !e.empty()) return e;
                       out = {r.first_byte_ms, r.exit_ms};
                       return std::string{};
                     },
                     {s_first, s_exit}});
    steps.push_back({runtime + " (b)", [argv_of](std::vector<double>& out) {
                       auto r = run_process(argv_of(false));
                       if (auto e = check_true(r); !e.empty()) return e;
                       out = {r.exit_ms};
                       return std::string{};
                     },
                     {s_true}});
  };

  if (auto bwrap = find_program("bwrap")) {
    versions["bwrap"] = version_of(*bwrap);
    std::string b = *bwrap, root = opt.rootfs;
    add_process_runtime("bwrap", [b, root](bool echo) {
      std::vector<std::string> v = {b, "--unshare-all", "--die-with-parent", "--new-session",
                                    "--ro-bind", root, "/", "--proc", "/proc", "--dev", "/dev",
                                    "--tmpfs", "/tmp", "--tmpfs", "/dev/shm", "--hostname", "x", "--"};
      if (echo) v.insert(v.end(), {"/bin/echo", "hi"});
      else v.push_back("/bin/true");
      return v;
    });
  } else {
    skipped.push_back("bwrap: skipped (not installed)");
  }

  Bundles bundles;
  auto runc = find_program("runc");
  auto crun = find_program("crun");
  if (runc || crun) bundles = make_bundles(runc ? *runc : *crun, opt.rootfs);
  auto counter = std::make_shared<long>(0);
  for (auto [name, bin] : {std::pair{std::string("runc"), runc}, std::pair{std::string("crun"), crun}}) {
    if (!bin) {
      skipped.push_back(name + ": skipped (not installed)");
      continue;
    }
    versions[name] = version_of(*bin);
    if (!bundles.error.empty()) {
      skipped.push_back(name + ": skipped (bundle: " + bundles.error + ")");
      continue;
    }
    std::string b = *bin, echo = bundles.echo, truth = bundles.truth;
    std::string prefix = "brig-bench-" + std::to_string(getpid()) + "-" + name + "-";
    add_process_runtime(name, [=](bool is_echo) {
      return std::vector<std::string>{b, "run", "--bundle", is_echo ? echo : truth, prefix + std::to_string(++*counter)};
    });
  }

#ifndef BRIG_BENCH_NO_ENGINE
  if (engine && opt.isolation_check) brig_isolation_check(*engine, spec, notes);
#endif

  // ---- measure ------------------------------------------------------------------------------
  std::string started_at = utc_now(), load_before = loadavg();
  int total = opt.warmup + opt.iterations;
  double t_begin = now_ms();
  std::vector<double> out;
  for (int it = 0; it < total && !steps.empty(); ++it) {
    bool counted = it >= opt.warmup;
    // Round-robin with a rotating start, so no runtime always follows the same neighbour.
    for (size_t k = 0; k < steps.size(); ++k) {
      Step& st = steps[(static_cast<size_t>(it) + k) % steps.size()];
      out.clear();
      std::string failure = st.run(out);
      if (!counted) continue;
      if (!failure.empty()) {
        for (size_t s : st.series) series[s].failures++, series[s].last_failure = failure;
        continue;
      }
      for (size_t j = 0; j < st.series.size() && j < out.size(); ++j) series[st.series[j]].samples.push_back(out[j]);
    }
    if ((it + 1) % 20 == 0 || it + 1 == total)
      fprintf(stderr, "  %d/%d iterations (%d warm-up), %.0f s\n", it + 1, total, opt.warmup, (now_ms() - t_begin) / 1e3);
  }
  double elapsed_s = (now_ms() - t_begin) / 1e3;

  // ---- report -------------------------------------------------------------------------------
  printf("# brig startup benchmark\n\n");
  printf("- date: %s\n", started_at.c_str());
  printf("- machine: %s\n", machine_summary().c_str());
  printf("- load average before / after: %s / %s\n", load_before.c_str(), loadavg().c_str());
  printf("- rootfs: %s\n", opt.rootfs.c_str());
  printf("- iterations: %d measured + %d warm-up, runtimes interleaved round-robin; %.1f s total\n",
         opt.iterations, opt.warmup, elapsed_s);
  for (auto& [k, v] : versions) printf("- %s: %s\n", k.c_str(), v.c_str());
#ifndef BRIG_BENCH_NO_ENGINE
  if (engine)
    printf("- brig sandbox spec: memory %llu MiB (no swap), cpu %u millicpu, pids %u, disk %llu MiB, /dev/shm %llu MiB, lifetime %lld s, network %s\n",
           static_cast<unsigned long long>(spec.memory_bytes >> 20), spec.cpu_millis, spec.pids,
           static_cast<unsigned long long>(spec.disk_bytes >> 20), static_cast<unsigned long long>(spec.shm_bytes >> 20),
           static_cast<long long>(spec.lifetime.count() / 1000), spec.host_network ? "host" : "loopback only");
#endif
  printf("\n");

  double ref = NAN;
  for (auto& s : series)
    if (s.runtime == "bwrap" && s.scenario.rfind("(b)", 0) == 0) ref = percentile(s.samples, 50);

  printf("| runtime | scenario | n | p50 ms | p95 ms | mean ms | max ms | ratio vs bwrap true p50 |\n");
  printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
  for (auto& s : series) {
    double p50 = percentile(s.samples, 50);
    char ratio[32] = "n/a";
    if (!std::isnan(ref) && !std::isnan(p50) && ref > 0) snprintf(ratio, sizeof ratio, "%.2f×", p50 / ref);
    printf("| %s | %s | %zu | %s | %s | %s | %s | %s |\n", s.runtime.c_str(), s.scenario.c_str(), s.samples.size(),
           fmt_ms(p50).c_str(), fmt_ms(percentile(s.samples, 95)).c_str(), fmt_ms(mean(s.samples)).c_str(),
           fmt_ms(percentile(s.samples, 100)).c_str(), ratio);
  }
  printf("\n");
  for (auto& s : skipped) printf("%s\n", s.c_str());
  if (!skipped.empty()) printf("\n");

#ifndef BRIG_BENCH_NO_ENGINE
  if (!parts.create.empty()) {
    printf("brig (a) breakdown, p50 / p95 ms: create() %s / %s · spawn() %s / %s · spawn → first byte %s / %s · first byte → kill() done %s / %s\n\n",
           fmt_ms(percentile(parts.create, 50)).c_str(), fmt_ms(percentile(parts.create, 95)).c_str(),
           fmt_ms(percentile(parts.spawn, 50)).c_str(), fmt_ms(percentile(parts.spawn, 95)).c_str(),
           fmt_ms(percentile(parts.first, 50)).c_str(), fmt_ms(percentile(parts.first, 95)).c_str(),
           fmt_ms(percentile(parts.kill, 50)).c_str(), fmt_ms(percentile(parts.kill, 95)).c_str());
  }
  if (engine) {
    auto ps = engine->pool_stats();
    printf("brig warm pool: %llu hand-overs, %llu misses (a miss falls back to a cold create and is measured as such)\n\n",
           static_cast<unsigned long long>(ps.hits), static_cast<unsigned long long>(ps.misses));
  }
  for (auto& s : series) {
    if (s.runtime == "brig" && s.scenario.find("first byte") != std::string::npos && !std::isnan(ref)) {
      double p50 = percentile(s.samples, 50);
      if (!std::isnan(p50))
        printf("target (brig %s p50 ≤ bwrap one-shot true p50): %s ms vs %s ms: %s\n\n", s.scenario.c_str(),
               fmt_ms(p50).c_str(), fmt_ms(ref).c_str(), p50 <= ref ? "MET" : "NOT MET");
    }
  }
#endif
  for (auto& s : series)
    if (s.failures)
      printf("failures: %s %s: %d of %d (last: %s)\n", s.runtime.c_str(), s.scenario.c_str(), s.failures,
             opt.iterations, s.last_failure.c_str());
  for (auto& n : notes) printf("%s\n\n", n.c_str());
  fflush(stdout);

  // ---- clean up -----------------------------------------------------------------------------
  if (!bundles.dir.empty()) {
    std::error_code ec;
    fs::remove_all(bundles.dir, ec);
  }
#ifndef BRIG_BENCH_NO_ENGINE
  engine.reset();
  if (own_state_dir) {
    // Never recurse into a tree that still has something mounted in it.
    std::string mounts = read_text("/proc/self/mountinfo");
    if (mounts.find(" " + state_dir + "/") != std::string::npos || mounts.find(" " + state_dir + " ") != std::string::npos) {
      fprintf(stderr, "warning: mounts left under %s; not removing it\n", state_dir.c_str());
    } else {
      std::error_code ec;
      fs::remove_all(state_dir, ec);
    }
  }
#endif
  return 0;
}
