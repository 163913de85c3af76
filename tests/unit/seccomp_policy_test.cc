// The baseline seccomp policy, checked by installing it in a forked child (installing it is
// irreversible) and observing how denied calls fail, and how a non-native ABI call dies.
#include "policy/seccomp_policy.h"

#include <gtest/gtest.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <set>

#include "sys/syscalls.h"

namespace brig::policy {
namespace {

// Runs `body` in a child under the policy; returns the raw wait status.
int run_under_policy(const std::function<int()>& body) {
  auto prog = compile_baseline_policy();
  EXPECT_TRUE(prog) << prog.error().message();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    struct sock_fprog fp = prog->as_fprog();
    if (sys::seccomp_set_filter(0, &fp) != 0) _exit(100);
    _exit(body());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// The child exits with the errno of the call (0 if it succeeded).
int errno_of(const std::function<long()>& call) {
  int status = run_under_policy([&] { return call() < 0 ? errno : 0; });
  EXPECT_TRUE(WIFEXITED(status)) << "child died with signal " << WTERMSIG(status);
  return WEXITSTATUS(status);
}

TEST(SeccompPolicy, CompilesWithinBpfLimits) {
  auto prog = compile_baseline_policy();
  ASSERT_TRUE(prog) << prog.error().message();
  EXPECT_GT(prog->filter.size(), 50u);
  EXPECT_LE(prog->filter.size(), static_cast<size_t>(BPF_MAXINSNS));
}

// The compiled program is reviewed as data: any change to the policy (or to libseccomp's
// output) shows up as a diff of src/policy/golden/baseline_x86_64.bpf.txt in review.
// Regenerate with BRIG_UPDATE_GOLDEN=1 after checking the change is intended.
TEST(SeccompPolicy, MatchesTheReviewedGoldenDump) {
  auto prog = compile_baseline_policy();
  ASSERT_TRUE(prog) << prog.error().message();
  std::string dump;
  char line[64];
  for (auto& f : prog->filter) {
    std::snprintf(line, sizeof line, "%04x %3u %3u 0x%08x\n", f.code, f.jt, f.jf, f.k);
    dump += line;
  }
  const std::string path = std::string(BRIG_SOURCE_DIR) + "/src/policy/golden/baseline_x86_64.bpf.txt";
  if (std::getenv("BRIG_UPDATE_GOLDEN")) {
    std::ofstream(path) << dump;
    GTEST_SKIP() << "golden dump rewritten: " << path;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << "missing " << path << " (run with BRIG_UPDATE_GOLDEN=1)";
  std::stringstream golden;
  golden << in.rdbuf();
  EXPECT_EQ(dump, golden.str()) << "the seccomp program changed; review it and regenerate the golden dump";
}

TEST(SeccompPolicy, EveryRuleSaysWhy) {
  std::set<std::string> names;
  for (auto& r : baseline_rules()) {
    EXPECT_TRUE(r.why && *r.why) << r.syscall;
    EXPECT_TRUE(names.insert(r.syscall).second) << "duplicate rule " << r.syscall;
  }
}

TEST(SeccompPolicy, DeniesDangerousCalls) {
  EXPECT_EQ(errno_of([] { return syscall(SYS_bpf, 0, nullptr, 0); }), EPERM);
  EXPECT_EQ(errno_of([] { return syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0); }), EPERM);
  EXPECT_EQ(errno_of([] { return syscall(SYS_userfaultfd, 0); }), EPERM);
  EXPECT_EQ(errno_of([] { return syscall(SYS_io_uring_setup, 1, nullptr); }), EPERM);
  EXPECT_EQ(errno_of([] { return syscall(SYS_keyctl, 0, 0, 0, 0, 0); }), EPERM);
  EXPECT_EQ(errno_of([] { return syscall(SYS_unshare, CLONE_NEWUSER); }), EPERM);
  EXPECT_EQ(errno_of([] { return syscall(SYS_clone3, nullptr, 0); }), ENOSYS);
  EXPECT_EQ(errno_of([] { return syscall(SYS_socket, 40 /* AF_VSOCK */, 1, 0); }), EAFNOSUPPORT);
  EXPECT_EQ(errno_of([] { return syscall(SYS_personality, 0x0040000 /* ADDR_NO_RANDOMIZE */); }), EPERM);
}

TEST(SeccompPolicy, AllowsOrdinaryCalls) {
  EXPECT_EQ(errno_of([] { return syscall(SYS_getpid); }), 0);
  EXPECT_EQ(errno_of([] { return syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0); }), 0);
  EXPECT_EQ(errno_of([] { return syscall(SYS_personality, 0xffffffff); }), 0);  // query only
  EXPECT_EQ(errno_of([] {
              pid_t p = fork();
              if (p == 0) _exit(0);
              return p < 0 ? -1L : static_cast<long>(waitpid(p, nullptr, 0));
            }),
            0);
}

TEST(SeccompPolicy, KillsNonNativeAbi) {
  // getpid through the i386 entry point (int 0x80): a different syscall table.
  int status = run_under_policy([] {
    long ret;
    asm volatile("int $0x80" : "=a"(ret) : "a"(20) : "memory");
    return 0;
  });
  ASSERT_TRUE(WIFSIGNALED(status)) << "int 0x80 survived";
  EXPECT_EQ(WTERMSIG(status), SIGSYS);
}

}  // namespace
}  // namespace brig::policy
