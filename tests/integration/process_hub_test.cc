// Processes followed on the event loop (the daemon's way), as root on the test rootfs: exits
// pushed by brig-init's channel, output read by the loop into shared chunks, backpressure
// that blocks the writer instead of growing memory, deadlines on a timer, and hubs or loops
// that go away first.
#include <dirent.h>
#include <signal.h>

#include <atomic>
#include <future>
#include <thread>

#include "fixtures/sandbox_fixture.h"
#include "core/process_hub.h"

namespace brig::testing {
namespace {

using sandbox::User;
using core::ProcessEvent;
using core::ProcessHub;
using namespace std::chrono_literals;

size_t count_dir(const char* path) {
  size_t n = 0;
  if (DIR* d = ::opendir(path)) {
    while (auto* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n;
}
size_t threads_now() { return count_dir("/proc/self/task"); }
size_t fds_now() { return count_dir("/proc/self/fd"); }

sandbox::ProcessSpec sh(const std::string& script, bool stdin_pipe = false) {
  sandbox::ProcessSpec ps;
  ps.cmd = "/bin/sh";
  ps.args = {"-c", script};
  ps.stdin_pipe = stdin_pipe;
  return ps;
}

std::shared_ptr<ProcessHub> start(TestSandbox& sb, const sandbox::ProcessSpec& spec) {
  const uint64_t before = sandbox::oom_kills(*sb);
  auto proc = sb->spawn(spec);
  if (!proc) {
    ADD_FAILURE() << "spawn: " << proc.error().message();
    return nullptr;
  }
  auto hub = ProcessHub::start(sb.shared(), std::move(*proc), spec, before);
  if (!hub) {
    ADD_FAILURE() << "ProcessHub::start: " << hub.error().message();
    return nullptr;
  }
  return *hub;
}

struct Collected {
  std::string out, err, pty;
  std::optional<ProcessEvent> end;
};

// Reads a subscription until the end event or `limit`.
Collected collect(ProcessHub& hub, uint64_t cursor, std::chrono::seconds limit = 60s) {
  Collected c;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!c.end && std::chrono::steady_clock::now() < deadline) {
    for (auto& ev : hub.next(cursor, 200ms)) {
      switch (ev.kind) {
        case ProcessEvent::stdout_data: c.out += ev.bytes(); break;
        case ProcessEvent::stderr_data: c.err += ev.bytes(); break;
        case ProcessEvent::pty_data: c.pty += ev.bytes(); break;
        case ProcessEvent::end: c.end = ev; break;
      }
    }
  }
  return c;
}

TEST(ProcessHub, StreamsBothOutputsAndTheExit) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb(TestSandbox::default_spec(), loop_engine());
  auto hub = start(sb, sh("echo out; echo err >&2; exit 3"));
  ASSERT_TRUE(hub);
  auto c = collect(*hub, hub->subscribe(/*from_start=*/true));
  ASSERT_TRUE(c.end) << "no end event";
  EXPECT_EQ(c.out, "out\n");
  EXPECT_EQ(c.err, "err\n");
  EXPECT_EQ(c.end->status.exit_code, 3);
  EXPECT_EQ(c.end->status.signal, 0);
  EXPECT_FALSE(c.end->killed_by_deadline);
  EXPECT_FALSE(c.end->oom_killed);
  EXPECT_TRUE(hub->finished());
  ASSERT_TRUE(hub->exit_status());
  EXPECT_EQ(hub->exit_status()->exit_code, 3);
}

TEST(ProcessHub, NeedsTheEventLoop) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;  // the engine without a loop
  auto spec = sh("true");
  auto proc = sb->spawn(spec);
  ASSERT_TRUE(proc) << proc.error().message();
  auto hub = ProcessHub::start(sb.shared(), std::move(*proc), spec, 0);
  ASSERT_FALSE(hub);
  EXPECT_TRUE(hub.error().is(errc::unsupported)) << hub.error().message();
  EXPECT_TRUE(sb->on_exit(1, [](std::optional<sandbox::ExitStatus>) {}).error().is(errc::unsupported));
}

TEST(ProcessHub, ExitIsPushedToTheCallbackAndNotKeptForWaitExit) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb(TestSandbox::default_spec(), loop_engine());
  auto spec = sh("exit 5");
  auto proc = sb->spawn(spec);
  ASSERT_TRUE(proc) << proc.error().message();
  std::promise<std::optional<sandbox::ExitStatus>> got;
  auto future = got.get_future();
  std::atomic<bool> on_loop{false};
  ASSERT_TRUE(sb->on_exit(proc->pid, [&](std::optional<sandbox::ExitStatus> st) {
    on_loop = test_loop().on_loop_thread();
    got.set_value(st);
  }));
  ASSERT_EQ(future.wait_for(30s), std::future_status::ready);
  auto st = future.get();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->exit_code, 5);
  EXPECT_TRUE(on_loop);
  auto again = sb->wait_exit(proc->pid, 0ms);
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again);  // taken by the callback
}

