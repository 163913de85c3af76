#include "init/kernel.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fd.h"
#include "base/util.h"
#include "sys/syscalls.h"

namespace brig::init {

std::map<std::string, std::string> kernel_env_overrides(const std::string& kernel_name) {
  // Figures left open at the end of a cell come back as PNG results (a template's Agg is right
  // for scripts, not for a kernel).
  if (kernel_name == "python3")
    return {{"MPLBACKEND", "module://matplotlib_inline.backend_inline"}, {"PYDEVD_DISABLE_FILE_VALIDATION", "1"}};
  // Results are data, not terminal output: no ANSI colour codes in them.
  if (kernel_name == "deno") return {{"NO_COLOR", "1"}};
  return {};
}

Result<pid_t> spawn_kernel(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                           const std::string& cwd, const std::vector<std::pair<int, int>>& fds) {
  if (argv.empty()) return Error::make(errc::invalid_argument, "a kernel without a command");
  std::vector<std::string> env_store;
  for (auto& [k, v] : env) env_store.push_back(k + "=" + v);
  std::vector<std::string> argv_store = argv;
  std::vector<char*> cargv, cenv;
  for (auto& a : argv_store) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& e : env_store) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  auto home = env.count("HOME") ? env.at("HOME") : std::string("/");
  int top = 2;
  for (auto& [child, ours] : fds) top = std::max(top, child);
  std::vector<int> high(fds.size(), -1);  // allocated here: the child must not malloc

  pid_t pid = ::fork();
  if (pid < 0) return Error::from_errno(errno, "fork a kernel");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::setsid();
    ::signal(SIGPIPE, SIG_DFL);  // the host ignores it; an ignored signal would stay ignored
    // Move every fd we pass above the targets first, so no dup2 overwrites one not yet moved.
    for (size_t i = 0; i < fds.size(); ++i)
      if ((high[i] = ::fcntl(fds[i].second, F_DUPFD_CLOEXEC, top + 1)) < 0) ::_exit(126);
    for (size_t i = 0; i < fds.size(); ++i)
      if (::dup2(high[i], fds[i].first) < 0) ::_exit(126);
    if (::chdir(cwd.c_str()) != 0) (void)!::chdir(home.c_str());
    ::brig::sys::mark_cloexec_from(top + 1);
    ::execve(cargv[0], cargv.data(), cenv.data());
    ::_exit(127);
  }
  return pid;
}

void kill_kernel(pid_t& pid) {
  if (pid <= 0) return;
  ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);
  int status;
  ::waitpid(pid, &status, 0);
  pid = -1;
}

std::string find_executable(const std::string& name, const std::string& path) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  for (auto& d : split(path, ':')) {
    if (d.empty() || d[0] != '/') continue;
    std::string p = d + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

Result<> write_private_file(const std::string& path, std::string_view content) {
  // A new regular file each time: whatever the user put at `path` (a FIFO would block the
  // host's loop on open) is replaced, not opened.
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Error::from_errno(errno, "replace " + path);
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return Error::from_errno(errno, "create " + path);
  return write_fd_all(fd.get(), content, path);
}

}  // namespace brig::init
