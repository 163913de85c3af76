// The engine end to end, as root, on the test rootfs: processes, output, users, env, cwd,
// stdin, PTY, signals, files, watches, limits on lifetime, and cleanup.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <latch>
#include <thread>

#include "base/util.h"
#include "fixtures/sandbox_fixture.h"
#include "sandbox/backend.h"

namespace brig::testing {
namespace {

using sandbox::User;
using namespace std::chrono_literals;

std::string cgroup_of(const char* controller, const std::string& id) {
  return std::string("/sys/fs/cgroup/") + controller + "/" + sandbox::cgroup_group(shared_engine().state_dir()) + "/" + id;
}

TEST(Engine, RunsCommandAndReportsExitCodeAndBothStreams) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto r = sb.sh("echo out; echo err >&2; exit 7");
  EXPECT_EQ(r.status.exit_code, 7);
  EXPECT_EQ(r.status.signal, 0);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
}

TEST(Engine, ReportsKillingSignal) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto r = sb.sh("kill -TERM $$");
  EXPECT_EQ(r.status.signal, SIGTERM);
  EXPECT_EQ(r.shell_code(), 128 + SIGTERM);
}

TEST(Engine, StreamsOutputAsItIsProduced) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  sandbox::RunOptions opts;
  std::vector<std::chrono::steady_clock::time_point> chunks;
  std::string seen;
  opts.on_stdout = [&](std::string_view d) {
    chunks.push_back(std::chrono::steady_clock::now());
    seen += d;
  };
  auto r = sb.sh("echo one; sleep 0.5; echo two", User::user, opts);
  EXPECT_EQ(seen, "one\ntwo\n");
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_GE(chunks.back() - chunks.front(), 400ms);  // "one" arrived before the sleep ended
}

TEST(Engine, UserAndRootIdentities) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  EXPECT_EQ(sb.sh("id -u; id -g; echo $HOME $USER $LOGNAME; pwd").out, "1000\n1000\n/home/user user user\n/home/user\n");
  EXPECT_EQ(sb.sh("id -u; echo $HOME; pwd", User::root).out, "0\n/root\n/root\n");
}

TEST(Engine, EnvironmentOrderSandboxThenProcess) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto spec = TestSandbox::default_spec();
  spec.env = {{"A", "sandbox"}, {"B", "sandbox"}, {"HOME", "/overridden"}};
  TestSandbox sb(spec);
  sandbox::ProcessSpec ps;
  ps.cmd = "/bin/sh";
  ps.args = {"-c", "echo $A $B $HOME $PATH"};
  ps.env = {{"B", "process"}};
  auto r = sb->run(ps, {});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->out, "sandbox process /overridden /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
}

TEST(Engine, CwdExpandsTildeAndMissingCwdIsAClearError) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  ASSERT_TRUE(sb->make_dir("~/proj/src", User::user));
  sandbox::ProcessSpec ps;
  ps.cmd = "pwd";
  ps.cwd = "~/proj/src";
  auto r = sb->run(ps, {});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->out, "/home/user/proj/src\n");
  ps.cwd = "/does/not/exist";
  auto bad = sb->run(ps, {});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().sys_errno(), ENOENT);
  EXPECT_NE(bad.error().message().find("/does/not/exist"), std::string::npos) << bad.error().message();
}

TEST(Engine, CommandNotFoundIsENOENT) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  sandbox::ProcessSpec ps;
  ps.cmd = "no-such-command";
  auto r = sb->run(ps, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sys_errno(), ENOENT);
}

TEST(Engine, StdinPipeAndDevNull) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  sandbox::RunOptions opts;
  opts.stdin_data = "hello stdin\n";
  EXPECT_EQ(sb.run({"cat"}, User::user, opts).out, "hello stdin\n");
  EXPECT_EQ(sb.run({"cat"}).out, "");  // /dev/null: EOF at once
}

