// The daemon's event loop: work posted runs on the one named loop thread; blocking work runs on
// a bounded pool of named threads that start on demand and end when idle; stop() joins every
// thread it started and drops work that had not started.
#include "base/event_loop.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

namespace brig {
namespace {

using namespace std::chrono_literals;

std::string thread_name() {
  char name[32] = {};
  ::pthread_getname_np(::pthread_self(), name, sizeof name);
  return name;
}

// The threads brig started (named brig-*): sanitizer runtimes add threads of their own.
size_t threads_in_process() {
  size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(e.path() / "comm");
    std::string name;
    std::getline(comm, name);
    n += name.starts_with("brig-");
  }
  return n;
}

// Polls `pred` for up to `limit` (tests wait for threads to come and go).
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 5s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

TEST(EventLoop, PostRunsOnTheNamedLoopThread) {
  EventLoop loop;
  std::promise<std::pair<std::string, bool>> where;
  loop.post([&] { where.set_value({thread_name(), loop.on_loop_thread()}); });  // before start: kept
  loop.start();
  auto f = where.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  auto [name, on_loop] = f.get();
  EXPECT_EQ(name, "brig-io");
  EXPECT_TRUE(on_loop);
  EXPECT_FALSE(loop.on_loop_thread());
  loop.stop();
}

TEST(EventLoop, BlockingWorkRunsOnNamedPoolThreadsNeverMoreThanTheBound) {
  EventLoop loop(EventLoop::Options{.max_blocking_threads = 2, .idle_timeout = 10s});
  loop.start();
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> running{0}, most{0}, done{0};
  std::set<std::string> names;
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(loop.blocking([&] {
      int now = ++running;
      for (int m = most; now > m && !most.compare_exchange_weak(m, now);) {
      }
      {
        std::unique_lock lock(mu);
        names.insert(thread_name());
        cv.wait_for(lock, 10s, [&] { return release; });
      }
      --running;
      ++done;
    }));
  // Two run, three wait for a free thread.
  EXPECT_TRUE(eventually([&] { return running == 2; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(running, 2);
  EXPECT_EQ(loop.blocking_threads(), 2u);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  EXPECT_TRUE(eventually([&] { return done == 5; }));
  EXPECT_EQ(most, 2);
  std::lock_guard lock(mu);
  for (auto& n : names) EXPECT_TRUE(n.starts_with("brig-work-")) << n;
}

TEST(EventLoop, OneBusyThreadDoesNotHoldBackTheNextWork) {
  // A long handler (a stream) on the only idle thread must not make new work queue behind it.
  EventLoop loop(EventLoop::Options{.max_blocking_threads = 4, .idle_timeout = 10s});
  std::promise<void> warm;
  loop.blocking([&] { warm.set_value(); });
  warm.get_future().wait();
  ASSERT_TRUE(eventually([&] { return loop.blocking_threads() == 1; }));
  std::promise<void> second_ran;
  std::atomic<bool> release{false};
  loop.blocking([&] { eventually([&] { return release.load(); }, 10s); });
  loop.blocking([&] { second_ran.set_value(); });
  EXPECT_EQ(second_ran.get_future().wait_for(5s), std::future_status::ready);
  release = true;
}

TEST(EventLoop, IdleThreadsEndAndNewOnesStartOnDemand) {
  EventLoop loop(EventLoop::Options{.max_blocking_threads = 4, .idle_timeout = 100ms});
  std::atomic<int> ran{0};
  for (int i = 0; i < 3; ++i) loop.blocking([&] { ++ran; });
  EXPECT_TRUE(eventually([&] { return ran == 3; }));
  EXPECT_TRUE(eventually([&] { return loop.blocking_threads() == 0; }));
  loop.blocking([&] { ++ran; });  // joins the ended threads, starts a new one
  EXPECT_TRUE(eventually([&] { return ran == 4; }));
}

TEST(EventLoop, WorkThatThrowsDoesNotEndThePool) {
  EventLoop loop(EventLoop::Options{.max_blocking_threads = 1});
  loop.blocking([] { throw std::runtime_error("a bug"); });
  std::promise<void> after;
  loop.blocking([&] { after.set_value(); });
  EXPECT_EQ(after.get_future().wait_for(5s), std::future_status::ready);
}

TEST(EventLoop, StopWaitsForRunningWorkDropsQueuedWorkAndJoinsEverything) {
  const size_t threads_before = threads_in_process();
  auto loop = std::make_unique<EventLoop>(EventLoop::Options{.max_blocking_threads = 1, .idle_timeout = 10s});
  loop->start();
  std::atomic<bool> started{false}, finished{false}, queued_ran{false};
  loop->blocking([&] {
    started = true;
    std::this_thread::sleep_for(200ms);
    finished = true;
  });
  loop->blocking([&] { queued_ran = true; });  // waits for the only thread
  ASSERT_TRUE(eventually([&] { return started.load(); }));
  loop->stop();
  EXPECT_TRUE(finished);       // stop waited for it
  EXPECT_FALSE(queued_ran);    // and dropped what had not started
  EXPECT_EQ(loop->blocking_threads(), 0u);
  EXPECT_FALSE(loop->blocking([] {}));  // refused once stopping
  EXPECT_TRUE(loop->stopping());
  loop->stop();  // idempotent
  loop.reset();
  EXPECT_EQ(threads_in_process(), threads_before);  // the loop thread and the worker were joined
}

TEST(EventLoop, StopBeforeStartAndConcurrentStops) {
  {
    EventLoop never_started;
    never_started.stop();
  }
  EventLoop loop;
  loop.start();
  loop.blocking([] { std::this_thread::sleep_for(50ms); });
  std::thread a([&] { loop.stop(); }), b([&] { loop.stop(); });
  a.join();
  b.join();
  EXPECT_EQ(loop.blocking_threads(), 0u);
}

}  // namespace
}  // namespace brig
