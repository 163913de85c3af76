// EventLoop: the daemon's one event loop. A single named thread ("brig-io") runs an
// io_context that owns the listening sockets, connections, process pipes and PTYs and the
// brig-init control channels; a bounded pool of named threads ("brig-work-N") runs the work
// that blocks (a cold sandbox create, a template resolve, a synchronous handler).
//
// Nothing is detached: stop() ends the loop and joins every thread it started, in that order.
//
// Thread safety: io(), post() and blocking() may be called from any thread.
#pragma once

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
    std::chrono::seconds idle_timeout{30};
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
  bool on_loop_thread() const { return std::this_thread::get_id() == loop_id_; }

  // Runs `fn` on the loop thread.
  void post(std::function<void()> fn);
  // Runs `fn` on a pool thread; false once stopping (fn is not run).
  bool blocking(std::function<void()> fn);

  size_t blocking_threads();  // alive now, for tests and /metrics

 private:
  void worker(size_t index);

  Options options_;
  boost::asio::io_context io_{1};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_;
  std::thread loop_;
  std::thread::id loop_id_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> workers_;   // joined at stop; finished ones are reaped on start of new
  std::vector<std::thread::id> exited_;
  size_t idle_ = 0;
  size_t alive_ = 0;
  size_t next_index_ = 0;
  bool stopping_ = false;
  bool started_ = false;
};

}  // namespace brig
