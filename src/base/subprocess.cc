#include "base/subprocess.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace brig {

Result<> run_program(const std::vector<std::string>& argv, const std::function<void(std::string_view)>& on_output) {
  if (argv.empty()) return Error::make(errc::invalid_argument, "run_program: no program");
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Error::from_errno(errno, "pipe2");
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  // dup2 onto 1 and 2 clears their close-on-exec flag; every other fd of the daemon is CLOEXEC.
  ::posix_spawn_file_actions_adddup2(&actions, p[1], 1);
  ::posix_spawn_file_actions_adddup2(&actions, p[1], 2);
  ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // A fixed environment: a library does not pass the daemon's own on (settings come as
  // parameters), and the tools it runs need no more.
  static char path[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  static char lang[] = "LC_ALL=C.UTF-8";
  static char home[] = "HOME=/root";
  char* envp[] = {path, lang, home, nullptr};
  // Looked up in that PATH, not the daemon's.
  std::string program = argv[0];
  if (program.find('/') == std::string::npos)
    for (const char* dir : {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"})
      if (std::string candidate = std::string(dir) + "/" + argv[0]; ::access(candidate.c_str(), X_OK) == 0) {
        program = candidate;
        break;
      }
  pid_t pid = -1;
  int err = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, args.data(), envp);
  ::posix_spawn_file_actions_destroy(&actions);
  ::close(p[1]);
  if (err != 0) {
    ::close(p[0]);
    if (err == ENOENT) return Error::make(errc::unsupported, argv[0] + " is not installed");
    return Error::from_errno(err, "posix_spawn(" + argv[0] + ")");
  }
  char buf[8192];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    on_output(std::string_view(buf, static_cast<size_t>(n)));
  }
  ::close(p[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return ok();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) return Error::make(errc::unsupported, argv[0] + " is not installed");
  return Error::make(errc::invalid_argument,
                     argv[0] + " failed (exit status " +
                         std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) + ")");
}

Result<> run_program(const std::vector<std::string>& argv, size_t keep) {
  std::string tail;
  auto r = run_program(argv, [&](std::string_view out) {
    tail.append(out);
    if (tail.size() > keep) tail.erase(0, tail.size() - keep);
  });
  if (r) return r;
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
  if (tail.empty()) return r;
  return Error(r.error().code(), r.error().message() + ": " + tail);
}

}  // namespace brig
