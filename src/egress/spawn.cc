#include "egress/spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace brig::egress {

Result<Spawned> spawn_proxy(const std::string& exe, const std::vector<std::string>& args,
                            const std::vector<std::string>& env) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return Error::from_errno(errno, "socketpair");
  Fd ours(sv[0]), theirs(sv[1]);
  // dup2 onto 3 clears CLOEXEC only when the numbers differ.
  if (theirs.get() == 3) {
    Fd moved(fcntl(theirs.get(), F_DUPFD_CLOEXEC, 4));
    if (!moved) return Error::from_errno(errno, "fcntl(F_DUPFD_CLOEXEC)");
    theirs = std::move(moved);
  }
  std::vector<std::string> argv_s = {exe, "egress"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  argv_s.insert(argv_s.end(), {"--control-fd", "3"});
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s = env;
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, theirs.get(), 3);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return Error::from_errno(rc, "posix_spawn(" + exe + ")");
  return Spawned{pid, std::move(ours)};
}

Result<ControlEvent> read_event(int fd, std::string& pending, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto nl = pending.find('\n'); nl != std::string::npos) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      return parse_event(line);
    }
    if (pending.size() > kMaxControlLine) return Error::make(errc::protocol, "control line longer than 1 MiB");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Error::make(errc::timed_out, "no event from brig egress in time");
    pollfd p{fd, POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno(errno, "poll(control)");
    if (n == 0) continue;
    char buf[65536];
    ssize_t got = read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Error::from_errno(errno, "read(control)");
    if (got == 0) return Error::make(errc::protocol, "brig egress closed its control channel");
    pending.append(buf, static_cast<size_t>(got));
  }
}

}  // namespace brig::egress
