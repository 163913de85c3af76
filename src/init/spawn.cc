#include "init/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <grp.h>
#include <termios.h>
#include <unistd.h>

#include <cstring>

#include "isolate/caps.h"
#include "sys/syscalls.h"

namespace brig::init {

UserIds ids_for(initpb::User user) {
  if (user == initpb::USER_ROOT) return {0, 0, "root", "/root"};
  return {1000, 1000, "user", "/home/user"};
}

std::string expand_path(const std::string& path, const char* home) {
  if (path.empty() || path == "~") return home;
  if (path.starts_with("~/")) return std::string(home) + path.substr(1);
  if (path[0] != '/') return std::string(home) + "/" + path;
  return path;
}

namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// What the child reports through the error pipe when it fails before exec.
struct ChildError {
  int step;
  int err;
};
enum Step : int { kStepSetsid = 1, kStepTty, kStepDup, kStepCaps, kStepIds, kStepCwd, kStepExec, kStepRlimit };

const char* step_name(int step) {
  switch (step) {
    case kStepSetsid: return "setsid";
    case kStepTty: return "set controlling terminal";
    case kStepDup: return "set up stdio";
    case kStepCaps: return "drop capabilities";
    case kStepIds: return "switch user";
    case kStepCwd: return "chdir to cwd";
    case kStepExec: return "exec";
    case kStepRlimit: return "set rlimits";
  }
  return "start";
}

std::vector<std::string> build_env(const initpb::Spawn& spec, const UserIds& ids,
                                   const std::map<std::string, std::string>& sandbox_env) {
  std::map<std::string, std::string> env = {
      {"PATH", kDefaultPath}, {"HOME", ids.home}, {"USER", ids.name}, {"LOGNAME", ids.name}};
  for (auto& [k, v] : sandbox_env) env[k] = v;
  for (auto& [k, v] : spec.env()) env[k] = v;
  if (spec.pty() && !env.count("TERM")) env["TERM"] = "xterm-256color";
  std::vector<std::string> out;
  out.reserve(env.size());
  for (auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

// execve over $PATH of the *new* environment (execvpe would use brig-init's own PATH).
int exec_search(const std::string& cmd, char* const argv[], char* const envp[], const std::string& path) {
  if (cmd.find('/') != std::string::npos) {
    ::execve(cmd.c_str(), argv, envp);
    return errno;
  }
  int last = ENOENT;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    std::string full = (dir.empty() ? "." : dir) + "/" + cmd;
    ::execve(full.c_str(), argv, envp);
    if (errno == EACCES) last = EACCES;
    else if (errno != ENOENT && errno != ENOTDIR) return errno;
    start = end + 1;
  }
  return last;
}

[[noreturn]] void child_fail(int errfd, int step) {
  ChildError e{step, errno};
  (void)!::write(errfd, &e, sizeof e);
  ::_exit(127);
}

}  // namespace

bool become_user(initpb::User user) {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s = 1; s < NSIG; ++s) ::signal(s, SIG_DFL);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  struct rlimit core = {0, 0};
  ::setrlimit(RLIMIT_CORE, &core);
  const UserIds ids = ids_for(user);
  const uint64_t keep_caps = ids.uid == 0 ? isolate::sandbox_root_caps() : 0;
  gid_t groups[] = {ids.gid};
  return isolate::apply_bounding_set(keep_caps) && ::setgroups(1, groups) == 0 &&
         ::setresgid(ids.gid, ids.gid, ids.gid) == 0 && ::setresuid(ids.uid, ids.uid, ids.uid) == 0 &&
         isolate::apply_caps(keep_caps);
}

