// Teardown: killing a sandbox removes every trace of it on the host, however it was left.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>

#include "base/util.h"
#include "security/security_helpers.h"

namespace brig::security {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// What the host holds that a sandbox could leak.
struct HostSnapshot {
  size_t mounts = 0;          // this process's mount table (the host's)
  size_t fds = 0;             // this process's open fds
  size_t zygote_fds = 0;      // the zygote's open fds
  std::set<std::string> cgroups;     // "<controller>/<name>" under brig's parents
  std::set<pid_t> sandbox_uid_procs; // host processes running as a sandbox uid (>= 2^30)
  std::set<std::string> disks;       // sandbox disk images (<state>/disks/<id>.img): ids
  size_t loops = 0;                  // loop devices backed by a file under <state>/disks
};

std::string disks_dir() { return shared_engine().state_dir() + "/disks"; }

size_t loops_backed_by(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator("/sys/block", ec)) {
    if (!e.path().filename().string().starts_with("loop")) continue;
    auto backing = read_small_file(e.path().string() + "/loop/backing_file");
    if (backing && backing->starts_with(dir + "/")) ++n;
  }
  return n;
}

HostSnapshot snapshot() {
  HostSnapshot s;
  s.mounts = count_host_mounts();
  s.fds = count_fds(::getpid());
  if (pid_t z = find_zygote()) s.zygote_fds = count_fds(z);
  for (auto& d : all_brig_cgroup_dirs()) s.cgroups.insert(d);
  for (pid_t p : processes_with_sandbox_uids()) s.sandbox_uid_procs.insert(p);
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(disks_dir(), ec))
    if (e.path().extension() == ".img") s.disks.insert(e.path().stem().string());
  s.loops = loops_backed_by(disks_dir());
  return s;
}

bool belongs_to(const std::string& cgroup_dir, const std::set<std::string>& ids) {
  auto slash = cgroup_dir.rfind('/');
  return ids.count(slash == std::string::npos ? cgroup_dir : cgroup_dir.substr(slash + 1)) > 0;
}

bool process_in(pid_t pid, const std::set<std::string>& ids) {
  for (auto& id : ids) {
    auto procs = processes_of_sandbox(id);
    if (std::find(procs.begin(), procs.end(), pid) != procs.end()) return true;
  }
  return false;
}

// What appeared since `before` and belongs to our sandboxes (other brig processes on this
// host may create sandboxes meanwhile; theirs are not ours to count).
struct Leaks {
  long long mounts = 0, fds = 0, zygote_fds = 0, loops = 0;
  std::vector<std::string> cgroups, disks;
  std::vector<pid_t> procs;
  bool none() const {
    return mounts == 0 && fds == 0 && zygote_fds == 0 && loops <= 0 && cgroups.empty() && disks.empty() && procs.empty();
  }
  std::string describe() const {
    std::ostringstream s;
    s << "mounts " << mounts << ", fds " << fds << ", zygote fds " << zygote_fds << ", cgroups [";
    for (auto& c : cgroups) s << c << " ";
    s << "], disks [";
    for (auto& d : disks) s << d << " ";
    s << "], loop devices " << loops << ", processes [";
    for (auto p : procs) s << p << " ";
    s << "]";
    return s.str();
  }
};

Leaks leaks_since(const HostSnapshot& before, const std::set<std::string>& ids) {
  HostSnapshot now = snapshot();
  Leaks l;
  l.mounts = static_cast<long long>(now.mounts) - static_cast<long long>(before.mounts);
  l.fds = static_cast<long long>(now.fds) - static_cast<long long>(before.fds);
  l.zygote_fds = static_cast<long long>(now.zygote_fds) - static_cast<long long>(before.zygote_fds);
  for (auto& c : now.cgroups)
    if (!before.cgroups.count(c) && belongs_to(c, ids)) l.cgroups.push_back(c);
  for (auto& d : now.disks)
    if (ids.count(d)) l.disks.push_back(d);
  l.loops = static_cast<long long>(now.loops) - static_cast<long long>(before.loops);
  for (pid_t p : now.sandbox_uid_procs)
    if (!before.sandbox_uid_procs.count(p) && process_in(p, ids)) l.procs.push_back(p);
  // Also anything of ours not running as a sandbox uid (it should not exist at all).
  for (auto& id : ids)
    for (pid_t p : processes_of_sandbox(id))
      if (std::find(l.procs.begin(), l.procs.end(), p) == l.procs.end()) l.procs.push_back(p);
  return l;
}

