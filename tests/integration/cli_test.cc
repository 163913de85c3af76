// The brig binary as a user runs it: exit codes, streams, errors, --help.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "fixtures/sandbox_fixture.h"

namespace brig::testing {
namespace {

struct Cli {
  int code;
  std::string out;
};

// Runs `brig args...` through the shell with stderr folded into stdout (`env`: VAR=value ...).
Cli brig(const std::string& args, const std::string& stdin_text = "", const std::string& env = "") {
  std::string cmd = (env.empty() ? "" : "env " + env + " ") + brig_binary() + " " + args + " 2>&1";
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
  EXPECT_NE(r.out.find("[ok  ] sandbox disks: ext4 yes, /dev/loop-control yes, mkfs.ext4 yes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("brig can run sandboxes"), std::string::npos);
}

// A file in a fresh temporary directory (removed by the caller with the directory).
std::string temp_file(const std::string& dir, const std::string& name, const std::string& text) {
  std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// `brig serve --print-config` shows the configuration the daemon would run with: the file of
// --config, the environment over it, flags over both; printed, it reads back the same.
TEST(Cli, ServePrintConfigReflectsTheFileThenTheEnvironmentThenFlags) {
  char tmpl[] = "/tmp/brig-config-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string file = temp_file(dir, "brig.toml",
                               "[server]\nlisten = \"127.0.0.1:5555\"\npool_size = 3\nstate_dir = \"" + dir +
                                   "/state\"\n[sandbox]\nmemory_mib = 2048\n[limits]\nwatchers = 9\n");
  auto r = brig("serve --config " + file + " --print-config");
  EXPECT_EQ(r.code, 0) << r.out;
  for (std::string line : std::vector<std::string>{"listen = \"127.0.0.1:5555\"\n", "pool_size = 3\n", "memory_mib = 2048  # 2 GiB\n",
                           "watchers = 9\n", "state_dir = \"" + dir + "/state\"\n", "max_connections = 1024\n"})
    EXPECT_NE(r.out.find(line), std::string::npos) << line << " not in:\n" << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/state")) << "printing the configuration must not start anything";

  r = brig("serve --config " + file + " --print-config", "", "BRIG_SERVER_POOL_SIZE=4 BRIG_LIMITS_WATCHERS=10");
  EXPECT_NE(r.out.find("pool_size = 4\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("watchers = 10\n"), std::string::npos) << r.out;
  r = brig("serve --config " + file + " --pool 5 --set limits.watchers=11 --print-config", "", "BRIG_SERVER_POOL_SIZE=4");
  EXPECT_NE(r.out.find("pool_size = 5\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("watchers = 11\n"), std::string::npos) << r.out;

  // What it prints is a configuration file that gives the same configuration.
  std::string printed = temp_file(dir, "printed.toml", r.out);
  auto again = brig("serve --config " + printed + " --print-config");
  EXPECT_EQ(again.code, 0) << again.out;
  EXPECT_EQ(again.out, r.out);
  std::filesystem::remove_all(dir);
}

TEST(Cli, ABadConfigurationIsAClearErrorAndANonZeroExit) {
  char tmpl[] = "/tmp/brig-config-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  struct Case {
    std::string text, expected;
  };
  for (auto& c : std::vector<Case>{
           {"[server]\npool_size = 100\n", "brig.toml:2:13: server.pool_size = 100 is out of bounds: it must be from 0 to 64"},
           {"[limits]\nwatcher = 1\n", "brig.toml:2:1: unknown key limits.watcher"},
           {"[server]\npool_size = \"2\"\n", "server.pool_size wants an integer"},
           {"[server\n", "brig.toml:1:"},
       }) {
    std::string file = temp_file(dir, "brig.toml", c.text);
    for (std::string verb : {"serve", "run --rootfs /nonexistent -- true", "sandbox list"}) {
      auto r = brig("--config " + file + " " + verb);
      EXPECT_EQ(r.code, 2) << verb << ": " << r.out;
      EXPECT_NE(r.out.find("brig: configuration: " + file.substr(0, file.size() - 9)), std::string::npos) << r.out;
      EXPECT_NE(r.out.find(c.expected), std::string::npos) << c.expected << " not in: " << r.out;
    }
  }
  auto r = brig("serve --config " + dir + "/missing.toml --print-config");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("read the configuration file " + dir + "/missing.toml"), std::string::npos) << r.out;
  r = brig("serve --print-config", "", "BRIG_CODE_MODE_TIMEOUT_MS=5");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("environment BRIG_CODE_MODE_TIMEOUT_MS: mcp.code_mode_timeout_ms = 5 is out of bounds"),
            std::string::npos)
      << r.out;
  r = brig("serve --pool 65 --print-config");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--pool: server.pool_size = 65 is out of bounds"), std::string::npos) << r.out;
  std::filesystem::remove_all(dir);
}

// The daemon runs with what the file says: its address, its state directory.
TEST(Cli, ServeListensWhereTheConfigurationSays) {
  BRIG_REQUIRE_SANDBOX_ENV();
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);  // SAFETY: sockaddr_in is a sockaddr
  getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);                // SAFETY: as above
  const int port = ntohs(addr.sin_port);
  close(s);
  char tmpl[] = "/tmp/brig-config-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string file = temp_file(dir, "brig.toml",
                               "[server]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\npool_size = 0\nstate_dir = \"" +
                                   dir + "/state\"\n");
  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    execl(brig_binary().c_str(), "brig", "--config", file.c_str(), "serve", nullptr);
    _exit(127);
  }
  close(out[1]);
  std::string banner;
  char buf[4096];
  for (int i = 0; i < 300 && banner.find("E2B_DOMAIN") == std::string::npos; ++i) {  // 30 s at most
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    banner.append(buf, static_cast<size_t>(n));
  }
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  close(out[0]);
  EXPECT_NE(banner.find("listening on http://127.0.0.1:" + std::to_string(port) + " (state in " + dir + "/state)"),
            std::string::npos)
      << banner;
  EXPECT_TRUE(std::filesystem::exists(dir + "/state/brig.db"));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::filesystem::remove_all(dir);
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
  const std::string disk = state + "/disks/" + id + ".img";
  EXPECT_TRUE(std::filesystem::exists(disk));
  auto r = brig("--state-dir " + state + " --log-level info run --rootfs " + test_rootfs() + " -- true");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("reaped 1 sandbox"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(group + "/" + id));
  EXPECT_FALSE(std::filesystem::exists("/sys/fs/cgroup/memory/" + sandbox::cgroup_group(state) + "/" + id));
  EXPECT_FALSE(std::filesystem::exists(disk)) << "the crashed brig's sandbox disk was not reaped";
  std::filesystem::remove_all(state);
}

}  // namespace
}  // namespace brig::testing