Result<Started> spawn_process(const initpb::Spawn& spec, const std::map<std::string, std::string>& sandbox_env) {
  if (spec.cmd().empty()) return Error::make(errc::invalid_argument, "empty command");
  const UserIds ids = ids_for(spec.user());
  const std::string cwd = expand_path(spec.cwd(), ids.home);

  // Everything the child needs is prepared here: after fork it only makes syscalls.
  std::vector<std::string> env = build_env(spec, ids, sandbox_env);
  std::string path = kDefaultPath;
  for (auto& kv : env)
    if (kv.starts_with("PATH=")) path = kv.substr(5);
  std::vector<char*> envp;
  for (auto& kv : env) envp.push_back(kv.data());
  envp.push_back(nullptr);
  std::vector<std::string> args_store;
  args_store.push_back(spec.cmd());
  for (auto& a : spec.args()) args_store.push_back(a);
  std::vector<char*> argv;
  for (auto& a : args_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  const uint64_t keep_caps = ids.uid == 0 ? isolate::sandbox_root_caps() : 0;

  // Child-side fds, then parent-side fds returned to the engine.
  Fd child_in, child_out, child_err, pty_slave;
  Started started;
  if (spec.pty()) {
    Fd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!master) return Error::from_errno(errno, "posix_openpt");
    if (::grantpt(master.get()) != 0 || ::unlockpt(master.get()) != 0)
      return Error::from_errno(errno, "unlockpt");
    // TIOCGPTPEER opens the peer of *this* master without a path lookup.
    pty_slave.reset(::ioctl(master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!pty_slave) return Error::from_errno(errno, "ioctl(TIOCGPTPEER)");
    struct winsize ws = {};
    ws.ws_row = static_cast<unsigned short>(spec.rows() ? spec.rows() : 24);
    ws.ws_col = static_cast<unsigned short>(spec.cols() ? spec.cols() : 80);
    ::ioctl(master.get(), TIOCSWINSZ, &ws);
    started.fds.push_back(std::move(master));
  } else {
    int p[2];
    if (spec.stdin_pipe()) {
      if (::pipe2(p, O_CLOEXEC) != 0) return Error::from_errno(errno, "pipe2(stdin)");
      child_in.reset(p[0]);
      started.fds.emplace_back(p[1]);
    } else {
      child_in.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
      if (!child_in) return Error::from_errno(errno, "open(/dev/null)");
    }
    if (::pipe2(p, O_CLOEXEC) != 0) return Error::from_errno(errno, "pipe2(stdout)");
    started.fds.emplace_back(p[0]);
    child_out.reset(p[1]);
    if (::pipe2(p, O_CLOEXEC) != 0) return Error::from_errno(errno, "pipe2(stderr)");
    started.fds.emplace_back(p[0]);
    child_err.reset(p[1]);
  }
  int ep[2];
  if (::pipe2(ep, O_CLOEXEC) != 0) return Error::from_errno(errno, "pipe2(error)");
  Fd err_r(ep[0]), err_w(ep[1]);

  pid_t pid = ::fork();
  if (pid < 0) return Error::from_errno(errno, "fork");
  if (pid == 0) {
    // brig-init blocks signals for its signalfd; the new process starts clean.
    sigset_t all;
    sigemptyset(&all);
    ::sigprocmask(SIG_SETMASK, &all, nullptr);
    for (int s = 1; s < NSIG; ++s) ::signal(s, SIG_DFL);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    // A new session: no controlling terminal shared with anything outside (CVE-2017-5226).
    if (::setsid() < 0) child_fail(err_w.get(), kStepSetsid);
    if (spec.pty()) {
      if (::ioctl(pty_slave.get(), TIOCSCTTY, 0) != 0) child_fail(err_w.get(), kStepTty);
      for (int fd = 0; fd < 3; ++fd)
        if (::dup2(pty_slave.get(), fd) < 0) child_fail(err_w.get(), kStepDup);
    } else {
      if (::dup2(child_in.get(), 0) < 0 || ::dup2(child_out.get(), 1) < 0 || ::dup2(child_err.get(), 2) < 0)
        child_fail(err_w.get(), kStepDup);
    }
    struct rlimit core = {0, 0};
    if (::setrlimit(RLIMIT_CORE, &core) != 0) child_fail(err_w.get(), kStepRlimit);
    if (!isolate::apply_bounding_set(keep_caps)) child_fail(err_w.get(), kStepCaps);
    gid_t groups[] = {ids.gid};
    if (::setgroups(1, groups) != 0 || ::setresgid(ids.gid, ids.gid, ids.gid) != 0 ||
        ::setresuid(ids.uid, ids.uid, ids.uid) != 0)
      child_fail(err_w.get(), kStepIds);
    if (!isolate::apply_caps(keep_caps)) child_fail(err_w.get(), kStepCaps);
    // chdir after the switch, so the cwd is checked with the user's permissions. The only
    // fds open are 0-2 and CLOEXEC ones, so /proc/self/fd/N cannot lead out (CVE-2024-21626).
    if (::chdir(cwd.c_str()) != 0) child_fail(err_w.get(), kStepCwd);
    // Every fd but 0-2 closes at exec (close_range CLOEXEC, or a /proc walk as fallback).
    ::brig::sys::mark_cloexec_from(3);
    int e = exec_search(spec.cmd(), argv.data(), envp.data(), path);
    errno = e;
    child_fail(err_w.get(), kStepExec);
  }
  err_w.reset();
  ChildError ce{};
  ssize_t n;
  do n = ::read(err_r.get(), &ce, sizeof ce);
  while (n < 0 && errno == EINTR);
  if (n == sizeof ce) {
    int status;
    ::waitpid(pid, &status, 0);
    std::string what = std::string(step_name(ce.step));
    if (ce.step == kStepCwd) what += " '" + cwd + "'";
    if (ce.step == kStepExec) what += " '" + spec.cmd() + "'";
    return Error::from_errno(ce.err, what);
  }
  started.pid = pid;
  return started;
}

}  // namespace brig::init