// Puts processes in a sandbox the way real workloads leave them: a plain child, a
// daemonized one (setsid, reparented to init), and one holding a file open in /dev/shm.
void populate(sandbox::Sandbox& sb) {
  sandbox::ProcessSpec sleeper;
  sleeper.cmd = "/bin/sleep";
  sleeper.args = {"1000"};
  auto s = sb.spawn(sleeper);
  ASSERT_TRUE(s) << s.error().message();
  sandbox::ProcessSpec daemon;
  daemon.cmd = "/bin/sh";
  daemon.args = {"-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 & "
                       "(exec 3>/dev/shm/held; sleep 1000) </dev/null >/dev/null 2>&1 & echo started"};
  RunOptions options;
  options.timeout = 30s;
  auto d = sb.run(daemon, options);
  ASSERT_TRUE(d) << d.error().message();
  ASSERT_EQ(d->out, "started\n") << show(*d);
}

// Create and kill 100 sandboxes (each with running, daemonized and fd-holding processes):
// zero leaked mounts, cgroups, disks, loop devices, processes and fds.
// Source: security-cases.md §5 (`e2b-dev/infra:docs/ARCHITECTURE.md`: slots are pooled and
// reclaimed); §3.4 (`TencentCloud/CubeSandbox#13`, `e2b-dev/E2B#736`: lifecycle operations that
// silently leave state behind); §4.1 Firecracker jailer (cleanup of cgroups/netns per VM).
TEST(Teardown, HundredKillsLeakNothing) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto& engine = shared_engine();
  auto spec = TestSandbox::default_spec();
  spec.memory_bytes = 128ull << 20;
  spec.shm_bytes = 8ull << 20;
  spec.disk_bytes = 64ull << 20;
  // Warm-up: the first sandbox opens what the engine keeps for its lifetime.
  {
    auto warm = engine.create(spec);
    ASSERT_TRUE(warm) << warm.error().message();
    ASSERT_TRUE(engine.kill((*warm)->id()));
  }
  const HostSnapshot before = snapshot();
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i) {
    auto sb = engine.create(spec);
    ASSERT_TRUE(sb) << "create #" << i << ": " << sb.error().message();
    const std::string id = (*sb)->id();
    ids.insert(id);
    ASSERT_NO_FATAL_FAILURE(populate(**sb)) << "sandbox #" << i;
    if (i == 0) {
      // The accounting can see a live sandbox (so an empty result later means something).
      EXPECT_GE(processes_of_sandbox(id).size(), 4u) << "cannot see the sandbox's processes from the host";
      EXPECT_FALSE(cgroup_dirs_of(id).empty()) << "cannot see the sandbox's cgroups from the host";
      EXPECT_FALSE(leaks_since(before, ids).none()) << "the leak check does not see a live sandbox";
      EXPECT_EQ(leaks_since(before, ids).disks.size(), 1u) << "the leak check does not see a live sandbox's disk";
      EXPECT_EQ(leaks_since(before, ids).loops, 1) << "the leak check does not see a live sandbox's loop device";
    }
    auto killed = engine.kill(id);
    ASSERT_TRUE(killed) << "kill #" << i << ": " << killed.error().message();
    EXPECT_FALSE((*sb)->alive());
  }
  // Give exiting tasks a moment to leave the kernel's books, then nothing may be left.
  Leaks leaks = leaks_since(before, ids);
  for (auto deadline = Clock::now() + 10s; !leaks.none() && Clock::now() < deadline;) {
    std::this_thread::sleep_for(200ms);
    leaks = leaks_since(before, ids);
  }
  EXPECT_TRUE(leaks.none()) << "after 100 create+kill: " << leaks.describe();
  for (auto& info : engine.list()) EXPECT_FALSE(ids.count(info.id)) << "the engine still lists " << info.id;
}

