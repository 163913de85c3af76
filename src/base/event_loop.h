// EventLoop: the daemon's one event loop. A single named thread ("brig-io") runs an
// io_context that owns the listening sockets, connections, process pipes and PTYs and the
// brig-init control channels; a bounded pool of named threads ("brig-work-N") runs the work
// that blocks (a cold sandbox create, a template resolve, a synchronous handler).
//
// Nothing is detached: stop() ends the loop and joins every thread it started, in that order.
//
// Thread safety: io(), post(), blocking(), on_loop_thread() and stop() may be called from any
// thread (stop() from neither the loop thread nor a pool thread: it joins them).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

namespace brig {

class EventLoop {
 public:
  struct Options {
    // Upper bound on threads running blocking work at once; more work queues for the next one
    // free. Threads start on demand and stop after idle_timeout without work.
    size_t max_blocking_threads = 64;
    std::chrono::milliseconds idle_timeout{30'000};
  };
  EventLoop() : EventLoop(Options{}) {}
  explicit EventLoop(Options options);
  ~EventLoop();  // stop()
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  boost::asio::io_context& io() { return io_; }
  // Starts the loop thread (once). Work can be posted before.
  void start();
  // Stops the loop and the pool, joining every thread. Blocking work still running is waited
  // for; queued work that has not started is dropped. Idempotent.
  void stop();
  bool stopping();
  bool on_loop_thread() const { return std::this_thread::get_id() == loop_id_.load(std::memory_order_relaxed); }

  // Runs `fn` on the loop thread.
  void post(std::function<void()> fn);
  // Runs `fn` on a pool thread; false once stopping (fn is not run).
  bool blocking(std::function<void()> fn);

  size_t blocking_threads();  // alive now, for tests and /metrics

 private:
  void worker(size_t index);
  void reap_exited_locked();
  void maybe_start_worker_locked();

  Options options_;
  boost::asio::io_context io_{1};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_;
  std::thread loop_;
  // Set by the loop thread itself before it runs anything, so a handler never misses it.
  std::atomic<std::thread::id> loop_id_{};
  std::mutex stop_mu_;  // one stop() at a time: the joins below are not reentrant
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> workers_;   // joined at stop; ones that timed out are joined by the next blocking()
  std::vector<std::thread::id> exited_;
  size_t idle_ = 0;
  size_t alive_ = 0;
  size_t starting_ = 0;  // started, not yet waiting for work
  size_t next_index_ = 0;
  bool stopping_ = false;
  bool started_ = false;
};

}  // namespace brig