TEST(Engine, PtyHasATerminalAndResizes) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  sandbox::ProcessSpec ps;
  ps.cmd = "/bin/sh";
  ps.args = {"-c", "tty; stty size"};
  ps.pty = true;
  ps.rows = 33;
  ps.cols = 111;
  auto p = sb->spawn(ps);
  ASSERT_TRUE(p) << p.error().message();
  std::string out;
  char buf[4096];
  for (;;) {
    struct pollfd pfd = {p->stdout_fd.get(), POLLIN, 0};
    if (poll(&pfd, 1, 5000) <= 0) break;
    ssize_t n = read(p->stdout_fd.get(), buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  EXPECT_NE(out.find("/dev/pts/0"), std::string::npos) << out;
  EXPECT_NE(out.find("33 111"), std::string::npos) << out;
  auto ex = sb->wait_exit(p->pid, 5s);
  ASSERT_TRUE(ex && *ex);
  EXPECT_EQ((*ex)->exit_code, 0);
}

TEST(Engine, SignalsListAndBackgroundProcessesSurvive) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  sandbox::ProcessSpec ps;
  ps.cmd = "sleep";
  ps.args = {"100"};
  ps.tag = "sleeper";
  auto p = sb->spawn(ps);
  ASSERT_TRUE(p);
  auto list = sb->list_processes();
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].cmd, "sleep");
  EXPECT_EQ((*list)[0].args, std::vector<std::string>{"100"});
  EXPECT_EQ((*list)[0].tag, "sleeper");
  // The caller dropping its fds (a client disconnect) does not kill the process.
  p->stdout_fd.reset();
  p->stderr_fd.reset();
  auto still = sb->wait_exit(p->pid, 300ms);
  ASSERT_TRUE(still);
  EXPECT_FALSE(*still);
  ASSERT_TRUE(sb->signal(p->pid, SIGUSR1));
  auto ex = sb->wait_exit(p->pid, 5s);
  ASSERT_TRUE(ex && *ex);
  EXPECT_EQ((*ex)->signal, SIGUSR1);
  EXPECT_TRUE(sb->list_processes()->empty());
}

// brig-init forwards SIGTERM it receives (from the host) to every process in the sandbox.
TEST(Engine, InitForwardsSigtermToSandboxProcesses) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  sandbox::ProcessSpec ps;
  ps.cmd = "/bin/sh";
  ps.args = {"-c", "trap 'echo got-term > /tmp/term; exit 0' TERM; while true; do sleep 0.1; done"};
  auto p = sb->spawn(ps);
  ASSERT_TRUE(p);
  std::this_thread::sleep_for(300ms);
  // brig-init's host pid: the first task in the sandbox's cgroup.
  std::ifstream procs(cgroup_of("pids", sb.id()) + "/cgroup.procs");
  pid_t init = 0, pid;
  while (procs >> pid)
    if (!init || pid < init) init = pid;
  ASSERT_GT(init, 0);
  ASSERT_EQ(::kill(init, SIGTERM), 0);
  auto ex = sb->wait_exit(p->pid, 5s);
  ASSERT_TRUE(ex && *ex) << "the trap never ran";
  EXPECT_EQ((*ex)->exit_code, 0);
  EXPECT_EQ(*sb->read_file("/tmp/term", sandbox::User::user), "got-term\n");
  EXPECT_TRUE(sb->alive());  // init itself ignores the signal
}

TEST(Engine, PerCommandTimeoutKillsTheProcessGroup) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  sandbox::RunOptions opts;
  opts.timeout = 500ms;
  auto start = std::chrono::steady_clock::now();
  auto r = sb.sh("sleep 30 & sleep 30", User::user, opts);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.status.signal, SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(sb.sh("pgrep -c sleep || true").out, "0\n");
}

TEST(Engine, OutputCapTruncates) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  sandbox::RunOptions opts;
  opts.output_limit = 1000;
  auto r = sb.sh("head -c 100000 /dev/zero", User::user, opts);
  EXPECT_TRUE(r.output_truncated);
  EXPECT_EQ(r.out.size(), 1000u);
  EXPECT_EQ(r.status.exit_code, 0);
}

