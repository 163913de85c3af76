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
  loop_id_ = loop_.get_id();
}

void EventLoop::stop() {
  std::vector<std::thread> workers;
  {
    std::lock_guard lock(mu_);
    if (stopping_ && workers_.empty() && !loop_.joinable()) return;
    stopping_ = true;
    queue_.clear();
    workers.swap(workers_);
  }
  cv_.notify_all();
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

bool EventLoop::blocking(std::function<void()> fn) {
  std::unique_lock lock(mu_);
  if (stopping_) return false;
  queue_.push_back(std::move(fn));
  if (idle_ == 0 && alive_ < options_.max_blocking_threads) {
    // Join workers that timed out before starting another (their threads have returned).
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (std::find(exited_.begin(), exited_.end(), it->get_id()) != exited_.end()) {
        exited_.erase(std::find(exited_.begin(), exited_.end(), it->get_id()));
        it->join();
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
    ++alive_;
    size_t index = next_index_++;
    workers_.emplace_back([this, index] { worker(index); });
  }
  lock.unlock();
  cv_.notify_one();
  return true;
}

size_t EventLoop::blocking_threads() {
  std::lock_guard lock(mu_);
  return alive_;
}

void EventLoop::worker(size_t index) {
  name_thread("brig-work-" + std::to_string(index));
  std::unique_lock lock(mu_);
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
