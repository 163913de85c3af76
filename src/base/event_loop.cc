#include "base/event_loop.h"

#include <pthread.h>

#include <algorithm>

#include <boost/asio/post.hpp>

#include "base/log.h"

namespace brig {
namespace {
void name_thread(const std::string& name) { ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str()); }
}  // namespace

EventLoop::EventLoop(Options options) : options_(options) {
  if (options_.max_blocking_threads == 0) options_.max_blocking_threads = 1;
  guard_.emplace(io_.get_executor());
}

EventLoop::~EventLoop() { stop(); }

void EventLoop::start() {
  std::lock_guard lock(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  loop_ = std::thread([this] {
    loop_id_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    name_thread("brig-io");
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        // A handler that throws is a bug; keep serving everyone else.
        spdlog::error("event loop: a handler threw: {}", e.what());
      }
    }
  });
}

bool EventLoop::stopping() {
  std::lock_guard lock(mu_);
  return stopping_;
}

void EventLoop::stop() {
  std::lock_guard stop_lock(stop_mu_);
  std::vector<std::thread> workers;
  std::deque<std::function<void()>> dropped;  // destroyed unlocked: their captures may take locks
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    dropped.swap(queue_);
    workers.swap(workers_);
    exited_.clear();
  }
  cv_.notify_all();
  dropped.clear();
  for (auto& t : workers)
    if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
    else if (t.joinable()) t.detach();  // stop() called from a worker: it is on its way out
  guard_.reset();
  io_.stop();
  if (loop_.joinable()) {
    if (on_loop_thread()) loop_.detach();  // called from a handler: the thread exits after it
    else loop_.join();
  }
}

void EventLoop::post(std::function<void()> fn) { boost::asio::post(io_, std::move(fn)); }

void EventLoop::reap_exited_locked() {
  // Join workers that timed out (their threads have returned or are about to).
  for (auto it = workers_.begin(); it != workers_.end();) {
    auto done = std::find(exited_.begin(), exited_.end(), it->get_id());
    if (done == exited_.end()) {
      ++it;
      continue;
    }
    exited_.erase(done);
    it->join();
    it = workers_.erase(it);
  }
}

bool EventLoop::blocking(std::function<void()> fn) {
  std::unique_lock lock(mu_);
  if (stopping_) return false;
  queue_.push_back(std::move(fn));
  maybe_start_worker_locked();
  lock.unlock();
  cv_.notify_one();
  return true;
}

void EventLoop::maybe_start_worker_locked() {
  // More work queued than idle threads to take it: one more thread, unless one is already
  // starting. That thread, once it has taken its work, checks again; so a burst of short work
  // starts a few threads, not one each, and work queued behind threads that block (streams)
  // still gets a thread of its own, one thread start after another.
  if (queue_.size() <= idle_ || starting_ > 0 || alive_ >= options_.max_blocking_threads) return;
  reap_exited_locked();
  ++alive_;
  ++starting_;
  size_t index = next_index_++;
  workers_.emplace_back([this, index] { worker(index); });
}

size_t EventLoop::blocking_threads() {
  std::lock_guard lock(mu_);
  return alive_;
}

void EventLoop::worker(size_t index) {
  name_thread("brig-work-" + std::to_string(index));
  std::unique_lock lock(mu_);
  --starting_;
  for (;;) {
    ++idle_;
    bool woke = cv_.wait_for(lock, options_.idle_timeout, [&] { return stopping_ || !queue_.empty(); });
    --idle_;
    if (stopping_ || !woke) {
      --alive_;
      if (!stopping_) exited_.push_back(std::this_thread::get_id());
      return;
    }
    auto fn = std::move(queue_.front());
    queue_.pop_front();
    maybe_start_worker_locked();
    lock.unlock();
    try {
      fn();
    } catch (const std::exception& e) {
      spdlog::error("blocking work threw: {}", e.what());
    }
    fn = nullptr;
    lock.lock();
  }
}

}  // namespace brig
