// The brig binary as a user runs it: exit codes, streams, errors, --help.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "fixtures/sandbox_fixture.h"

namespace brig::testing {
namespace {

struct Cli {
  int code;
  std::string out;
};

// Runs `brig args...` through the shell with stderr folded into stdout.
Cli brig(const std::string& args, const std::string& stdin_text = "") {
  std::string cmd = brig_binary() + " " + args + " 2>&1";
  if (!stdin_text.empty()) cmd = "printf '%s' '" + stdin_text + "' | " + cmd;
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

// Does a process whose command line starts with `cmd` live in this cgroup?
bool cgroup_runs(const std::filesystem::path& cgroup, const std::string& cmd) {
  FILE* f = fopen((cgroup / "cgroup.procs").c_str(), "r");
  if (!f) return false;
  bool found = false;
  int pid;
  while (!found && fscanf(f, "%d", &pid) == 1) {
    char buf[64] = {};
    if (FILE* c = fopen(("/proc/" + std::to_string(pid) + "/cmdline").c_str(), "r")) {
      size_t n = fread(buf, 1, sizeof buf - 1, c);
      found = std::string(buf, n).rfind(cmd, 0) == 0;
      fclose(c);
    }
  }
  fclose(f);
  return found;
}

std::string state_flag() { return "--state-dir " + shared_engine().state_dir(); }

TEST(Cli, RunPropagatesExitCodeAndOutput) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto r = brig(state_flag() + " run --rootfs " + test_rootfs() + " -- sh -c 'echo hi; exit 42'");
  EXPECT_EQ(r.code, 42);
  EXPECT_EQ(r.out, "hi\n");
}

TEST(Cli, RunForwardsStdinWithDashI) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto r = brig(state_flag() + " run -i --rootfs " + test_rootfs() + " -- tr a-z A-Z", "shout");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "SHOUT");
}

TEST(Cli, RunTimeoutExits124) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto r = brig(state_flag() + " run --timeout 1s --rootfs " + test_rootfs() + " -- sleep 30");
  EXPECT_EQ(r.code, 124);
  EXPECT_NE(r.out.find("timed out"), std::string::npos) << r.out;
}

TEST(Cli, RunOutOfMemoryExits137AndSaysSo) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto r = brig(state_flag() + " run --memory 64M --rootfs " + test_rootfs() +
                " -- python3 -c 'x = bytearray(512 << 20)'");
  EXPECT_EQ(r.code, 137) << r.out;
  EXPECT_NE(r.out.find("out of memory"), std::string::npos) << r.out;
}

TEST(Cli, BadInputIsAClearErrorNotACrash) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto r = brig(state_flag() + " run --memory lots --rootfs " + test_rootfs() + " -- true");
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.out.find("invalid size 'lots'"), std::string::npos) << r.out;
  r = brig(state_flag() + " run --rootfs /nonexistent -- true");
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.out.find("not a directory"), std::string::npos) << r.out;
  r = brig(state_flag() + " run --rootfs " + test_rootfs() + " -- /no/such/binary");
  EXPECT_EQ(r.code, 127);
  r = brig(state_flag() + " run --template nosuch -- true");
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.out.find("template 'nosuch' not found"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("brig template list"), std::string::npos) << r.out;
  r = brig("frobnicate");
  EXPECT_NE(r.code, 0);
}

TEST(Cli, HelpTeaches) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto r = brig("run --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("Examples:"), std::string::npos);
  EXPECT_NE(r.out.find("--memory"), std::string::npos);
  EXPECT_EQ(brig("--help").code, 0);
}

TEST(Cli, DoctorReportsThisHost) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto r = brig("doctor");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("cgroups: driver v"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("brig can run sandboxes"), std::string::npos);
}

// A brig process killed with SIGKILL leaves a registry row and cgroups; its sandbox's init
// saw the control channel close and died. The next engine on the same state dir reaps both.
TEST(Cli, CrashedBrigIsReapedByTheNextOne) {
  BRIG_REQUIRE_SANDBOX_ENV();
  char tmpl[] = "/tmp/brig-crash-XXXXXX";
  std::string state = mkdtemp(tmpl);
  pid_t pid = fork();
  if (pid == 0) {
    execl(brig_binary().c_str(), "brig", "--state-dir", state.c_str(), "run", "--rootfs", test_rootfs().c_str(),
          "--", "sleep", "60", nullptr);
    _exit(127);
  }
  const std::string group = "/sys/fs/cgroup/pids/" + sandbox::cgroup_group(state);
  // Wait for its sandbox to appear in the cgroup tree, then crash brig.
  std::string id;
  for (int i = 0; i < 100 && id.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!std::filesystem::exists(group)) continue;
    for (auto& e : std::filesystem::directory_iterator(group))
      if (cgroup_runs(e.path(), "sleep")) id = e.path().filename();
  }
  ASSERT_FALSE(id.empty()) << "the sandbox of the crashing brig never appeared";
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(std::filesystem::exists(group + "/" + id));
  auto r = brig("--state-dir " + state + " --log-level info run --rootfs " + test_rootfs() + " -- true");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("reaped 1 sandbox"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(group + "/" + id));
  EXPECT_FALSE(std::filesystem::exists("/sys/fs/cgroup/memory/" + sandbox::cgroup_group(state) + "/" + id));
  std::filesystem::remove_all(state);
}

}  // namespace
}  // namespace brig::testing