TEST(Engine, FileOperationsRoundTrip) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  std::string binary(256, '\0');
  for (int i = 0; i < 256; ++i) binary[static_cast<size_t>(i)] = static_cast<char>(i);
  ASSERT_TRUE(sb->write_file("/home/user/a/b/c.bin", binary, User::user));
  auto back = sb->read_file("/home/user/a/b/c.bin", User::user);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, binary);
  auto st = sb->stat("~/a/b/c.bin", User::user);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->type, sandbox::FileType::file);
  EXPECT_EQ(st->size, 256u);
  EXPECT_EQ(st->uid, 1000u);
  // Created as the user: the shell sees the same owner.
  EXPECT_EQ(sb.sh("stat -c %U:%G ~/a/b/c.bin").out, "user:user\n");
  auto listing = sb->list_dir("/home/user/a", 2, User::user);
  ASSERT_TRUE(listing);
  ASSERT_EQ(listing->size(), 2u);
  EXPECT_EQ((*listing)[0].path, "/home/user/a/b");
  EXPECT_EQ((*listing)[1].path, "/home/user/a/b/c.bin");
  ASSERT_TRUE(sb->move("/home/user/a/b/c.bin", "/home/user/d/e.bin", User::user));
  EXPECT_FALSE(sb->stat("/home/user/a/b/c.bin", User::user));
  ASSERT_TRUE(sb->remove("/home/user/a", User::user));
  EXPECT_EQ(sb->stat("/home/user/a", User::user).error().sys_errno(), ENOENT);
  auto missing = sb->read_file("/nope", User::user);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().sys_errno(), ENOENT);
}

TEST(Engine, FileOperationsRespectTheUser) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto denied = sb->write_file("/etc/brig-test", "x", User::user);
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().sys_errno(), EACCES);
  ASSERT_TRUE(sb->write_file("/etc/brig-test", "x", User::root));
  EXPECT_EQ(sb->stat("/etc/brig-test", User::root)->uid, 0u);
}

TEST(Engine, WatchDirReportsChanges) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  ASSERT_TRUE(sb->make_dir("/home/user/w", User::user));
  auto id = sb->watch("/home/user/w", true, User::user);
  ASSERT_TRUE(id) << id.error().message();
  std::vector<sandbox::WatchEvent> events;
  auto has = [&](const std::string& name, sandbox::WatchOp op) {
    for (auto& e : events)
      if (e.name == name && e.op == op) return true;
    return false;
  };
  // Takes events until `name` `op` is among them (others may come first), bounded: 5 s.
  auto until = [&](const std::string& name, sandbox::WatchOp op) {
    for (int i = 0; i < 250 && !has(name, op); ++i) {
      auto more = sb->take_watch_events(*id);
      events.insert(events.end(), more.begin(), more.end());
      if (!has(name, op)) std::this_thread::sleep_for(20ms);
    }
    return has(name, op);
  };
  // The new directory is watched once its creation is seen: files made in it from then on are
  // reported (a recursive inotify watch cannot see what a directory held before it was watched).
  sb.sh("mkdir ~/w/sub");
  EXPECT_TRUE(until("sub", sandbox::WatchOp::create));
  sb.sh("echo x > ~/w/sub/f && rm ~/w/sub/f");
  until("sub/f", sandbox::WatchOp::remove);
  EXPECT_TRUE(has("sub/f", sandbox::WatchOp::create));
  EXPECT_TRUE(has("sub/f", sandbox::WatchOp::remove));
  ASSERT_TRUE(sb->unwatch(*id));
}

TEST(Engine, ListInfoSetTimeoutAndKill) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto& engine = shared_engine();
  auto spec = TestSandbox::default_spec();
  spec.metadata = {{"owner", "test"}};
  auto sb = engine.create(spec);
  ASSERT_TRUE(sb) << sb.error().message();
  std::string id = (*sb)->id();
  auto info = engine.info(id);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->state, "running");
  EXPECT_EQ(info->metadata.at("owner"), "test");
  ASSERT_TRUE(engine.set_timeout(id, 60s));
  EXPECT_NEAR(static_cast<double>(engine.info(id)->end_at_ms - info->started_at_ms), 60'000.0, 5'000.0);
  EXPECT_TRUE(engine.set_timeout(id, 0s).error().is(errc::invalid_argument));
  ASSERT_TRUE(engine.kill(id));
  EXPECT_TRUE(engine.info(id).error().is(errc::not_found));
  EXPECT_TRUE(engine.kill(id).error().is(errc::not_found));
  EXPECT_FALSE(std::filesystem::exists(cgroup_of("memory", id)));
  EXPECT_FALSE(std::filesystem::exists(cgroup_of("pids", id)));
}

TEST(Engine, LifetimeExpiryKillsAndReaps) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto& engine = shared_engine();
  auto spec = TestSandbox::default_spec();
  spec.lifetime = 1500ms;
  auto sb = engine.create(spec);
  ASSERT_TRUE(sb);
  std::string id = (*sb)->id();
  EXPECT_TRUE((*sb)->alive());
  std::this_thread::sleep_for(2500ms);
  EXPECT_FALSE((*sb)->alive());
  EXPECT_EQ(engine.info(id)->state, "dead");
  EXPECT_GE(engine.reap(), 1u);
  EXPECT_TRUE(engine.info(id).error().is(errc::not_found));
  EXPECT_FALSE(std::filesystem::exists(cgroup_of("memory", id)));
}

