// Resource exhaustion: a sandbox may use up what it was given and nothing more, and brig (and
// the sandbox itself) keeps answering after it tried.
#include <signal.h>

#include <chrono>
#include <thread>

#include "security/security_helpers.h"

namespace brig::security {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The sandbox still runs commands (after an attack that may have taken down its init).
void expect_sandbox_answers(TestSandbox& sb) {
  EXPECT_TRUE(sb->alive()) << "sandbox " << sb.id() << " died";
  auto r = sb.probe({"echo", "still-alive"});
  EXPECT_EQ(r.out, "still-alive\n") << show(r);
}

// Fork bomb against the pids cgroup limit.
// Source: security-cases.md §4.1, Firecracker jailer (`docs/jailer.md`: cgroups, PID ns and
// rlimits bound what a guest process tree can take); §4.1 isolate (`ioi/isolate`) process limits.
TEST(Resources, ForkBombStopsAtPidsLimit) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto spec = TestSandbox::default_spec();
  spec.pids = 64;
  TestSandbox sb(spec);
  auto r = sb.probe({"forkbomb", "100000"});
  ASSERT_PROBE_RAN(r);
  EXPECT_EQ(field(r.out, "errno"), "EAGAIN") << show(r);
  long long forked = field_num(r.out, "forked");
  EXPECT_GT(forked, 0) << show(r);
  EXPECT_LT(forked, 64) << "more tasks than the pids limit: " << show(r);
  expect_sandbox_answers(sb);
}

// Memory bomb against the hard memory limit: the kernel OOM-kills the hog inside the
// sandbox, RunResult says so, and the sandbox survives.
// Source: security-cases.md §4.1, Firecracker `docs/prod-host-setup.md` (a guest must not get
// "unbounded host memory"); user ask §3.14 (`e2b-dev/code-interpreter#328`: report truthfully
// whether the kernel state survived).
TEST(Resources, MemoryBombIsOomKilledAndSandboxSurvives) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto spec = TestSandbox::default_spec();
  spec.memory_bytes = 64ull << 20;
  spec.shm_bytes = 16ull << 20;
  TestSandbox sb(spec);
  auto r = sb.probe({"memhog", "1024"});
  EXPECT_TRUE(r.oom_killed) << show(r);
  EXPECT_EQ(r.status.signal, SIGKILL) << show(r);
  // It did run and allocate (evidence), and never got near the 1 GiB it asked for.
  EXPECT_EVIDENCE(r, "touched=16");
  EXPECT_FALSE(has(r.out, "outcome=allowed")) << show(r);
  auto usage = sb->usage();
  ASSERT_TRUE(usage) << usage.error().message();
  EXPECT_GE(usage->oom_kills, 1u);
  expect_sandbox_answers(sb);
}