// Fifty processes followed at once add no thread: there is no thread per process, and their
// exits arrive by push.
TEST(ProcessHub, FiftyLiveProcessesNeedNoThreads) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb(TestSandbox::default_spec(), loop_engine());
  auto warm = start(sb, sh("true"));  // the loop and anything it starts lazily exist already
  ASSERT_TRUE(warm);
  ASSERT_TRUE(collect(*warm, warm->subscribe(true)).end);
  const size_t before = threads_now();
  std::vector<std::shared_ptr<ProcessHub>> hubs;
  for (int i = 0; i < 50; ++i) {
    auto hub = start(sb, sh("read line; echo got $line", /*stdin_pipe=*/true));
    ASSERT_TRUE(hub);
    hubs.push_back(hub);
  }
  const size_t during = threads_now();
  EXPECT_LE(during, before + 2) << "threads before " << before << ", with 50 live processes " << during;
  for (auto& h : hubs) EXPECT_FALSE(h->finished());
  for (size_t i = 0; i < hubs.size(); ++i) ASSERT_TRUE(hubs[i]->write_stdin(std::to_string(i) + "\n"));
  for (size_t i = 0; i < hubs.size(); ++i) {
    auto c = collect(*hubs[i], hubs[i]->subscribe(true), 30s);
    ASSERT_TRUE(c.end) << "process " << i << " never ended";
    EXPECT_EQ(c.out, "got " + std::to_string(i) + "\n");
    EXPECT_EQ(c.end->status.exit_code, 0);
  }
}

// A subscriber that stops reading stops the reader: the writer blocks once the backlog is
// full, and the hub holds no more than kMaxBacklog (plus one read) however much is written.
TEST(ProcessHub, StalledSubscriberBlocksTheWriterInsteadOfGrowingMemory) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb(TestSandbox::default_spec(), loop_engine());
  // 64 MiB in 64 KiB writes; after each, the count written so far goes to /tmp/progress.
  auto hub = start(sb, sh("i=0; while [ $i -lt 1024 ]; do head -c 65536 /dev/zero; i=$((i+1)); "
                          "echo $i > /tmp/progress.new; mv /tmp/progress.new /tmp/progress; done"));
  ASSERT_TRUE(hub);
  const uint64_t cursor = hub->subscribe(/*from_start=*/true);
  auto progress = [&]() -> long {
    auto r = sb->read_file("/tmp/progress", User::user);
    return r ? std::stol(*r) : -1;
  };
  // Stalled: wait until the writer stops advancing (bounded).
  long last = -1, now = progress();
  for (int i = 0; i < 60 && (now <= 0 || now != last); ++i) {
    last = now;
    std::this_thread::sleep_for(500ms);
    now = progress();
  }
  ASSERT_GT(now, 0) << "the writer never started";
  ASSERT_EQ(now, last) << "the writer never blocked";
  // Blocked with the backlog full, one read beyond it and the pipe's own buffer at most.
  const size_t limit = ProcessHub::kMaxBacklog + ProcessHub::kMaxChunk + (1 << 20);
  EXPECT_LE(static_cast<size_t>(now) * 65536, limit) << "written while stalled: " << now << " x 64 KiB";
  EXPECT_GE(static_cast<size_t>(now) * 65536, ProcessHub::kMaxBacklog / 2) << "backpressure came too early";
  EXPECT_FALSE(hub->finished());
  // Reading again lets it finish; every byte arrives, in order and once.
  auto c = collect(*hub, cursor, 120s);
  ASSERT_TRUE(c.end);
  EXPECT_EQ(c.end->status.exit_code, 0);
  EXPECT_EQ(c.out.size(), 64u << 20);
  EXPECT_EQ(c.out.find_first_not_of('\0'), std::string::npos);
  EXPECT_EQ(progress(), 1024);
}

