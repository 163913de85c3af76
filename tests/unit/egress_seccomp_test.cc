// brig-egress's seccomp allowlist (policy/egress_policy.h), installed for real in forked
// children: what the proxy needs works, the rest fails or kills.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <functional>
#include <vector>

#include "policy/egress_policy.h"

namespace brig::policy {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizer = true;  // the filter only logs there
#else
constexpr bool kSanitizer = false;
#endif

// Runs `body` in a child under the policy; returns its wait status. The child reports its result
// as its exit code (only async-signal-safe calls after the fork).
int in_child(const SeccompProgram& prog, const std::function<int()>& body) {
  pid_t pid = fork();
  if (pid == 0) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(100);
    struct sock_fprog f = prog.as_fprog();
    if (syscall(SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, 0, &f) != 0) _exit(101);
    _exit(body());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(EgressSeccomp, EveryRuleHasAReason) {
  for (const auto& s : egress_allowed_syscalls()) EXPECT_TRUE(s.why && *s.why) << s.syscall;
}

TEST(EgressSeccomp, AllowsWhatTheProxyDoes) {
  auto prog = compile_egress_policy();
  ASSERT_TRUE(prog) << prog.error().message();
  int status = in_child(*prog, [] {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return 1;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return 2;
    if (socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0) < 0) return 3;
    close(fd);
    return 0;
  });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(EgressSeccomp, RefusesFilesAndOtherSocketFamilies) {
  auto prog = compile_egress_policy();
  ASSERT_TRUE(prog);
  int status = in_child(*prog, [] {
    if (socket(AF_UNIX, SOCK_STREAM, 0) >= 0 || errno != EAFNOSUPPORT) return 1;
    if (socket(AF_NETLINK, SOCK_RAW, 0) >= 0 || errno != EAFNOSUPPORT) return 2;
    if (socket(AF_PACKET, SOCK_RAW, 0) >= 0 || errno != EAFNOSUPPORT) return 3;
    if (!kSanitizer && (open("/etc/passwd", O_RDONLY) >= 0 || errno != EACCES)) return 4;
    return 0;
  });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(EgressSeccomp, KillsAnythingElse) {
  if (kSanitizer) GTEST_SKIP() << "sanitizer builds log instead of killing";
  auto prog = compile_egress_policy();
  ASSERT_TRUE(prog);
  for (auto call : std::vector<std::function<int()>>{
           [] { return static_cast<int>(getuid()); },
           [] {
             char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
             execve("/bin/true", argv, nullptr);
             return 0;
           },
           [] { return static_cast<int>(fork()); },
           [] { return static_cast<int>(::kill(1, 0)); },
       }) {
    int status = in_child(*prog, call);
    ASSERT_TRUE(WIFSIGNALED(status)) << status;
    EXPECT_EQ(WTERMSIG(status), SIGSYS);
  }
}

}  // namespace
}  // namespace brig::policy