// Disk fill: the sandbox's disk is a filesystem of its own whose size is the quota. Filling it
// is ENOSPC inside at the quota; its pages are cache the kernel reclaims, not memory the sandbox
// holds (a disk twice the memory limit fills without an OOM kill); the host's disk gives the
// sandbox no more than the quota, and takes back what the sandbox deletes.
// Source: security-cases.md §4.1, Firecracker `docs/prod-host-setup.md` ("unbounded host memory
// or disk otherwise"); §4.2 "Preview / file download paths" (`superserve-ai/sandbox#114`: caps);
// issue 14 (a `dd` in a 512 MiB sandbox was OOM-killed long before its 1 GiB disk was full).
TEST(Resources, DiskFillHitsEnospcInsideOnly) {
  BRIG_REQUIRE_SANDBOX_ENV();
  constexpr long long kQuota = 256ll << 20;
  constexpr long long kSlack = 64ll << 20;  // the filesystem's own blocks, and other work on this host
  auto spec = TestSandbox::default_spec();
  spec.disk_bytes = kQuota;
  spec.memory_bytes = 128ull << 20;
  spec.shm_bytes = 16ull << 20;
  TestSandbox sb(spec);

  auto df = sb.probe({"df", "/"});
  ASSERT_PROBE_RAN(df);
  // The filesystem's journal and inode tables take their share: 12% of so small a disk.
  const long long size = field_num(df.out, "size");
  EXPECT_LE(size, kQuota) << show(df);
  EXPECT_GE(size, kQuota * 8 / 10) << "the disk is not the size asked for: " << show(df);

  const std::vector<std::string> host_paths = {"/", "/tmp", "/var", shared_engine().state_dir()};
  auto before = host_free_space(host_paths);
  auto r = sb.probe({"write", "/home/user/fill", "1024"});
  ASSERT_PROBE_RAN(r);
  EXPECT_FALSE(r.oom_killed) << "writing to the disk was charged as memory: " << show(r);
  EXPECT_EQ(field(r.out, "errno"), "ENOSPC") << show(r);
  const long long written = field_num(r.out, "bytes");
  EXPECT_GT(written, size * 9 / 10) << "the fill stopped early: " << show(r);
  EXPECT_LE(written, size) << show(r);
  auto usage = sb->usage();
  ASSERT_TRUE(usage) << usage.error().message();
  EXPECT_EQ(usage->oom_kills, 0u);
  EXPECT_LT(usage->memory_bytes, spec.memory_bytes) << "the disk's cache counts as the sandbox's memory";
  EXPECT_GT(usage->disk_used_bytes, static_cast<uint64_t>(written) / 2) << "the host's disk does not hold what it wrote";

  // The host lost no more than the quota.
  ASSERT_TRUE(sb.run({"/bin/sync"}).status.exit_code == 0);
  auto filled = host_free_space(host_paths);
  ASSERT_EQ(before.size(), filled.size());
  for (size_t i = 0; i < before.size(); ++i) {
    long long drop = static_cast<long long>(before[i].avail) - static_cast<long long>(filled[i].avail);
    EXPECT_LT(drop, kQuota + kSlack)
        << "host filesystem of " << before[i].path << " lost " << drop << " bytes while the sandbox filled its disk";
  }
  // Deleting the file inside gives the space back to the host (discard punches holes in the image).
  ASSERT_TRUE(sb->remove("/home/user/fill", User::user));
  ASSERT_TRUE(sb.run({"/bin/sync"}).status.exit_code == 0);
  uint64_t used_after = usage->disk_used_bytes;
  for (auto deadline = Clock::now() + 20s; Clock::now() < deadline; std::this_thread::sleep_for(250ms)) {
    used_after = sb->usage()->disk_used_bytes;
    if (used_after < static_cast<uint64_t>(written) / 4) break;
  }
  EXPECT_LT(used_after, static_cast<uint64_t>(written) / 4) << "the sandbox deleted its file but the host kept the space";
  // After the delete the sandbox can write again.
  auto again = sb.probe({"write", "/home/user/small", "1"});
  EXPECT_EQ(field(again.out, "errno"), "none") << show(again);
}

// /dev/shm is a private tmpfs of bounded size: filling it is ENOSPC, not host memory.
// Source: security-cases.md §4.1/§4.2, isolate 2.6 (`ioi/isolate:NEWS`: /dev/shm had been shared
// between boxes).
TEST(Resources, DevShmFillHitsEnospc) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto spec = TestSandbox::default_spec();
  spec.shm_bytes = 16ull << 20;
  TestSandbox sb(spec);
  auto r = sb.probe({"write", "/dev/shm/fill", "256"});
  ASSERT_PROBE_RAN(r);
  EXPECT_EQ(field(r.out, "errno"), "ENOSPC") << show(r);
  EXPECT_LE(field_num(r.out, "bytes"), 16ll << 20) << show(r);
  EXPECT_GT(field_num(r.out, "bytes"), 8ll << 20) << show(r);
  expect_sandbox_answers(sb);
  // (Were /dev/shm the host's, this would otherwise leave the file there.)
  (void)sb->remove("/dev/shm/fill", User::user);
}

// An infinite loop is stopped by the per-command timeout, with nothing of it left running.
// Source: security-cases.md §3.14 (`e2b-dev/code-interpreter#328`: the per-request timeout was
// inert), `e2b-dev/E2B#879` (timeout not honored).
TEST(Resources, InfiniteLoopStoppedByCommandTimeout) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  RunOptions options;
  options.timeout = 2s;
  auto start = Clock::now();
  auto r = sb.probe({"spin"}, User::user, options);
  auto elapsed = Clock::now() - start;
  EXPECT_TRUE(r.timed_out) << show(r);
  EXPECT_EQ(r.status.signal, SIGKILL) << show(r);
  EXPECT_GE(elapsed, 1900ms);
  EXPECT_LT(elapsed, 15s) << "the timeout fired late";
  // Only brig-init and the ps probe itself remain.
  auto ps = sb.probe({"ps"});
  ASSERT_PROBE_RAN(ps);
  EXPECT_EQ(field_num(ps.out, "procs"), 2) << "something of the looping command survived: " << show(ps);
  expect_sandbox_answers(sb);
}