// Pause (the freezer): a paused sandbox's processes make no progress and use no CPU, its
// lifetime clock stops, it is listed as paused, and it comes back where it was; a kill of a
// paused sandbox does not wait for a thaw.
TEST(Engine, PauseFreezesEverythingAndStopsTheLifetimeClock) {
  BRIG_REQUIRE_SANDBOX_ENV();
  if (!std::filesystem::exists("/sys/fs/cgroup/freezer/cgroup.procs") &&
      !std::filesystem::exists("/sys/fs/cgroup/cgroup.freeze"))
    GTEST_SKIP() << "no freezer cgroup on this host";
  auto& engine = shared_engine();
  auto spec = TestSandbox::default_spec();
  spec.lifetime = 2500ms;
  auto created = engine.create(spec);
  ASSERT_TRUE(created) << created.error().message();
  auto sb = *created;
  const std::string id = sb->id();
  // A counter that prints every 50 ms.
  sandbox::ProcessSpec ps;
  ps.cmd = "/bin/sh";
  ps.args = {"-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done"};
  auto proc = sb->spawn(ps);
  ASSERT_TRUE(proc) << proc.error().message();
  ::fcntl(proc->stdout_fd.get(), F_SETFL, O_NONBLOCK);
  auto drain = [&] {  // the last number printed so far (0: none)
    std::string all;
    char buf[4096];
    for (ssize_t n; (n = ::read(proc->stdout_fd.get(), buf, sizeof buf)) > 0;) all.append(buf, static_cast<size_t>(n));
    auto lines = split(all, '\n');
    std::erase(lines, "");
    return lines.empty() ? 0 : std::stoi(lines.back());
  };
  std::this_thread::sleep_for(300ms);
  ASSERT_GT(drain(), 0);

  ASSERT_TRUE(engine.pause(id)) << "pause";
  EXPECT_EQ(engine.info(id)->state, "paused");
  EXPECT_TRUE(engine.pause(id).error().is(errc::conflict));
  EXPECT_TRUE(engine.set_timeout(id, 60s).error().is(errc::conflict));
  const int at_pause = drain();
  const uint64_t cpu_at_pause = sb->usage()->cpu_usage_ns;
  // Past the 2.5 s it had to live: a paused sandbox does not expire, prints nothing, uses no CPU.
  std::this_thread::sleep_for(3000ms);
  EXPECT_TRUE(sb->alive());
  EXPECT_EQ(drain(), 0) << "output while paused";
  EXPECT_EQ(sb->usage()->cpu_usage_ns, cpu_at_pause);
  EXPECT_EQ(engine.info(id)->state, "paused");
  EXPECT_GT(engine.info(id)->paused_left_ms, 1000);

  ASSERT_TRUE(engine.resume(id, std::nullopt)) << "resume";
  EXPECT_TRUE(engine.resume(id, std::nullopt).error().is(errc::conflict));
  auto info = engine.info(id);
  EXPECT_EQ(info->state, "running");
  EXPECT_LE(info->end_at_ms - now_unix_ms(), 2500);  // what it had left, not a new lifetime
  std::this_thread::sleep_for(300ms);
  const int after = drain();
  EXPECT_GT(after, at_pause) << "the counter goes on from where it was";
  EXPECT_LT(after, at_pause + 20) << "and did not run while paused";
  // The clock runs again: it expires by itself.
  std::this_thread::sleep_for(3000ms);
  EXPECT_FALSE(sb->alive());

  // A paused sandbox is killed at once (a frozen task dies only once thawed: the kill thaws).
  auto other = engine.create(TestSandbox::default_spec());
  ASSERT_TRUE(other);
  const std::string other_id = (*other)->id();
  ASSERT_TRUE(engine.pause(other_id));
  auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(engine.kill(other_id));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  EXPECT_FALSE((*other)->alive());
  EXPECT_TRUE(engine.info(other_id).error().is(errc::not_found));
  EXPECT_FALSE(std::filesystem::exists(cgroup_of("freezer", other_id)));
}