// kill() of a sandbox whose processes daemonized (setsid, double fork) leaves none of them
// running, removes its cgroups, and the handle answers errors rather than hanging.
// Source: security-cases.md §3.14 (`e2b-dev/code-interpreter#328`: stop that really stops);
// §4.1 Firecracker jailer (PID ns: the whole tree goes).
TEST(Teardown, KillReapsDaemonizedProcesses) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto& engine = shared_engine();
  auto created = engine.create(TestSandbox::default_spec());
  ASSERT_TRUE(created) << created.error().message();
  auto sb = *created;
  const std::string id = sb->id();
  ASSERT_NO_FATAL_FAILURE(populate(*sb));
  auto pids = processes_of_sandbox(id);
  ASSERT_GE(pids.size(), 4u) << "expected init and three sleepers";
  ASSERT_TRUE(engine.kill(id));
  auto deadline = Clock::now() + 5s;
  while (!processes_of_sandbox(id).empty() && Clock::now() < deadline) std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(processes_of_sandbox(id).empty());
  for (pid_t p : pids) {
    uint32_t uid = host_uid_of(p);
    EXPECT_TRUE(uid == UINT32_MAX || uid < (1u << 30)) << "host pid " << p << " of the sandbox still runs";
  }
  EXPECT_TRUE(cgroup_dirs_of(id).empty());
  EXPECT_FALSE(sb->alive());
  sandbox::ProcessSpec spec;
  spec.cmd = "/bin/true";
  RunOptions options;
  options.timeout = 10s;
  auto start = Clock::now();
  auto r = sb->run(spec, options);
  EXPECT_FALSE(r) << "a killed sandbox ran a command";
  auto f = sb->read_file("/etc/hostname", User::root);
  EXPECT_FALSE(f) << "a killed sandbox served a file";
  EXPECT_LT(Clock::now() - start, 10s);
  auto again = engine.kill(id);
  EXPECT_FALSE(again) << "killing twice should say not found";
  if (!again) {
    EXPECT_TRUE(again.error().is(errc::not_found)) << again.error().message();
  }
}

// Shutting an engine down leaves no cgroup behind, not even the group its state directory
// had: a host that runs brig with many state directories (CI, tests, one per tenant) must not
// accumulate empty cgroups.
// Source: security-cases.md §5 (`e2b-dev/infra:docs/ARCHITECTURE.md`: per-sandbox resources are
// pooled and reclaimed); §4.1 Firecracker jailer (cgroups cleaned up with the VM).
TEST(Teardown, EngineShutdownRemovesItsCgroupGroup) {
  BRIG_REQUIRE_SANDBOX_ENV();
  char tmpl[] = "/tmp/brig-sec-engine-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string state_dir = tmpl;
  const std::string group = sandbox::cgroup_group(state_dir);
  auto group_dirs = [&] {
    std::vector<std::string> out;
    for (const char* c : {"memory", "cpu", "cpuacct", "pids", "freezer", ""}) {
      std::string dir = std::string("/sys/fs/cgroup/") + c + (*c ? "/" : "") + group;
      if (::access(dir.c_str(), F_OK) == 0) out.push_back(dir);
    }
    return out;
  };
  {
    auto engine = sandbox::Engine::open({state_dir});
    ASSERT_TRUE(engine) << engine.error().message();
    auto sb = (*engine)->create(TestSandbox::default_spec());
    ASSERT_TRUE(sb) << sb.error().message();
    const std::string id = (*sb)->id();
    ASSERT_FALSE(group_dirs().empty()) << "no cgroup group " << group << " while the engine runs";
    for (auto& d : cgroup_dirs_of(id)) EXPECT_TRUE(has(d, "/" + group + "/")) << d;
    ASSERT_TRUE((*engine)->kill(id));
  }
  auto left = group_dirs();
  std::string listing;
  for (auto& d : left) listing += d + " ";
  EXPECT_TRUE(left.empty()) << "the engine's cgroup group outlived it: " << listing;
  for (auto& d : left) ::rmdir(d.c_str());  // tidy up after a failure
  std::error_code ec;
  std::filesystem::remove_all(state_dir, ec);
}

}  // namespace
}  // namespace brig::security