// Nobody subscribed: the process is not held back and only the newest output is kept.
TEST(ProcessHub, WithoutSubscribersOnlyTheNewestOutputIsKept) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb(TestSandbox::default_spec(), loop_engine());
  auto hub = start(sb, sh("seq 1 3000000"));  // about 21 MB
  ASSERT_TRUE(hub);
  for (int i = 0; i < 600 && !hub->finished(); ++i) std::this_thread::sleep_for(100ms);
  ASSERT_TRUE(hub->finished()) << "a writer nobody listens to was held back";
  auto c = collect(*hub, hub->subscribe(/*from_start=*/true), 10s);
  ASSERT_TRUE(c.end);
  EXPECT_EQ(c.end->status.exit_code, 0);
  EXPECT_LE(c.out.size(), ProcessHub::kMaxBacklog);
  EXPECT_GE(c.out.size(), ProcessHub::kMaxBacklog / 2);
  ASSERT_GE(c.out.size(), 8u);
  EXPECT_EQ(c.out.substr(c.out.size() - 8), "3000000\n");
  EXPECT_NE(c.out.substr(0, 2), "1\n");
}

// Every subscriber gets the very chunk the loop read: the bytes are not copied per subscriber.
TEST(ProcessHub, SubscribersShareOneCopyOfTheOutput) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb(TestSandbox::default_spec(), loop_engine());
  auto hub = start(sb, sh("echo hello"));
  ASSERT_TRUE(hub);
  const uint64_t a = hub->subscribe(true), b = hub->subscribe(true);
  std::vector<ProcessEvent> ea, eb;
  for (int i = 0; i < 100 && (ea.empty() || eb.empty()); ++i) {
    if (ea.empty()) ea = hub->next(a, 100ms);
    if (eb.empty()) eb = hub->next(b, 100ms);
  }
  ASSERT_FALSE(ea.empty());
  ASSERT_FALSE(eb.empty());
  ASSERT_EQ(ea[0].kind, ProcessEvent::stdout_data);
  EXPECT_EQ(ea[0].bytes(), "hello\n");
  EXPECT_EQ(ea[0].data.get(), eb[0].data.get());
}

TEST(ProcessHub, StdinCloseAndPtyResize) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb(TestSandbox::default_spec(), loop_engine());
  auto cat = start(sb, sh("cat", /*stdin_pipe=*/true));
  ASSERT_TRUE(cat);
  const uint64_t cursor = cat->subscribe(true);
  ASSERT_TRUE(cat->write_stdin("one\n"));
  ASSERT_TRUE(cat->write_stdin("two\n"));
  ASSERT_TRUE(cat->close_stdin());
  EXPECT_FALSE(cat->write_stdin("late\n"));
  auto c = collect(*cat, cursor);
  ASSERT_TRUE(c.end);
  EXPECT_EQ(c.out, "one\ntwo\n");

  auto spec = sh("read go; stty size");
  spec.pty = true;
  spec.rows = 24;
  spec.cols = 80;
  auto term = start(sb, spec);
  ASSERT_TRUE(term);
  const uint64_t tc = term->subscribe(true);
  ASSERT_TRUE(term->resize(40, 100));
  ASSERT_TRUE(term->write_stdin("go\n"));
  EXPECT_FALSE(term->close_stdin());  // a PTY has no separate stdin
  auto t = collect(*term, tc);
  ASSERT_TRUE(t.end);
  EXPECT_NE(t.pty.find("40 100"), std::string::npos) << t.pty;
  EXPECT_TRUE(t.out.empty());
}