// A pause to disk: the processes stop (no cgroup, no process, no loop device is left), the disk
// stays with what was written; reboot boots the sandbox again on it with the same id. A memory
// pause whose processes die (as in a host restart) keeps its disk too, and says its memory is
// lost instead of booting again by itself.
TEST(Engine, PauseToDiskKeepsTheFilesAndBootsAgainOnThem) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto& engine = shared_engine();
  auto spec = TestSandbox::default_spec();
  spec.env["KEPT"] = "env";
  auto created = engine.create(spec);
  ASSERT_TRUE(created) << created.error().message();
  const std::string id = (*created)->id();
  const std::string disk = engine.state_dir() + "/disks/" + id + ".img";
  auto sh = [&](const std::string& script) {
    auto sb = engine.get(id);
    if (!sb) return std::string("no sandbox: ") + sb.error().message();
    sandbox::ProcessSpec ps;
    ps.cmd = "/bin/sh";
    ps.args = {"-c", script};
    sandbox::RunOptions options;
    options.timeout = 30s;
    auto r = (*sb)->run(ps, options);
    return r ? r->out : "error: " + r.error().message();
  };
  ASSERT_EQ(sh("echo written > /home/user/kept; (sleep 600 &) ; echo ok"), "ok\n");

  ASSERT_TRUE(engine.pause(id, false)) << "pause to disk";
  auto info = engine.info(id);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->state, "paused");
  EXPECT_EQ(info->paused, sandbox::SandboxInfo::Paused::disk);
  EXPECT_FALSE((*created)->alive()) << "the old handle still runs";
  EXPECT_FALSE(std::filesystem::exists(cgroup_of("pids", id))) << "a stopped sandbox keeps its cgroup";
  EXPECT_TRUE(std::filesystem::exists(disk));
  EXPECT_TRUE(engine.pause(id, false).error().is(errc::conflict));
  EXPECT_TRUE(engine.resume(id, std::nullopt).error().is(errc::conflict)) << "no memory to thaw";
  EXPECT_NE(sh("true").find("is paused"), std::string::npos);
  // It is listed, and an engine reap keeps it.
  engine.reap();
  EXPECT_EQ(engine.info(id)->state, "paused");

  ASSERT_TRUE(engine.reboot(id, 60s, std::nullopt)) << "boot again";
  EXPECT_EQ(engine.info(id)->state, "running");
  EXPECT_TRUE(engine.reboot(id, 60s, std::nullopt).error().is(errc::conflict)) << "running already";
  EXPECT_EQ(sh("cat /home/user/kept; echo $KEPT; pgrep -x sleep || echo no-sleep"), "written\nenv\nno-sleep\n");

  // Frozen, then its processes die under it (a host restart would do the same).
  ASSERT_EQ(sh("echo again >> /home/user/kept; echo ok"), "ok\n");
  ASSERT_TRUE(engine.pause(id, true));
  std::ifstream procs(cgroup_of("pids", id) + "/cgroup.procs");
  for (pid_t pid; procs >> pid;) ::kill(pid, SIGKILL);
  const std::string freezer = cgroup_of("freezer", id) + "/freezer.state";
  if (std::filesystem::exists(freezer)) std::ofstream(freezer) << "THAWED";  // frozen tasks die once thawed
  for (int i = 0; i < 100 && engine.info(id)->paused == sandbox::SandboxInfo::Paused::memory; ++i) {
    std::this_thread::sleep_for(50ms);
    engine.reap();
  }
  info = engine.info(id);
  EXPECT_EQ(info->state, "paused");
  EXPECT_EQ(info->paused, sandbox::SandboxInfo::Paused::memory_lost);
  EXPECT_TRUE(engine.resume(id, std::nullopt).error().is(errc::conflict)) << "a lost memory is not thawed";
  ASSERT_TRUE(engine.reboot(id, 60s, std::nullopt));
  EXPECT_EQ(sh("cat /home/user/kept"), "written\nagain\n");

  ASSERT_TRUE(engine.kill(id));
  EXPECT_FALSE(std::filesystem::exists(disk)) << "a killed sandbox's disk stays";
}