// Lifetime expiry kills the sandbox (and whatever runs in it) even though nobody asks, and
// the engine forgets it once reaped.
// Source: security-cases.md §3.3 (`e2b-dev/E2B#879`: timeout not honored), §3.16
// (`cloudflare/sandbox-sdk#102`: is an idle sandbox still billed?).
TEST(Resources, SandboxLifetimeExpiryKillsIt) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto spec = TestSandbox::default_spec();
  spec.lifetime = 2s;
  TestSandbox sb(spec);
  const std::string id = sb.id();
  // Alive at first, with a long-running process in it.
  auto r = sb.probe({"echo", "alive"});
  ASSERT_EQ(r.out, "alive\n") << show(r);
  sandbox::ProcessSpec sleeper;
  sleeper.cmd = "/usr/local/bin/brig-probe";
  sleeper.args = {"sleep", "1000"};
  auto spawned = sb->spawn(sleeper);
  ASSERT_TRUE(spawned) << spawned.error().message();
  EXPECT_FALSE(processes_of_sandbox(id).empty()) << "cannot see the sandbox's processes from the host";

  auto deadline = Clock::now() + 15s;
  while (sb->alive() && Clock::now() < deadline) std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(sb->alive()) << "sandbox " << id << " outlived its 2 s lifetime";

  shared_engine().reap();
  for (auto& info : shared_engine().list()) EXPECT_NE(info.id, id) << "the engine still lists the expired sandbox";
  EXPECT_FALSE(shared_engine().info(id)) << "info() still knows the expired sandbox";
  // Every process of it is gone, and so are its cgroups.
  deadline = Clock::now() + 5s;
  while (!processes_of_sandbox(id).empty() && Clock::now() < deadline) std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(processes_of_sandbox(id).empty());
  EXPECT_TRUE(cgroup_dirs_of(id).empty()) << "cgroup left: " << cgroup_dirs_of(id).front();
}

// A flood of output is capped at RunOptions.output_limit: the host-side collector does not
// grow without bound.
// Source: security-cases.md §4.2 "Preview / file download paths" (`superserve-ai/sandbox#114`:
// zip needed output caps).
TEST(Resources, OutputFloodIsCappedAtOutputLimit) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  RunOptions options;
  options.output_limit = 1 << 20;
  options.timeout = 60s;
  auto r = sb.run({"/usr/bin/head", "-c", "200000000", "/dev/zero"}, User::user, options);
  EXPECT_EQ(r.status.exit_code, 0) << show(r);
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(r.output_truncated);
  EXPECT_EQ(r.out.size(), 1u << 20);
}

// A command that exits without reading its stdin while brig is still feeding it must not take
// the brig process down (SIGPIPE): sandboxed code would otherwise kill the host service.
// Source: security-cases.md §3.13 (`engineer-man/piston#299`, `railwayapp/railway-ts-sdk#40`:
// stdin streamed to sandboxed commands); §3.17 (`OpenHands/OpenHands#13578`: robustness).
TEST(Resources, CommandIgnoringStdinCannotKillHostProcess) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  RunOptions options;
  options.stdin_data = std::string(8 << 20, 'x');  // far more than a pipe buffer
  options.timeout = 30s;
  // It closes its stdin at once and stays alive a moment, so brig sees the pipe break while
  // the command's output is still open (deterministic, not a race with its exit).
  auto r = sb.run({"/bin/sh", "-c", "exec 0<&-; sleep 1"}, User::user, options);
  // Getting here at all is the point: an unhandled SIGPIPE kills this (the host) process.
  EXPECT_EQ(r.status.exit_code, 0) << show(r);
  EXPECT_FALSE(r.timed_out) << show(r);
  expect_sandbox_answers(sb);
}

}  // namespace
}  // namespace brig::security