TEST(ProcessHub, DeadlineKillsOnATimer) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb(TestSandbox::default_spec(), loop_engine());
  auto hub = start(sb, sh("sleep 60"));
  ASSERT_TRUE(hub);
  const auto t0 = std::chrono::steady_clock::now();
  hub->set_deadline(t0 + 5s);
  hub->set_deadline(t0 + 300ms);  // the earliest wins
  hub->set_deadline(t0 + 10s);
  auto c = collect(*hub, hub->subscribe(true), 30s);
  ASSERT_TRUE(c.end);
  EXPECT_TRUE(c.end->killed_by_deadline);
  EXPECT_EQ(c.end->status.signal, SIGKILL);
  EXPECT_FALSE(c.end->oom_killed);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 300ms);
}

// The sandbox going away ends the process's stream: the channel closes and the hub learns it.
TEST(ProcessHub, SandboxKilledEndsTheStream) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb(TestSandbox::default_spec(), loop_engine());
  auto hub = start(sb, sh("sleep 60"));
  ASSERT_TRUE(hub);
  const uint64_t cursor = hub->subscribe(true);
  ASSERT_TRUE(loop_engine().kill(sb.id()));
  auto c = collect(*hub, cursor, 30s);
  ASSERT_TRUE(c.end);
  EXPECT_EQ(c.end->status.signal, SIGKILL);
}

// A hub dropped while its process runs (reads pending on the loop) closes its fds there.
TEST(ProcessHub, DestroyedWithReadsPendingClosesItsFds) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb(TestSandbox::default_spec(), loop_engine());
  ASSERT_TRUE(loop_barrier(test_loop()));
  const size_t before = fds_now();
  auto hub = start(sb, sh("sleep 60; echo never"));
  ASSERT_TRUE(hub);
  const uint64_t cursor = hub->subscribe();
  EXPECT_TRUE(hub->next(cursor, 100ms).empty());
  ASSERT_TRUE(loop_barrier(test_loop()));
  EXPECT_EQ(fds_now(), before + 2);  // stdout and stderr, registered with the loop
  const int pid = hub->pid();
  hub.reset();
  ASSERT_TRUE(loop_barrier(test_loop()));  // the close was posted before the barrier
  EXPECT_EQ(fds_now(), before);
  // The process itself lives on (it outlives its hub) until killed.
  auto procs = sb->list_processes();
  ASSERT_TRUE(procs);
  bool alive = false;
  for (auto& p : *procs) alive |= p.pid == pid;
  EXPECT_TRUE(alive);
  EXPECT_TRUE(sb->signal(pid, SIGKILL, true));
}

// The loop stopping before the hub and the sandbox: synchronous calls fail at once instead of
// waiting for a reader that is gone, and tearing everything down afterwards is clean.
TEST(ProcessHub, LoopStoppingFirstIsSafe) {
  BRIG_REQUIRE_SANDBOX_ENV();
  ScopedEngine scoped({.with_loop = true});
  auto created = scoped.engine().create(TestSandbox::default_spec());
  ASSERT_TRUE(created) << created.error().message();
  std::shared_ptr<sandbox::Sandbox> sb = *created;
  auto spec = sh("sleep 60");
  auto proc = sb->spawn(spec);
  ASSERT_TRUE(proc) << proc.error().message();
  auto hub = ProcessHub::start(sb, std::move(*proc), spec, 0);
  ASSERT_TRUE(hub) << hub.error().message();
  const uint64_t cursor = (*hub)->subscribe();
  scoped.loop()->stop();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = sb->list_processes();
  EXPECT_FALSE(r);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_TRUE((*hub)->next(cursor, 10ms).empty());
  hub->reset();
  const std::string id = sb->id();
  sb.reset();
  EXPECT_TRUE(scoped.engine().kill(id));
}

}  // namespace
}  // namespace brig::testing