TEST(Engine, WarmPoolHandsOverAFreshlyConfiguredSandbox) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto& engine = shared_engine();
  auto shape = TestSandbox::default_spec();
  shape.pids = 77;  // a shape of its own
  engine.set_pool(shape, 1);
  for (int i = 0; i < 200 && engine.pool_stats().ready < 1; ++i) std::this_thread::sleep_for(20ms);
  ASSERT_EQ(engine.pool_stats().ready, 1u);
  for (auto& s : engine.list()) EXPECT_NE(s.template_name, "(pool)") << "pooled sandboxes are not listed";
  auto before = engine.pool_stats();
  auto spec = shape;
  spec.env = {{"GREETING", "hello"}};
  spec.metadata = {{"who", "pool-test"}};
  spec.lifetime = 2s;
  auto sb = engine.create(spec);
  ASSERT_TRUE(sb) << sb.error().message();
  EXPECT_EQ(engine.pool_stats().hits, before.hits + 1);
  sandbox::ProcessSpec ps;
  ps.cmd = "/bin/sh";
  ps.args = {"-c", "echo $GREETING $(hostname)"};
  auto r = (*sb)->run(ps, {});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->out, "hello " + (*sb)->id() + "\n");
  auto info = engine.info((*sb)->id());
  ASSERT_TRUE(info);
  EXPECT_EQ(info->metadata.at("who"), "pool-test");
  EXPECT_EQ(info->state, "running");
  // The hand-over applied the 2 s lifetime, not the pool's hour.
  std::this_thread::sleep_for(2500ms);
  EXPECT_FALSE((*sb)->alive());
  engine.set_pool(shape, 0);
  EXPECT_EQ(engine.pool_stats().ready, 0u);
  engine.reap();
}

// Starts `n` cold creates at once on `engine` (threads released together) and returns the
// zygote's own timing of each: when its helper began (before clone3) and when the init was
// ready. The sandboxes are killed before returning.
std::vector<sandbox::SandboxHandle::CreateTrace> concurrent_creates(sandbox::Engine& engine, int n) {
  std::vector<std::shared_ptr<sandbox::Sandbox>> made(static_cast<size_t>(n));
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::latch go(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      go.arrive_and_wait();
      auto r = engine.create(TestSandbox::default_spec());
      if (r) made[static_cast<size_t>(i)] = *r;
      else errors[static_cast<size_t>(i)] = r.error().message();
    });
  for (auto& t : threads) t.join();
  std::vector<sandbox::SandboxHandle::CreateTrace> traces;
  for (size_t i = 0; i < made.size(); ++i) {
    EXPECT_TRUE(made[i]) << "create " << i << ": " << errors[i];
    if (!made[i]) continue;
    auto* handle = dynamic_cast<sandbox::SandboxHandle*>(made[i].get());
    EXPECT_NE(handle, nullptr);
    if (handle) traces.push_back(handle->create_trace());
    (void)engine.kill(made[i]->id());
  }
  return traces;
}

// The most creates that were inside the zygote at one instant.
int max_in_flight(const std::vector<sandbox::SandboxHandle::CreateTrace>& traces) {
  int most = 0;
  for (auto& t : traces) {
    int at = 0;
    for (auto& u : traces) at += u.began_ns <= t.began_ns && t.began_ns < u.ready_ns;
    most = std::max(most, at);
  }
  return most;
}

std::string describe(const std::vector<sandbox::SandboxHandle::CreateTrace>& traces) {
  int64_t first = INT64_MAX;
  for (auto& t : traces) first = std::min(first, t.began_ns);
  std::string out;
  for (auto& t : traces)
    out += "[" + std::to_string((t.began_ns - first) / 1000) + ", " + std::to_string((t.ready_ns - first) / 1000) + "] us ";
  return out;
}

TEST(Engine, ColdCreatesOfDifferentSandboxesOverlapInTheZygote) {
  BRIG_REQUIRE_SANDBOX_ENV();
  // An engine of its own: no warm pool, every create is cold.
  ScopedEngine scoped({.max_parallel_creates = 8});
  for (int round = 0; round < 3; ++round) {
    auto traces = concurrent_creates(scoped.engine(), 4);
    ASSERT_EQ(traces.size(), 4u);
    for (auto& t : traces) {
      EXPECT_GT(t.began_ns, 0);
      EXPECT_GT(t.ready_ns, t.began_ns);
    }
    // Serialised creates (the zygote's single loop before) can never overlap here.
    EXPECT_GE(max_in_flight(traces), 2) << "round " << round << ": " << describe(traces);
  }
}

TEST(Engine, OneCreateAtATimeWhenToldSo) {
  BRIG_REQUIRE_SANDBOX_ENV();
  ScopedEngine scoped({.max_parallel_creates = 1});
  auto traces = concurrent_creates(scoped.engine(), 4);
  ASSERT_EQ(traces.size(), 4u);
  EXPECT_EQ(max_in_flight(traces), 1) << describe(traces);
}

TEST(Engine, InvalidSpecsAreClientErrors) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto& engine = shared_engine();
  auto spec = TestSandbox::default_spec();
  spec.memory_bytes = 1;
  EXPECT_TRUE(engine.create(spec).error().is(errc::invalid_argument));
  spec = TestSandbox::default_spec();
  spec.rootfs = "/definitely/not/here";
  EXPECT_TRUE(engine.create(spec).error().is(errc::not_found));
  spec = TestSandbox::default_spec();
  spec.env = {{"BAD=KEY", "x"}};
  EXPECT_TRUE(engine.create(spec).error().is(errc::invalid_argument));
}

// The configuration's limits reach the engine and brig-init: an engine opened with small ones
// enforces them, on the same code paths that enforce the defaults.
TEST(Engine, ConfiguredLimitsReachTheEngineAndBrigInit) {
  BRIG_REQUIRE_SANDBOX_ENV();
  char tmpl[] = "/tmp/brig-limits-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  sandbox::EngineOptions options;
  options.state_dir = tmpl;
  options.sandbox.max_lifetime_s = 60;
  options.limits.metadata_entries = 2;
  options.limits.watched_dirs = 2;
  options.limits.env_entries = 3;
  {
    auto opened = sandbox::Engine::open(options);
    ASSERT_TRUE(opened) << opened.error().message();
    auto& engine = **opened;
    auto expect_refused = [](const Result<std::shared_ptr<sandbox::Sandbox>>& r, const std::string& why) {
      ASSERT_FALSE(r) << "created";
      EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().message();
      EXPECT_NE(r.error().message().find(why), std::string::npos) << r.error().message();
    };
    auto spec = TestSandbox::default_spec();
    spec.lifetime = 61s;
    expect_refused(engine.create(spec), "timeout must be between 1 and 60 seconds");
    spec.lifetime = 30s;
    spec.metadata = {{"a", "1"}, {"b", "2"}, {"c", "3"}};
    expect_refused(engine.create(spec), "too many metadata entries (2 at most)");
    spec.metadata = {{"a", "1"}};
    spec.env = {{"A", "1"}, {"B", "2"}, {"C", "3"}, {"D", "4"}};
    expect_refused(engine.create(spec), "too many env vars (3 at most)");
    spec.env = {{"A", "1"}};
    auto created = engine.create(spec);
    ASSERT_TRUE(created) << created.error().message();
    auto& sb = **created;
    EXPECT_TRUE(engine.set_timeout(sb.id(), 61s).error().is(errc::invalid_argument));
    EXPECT_TRUE(engine.set_timeout(sb.id(), 50s));

    // brig-init: two watched directories at most (watching one twice is one inotify watch).
    EXPECT_TRUE(sb.watch("/tmp", false, User::user));
    EXPECT_TRUE(sb.watch("/etc", false, User::user));
    auto third = sb.watch("/usr", false, User::user);
    ASSERT_FALSE(third);
    EXPECT_NE(third.error().message().find("too many watched directories (2 at most)"), std::string::npos)
        << third.error().message();

    // File metadata: brig sets two at most, and reads back at most two of what the sandbox's
    // own user sets.
    ASSERT_TRUE(sb.write_file("/tmp/f", "x", User::user));
    EXPECT_TRUE(sb.set_metadata("/tmp/f", User::user, {{"a", "1"}, {"b", "2"}}));
    EXPECT_TRUE(sb.set_metadata("/tmp/f", User::user, {{"a", "1"}, {"b", "2"}, {"c", "3"}})
                    .error()
                    .is(errc::invalid_argument));
    sandbox::ProcessSpec ps;
    ps.cmd = "python3";
    ps.args = {"-c", "import os\nfor i in range(5): os.setxattr('/tmp/f', 'user.e2b.k%d' % i, b'v')"};
    auto r = sb.run(ps, {});
    ASSERT_TRUE(r) << r.error().message();
    ASSERT_EQ(r->status.exit_code, 0) << r->err;
    auto st = sb.stat("/tmp/f", User::user);
    ASSERT_TRUE(st) << st.error().message();
    EXPECT_EQ(st->metadata.size(), 2u);
    EXPECT_TRUE(engine.kill(sb.id()));
  }
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
}

}  // namespace
}  // namespace brig::testing
