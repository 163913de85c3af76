#include "sandbox/init_channel.h"

#include <poll.h>
#include <sys/socket.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "base/event_loop.h"
#include "sys/seqpacket.h"

namespace brig::sandbox {

namespace {
constexpr size_t kMaxQueuedWatchEvents = 10'000;
// Messages read per wake-up of the loop before it lets other handlers run.
constexpr int kMessagesPerTurn = 64;
}  // namespace

// What the caller threads and the loop share. The loop's handlers hold it by shared_ptr, so it
// outlives the InitChannel until the last pending handler has run.
struct InitChannel::Core {
  Fd sock;
  EventLoop* loop = nullptr;
  std::mutex mu;
  std::condition_variable cv;
  bool reading = false;  // without a loop: a caller is reading the socket
  bool closed = false;
  uint64_t next_id = 0;
  std::map<uint64_t, Reply> replies;
  std::set<uint64_t> abandoned;  // ids whose caller stopped waiting: their replies are dropped
  std::map<int, initpb::Exited> exits;
  std::map<int, ExitCallback> exit_callbacks;
  std::vector<std::function<void()>> close_callbacks;
  std::map<uint64_t, std::deque<initpb::WatchEvent>> watch_events;
  std::map<uint64_t, std::function<void()>> watch_callbacks;
  // On a loop: the socket's registration with the reactor (touched on the loop thread only).
  std::unique_ptr<boost::asio::posix::stream_descriptor> descriptor;

  using Later = std::vector<std::function<void()>>;

  ~Core() {
    // Destroyed unread (the loop stopped first, and its io_context is going): the fd is ours
    // to close, not the descriptor's.
    if (descriptor) (void)descriptor->release();
  }

  // Files one message (mu held). Callbacks to run once mu is released go to `later`.
  void dispatch_locked(std::string data, std::vector<Fd> fds, Later& later) {
    initpb::InitMessage msg;
    if (closed || !msg.ParseFromString(data)) return;
    switch (msg.msg_case()) {
      case initpb::InitMessage::kResponse: {
        uint64_t id = msg.response().id();
        if (abandoned.erase(id)) break;  // its fds close here
        replies[id] = Reply{std::move(*msg.mutable_response()), std::move(fds)};
        break;
      }
      case initpb::InitMessage::kExited: {
        int pid = msg.exited().pid();
        if (auto it = exit_callbacks.find(pid); it != exit_callbacks.end()) {
          later.push_back([cb = std::move(it->second), ex = msg.exited()] { cb(ex); });
          exit_callbacks.erase(it);
        } else {
          exits[pid] = msg.exited();
        }
        break;
      }
      case initpb::InitMessage::kWatchEvent: {
        const uint64_t id = msg.watch_event().watch_id();
        auto& q = watch_events[id];
        if (q.size() < kMaxQueuedWatchEvents) q.push_back(msg.watch_event());
        if (auto it = watch_callbacks.find(id); it != watch_callbacks.end()) {
          later.push_back(std::move(it->second));
          watch_callbacks.erase(it);
        }
        break;
      }
      case initpb::InitMessage::MSG_NOT_SET: break;
    }
  }

  // The channel is done (peer gone or ours destroyed): every exit still awaited is reported
  // as unknown (mu held).
  void close_locked(Later& later) {
    closed = true;
    for (auto& [pid, cb] : exit_callbacks) later.push_back([cb = std::move(cb)] { cb(std::nullopt); });
    exit_callbacks.clear();
    for (auto& cb : close_callbacks) later.push_back(std::move(cb));
    close_callbacks.clear();
    watch_callbacks.clear();  // no more events will come
  }

  // ---- on the loop thread ----

  static void start(const std::shared_ptr<Core>& core) {
    core->loop->post([core] {
      core->descriptor = std::make_unique<boost::asio::posix::stream_descriptor>(core->loop->io(), core->sock.get());
      arm(core);
    });
  }

  static void arm(const std::shared_ptr<Core>& core) {
    if (!core->descriptor) return;
    core->descriptor->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                                 [core](const boost::system::error_code& ec) {
                                   if (!ec) on_readable(core);
                                 });
  }

  // Reads what is queued (asio made the socket non-blocking), then waits again. Only the loop
  // reads: a message cannot be taken by anyone else between the wake-up and the read.
  static void on_readable(const std::shared_ptr<Core>& core) {
    if (!core->descriptor) return;
    for (int i = 0; i < kMessagesPerTurn; ++i) {
      auto packet = sys::recv_packet(core->sock.get());
      if (!packet && packet.error().sys_errno() == EAGAIN) return arm(core);
      Later later;
      {
        std::lock_guard lock(core->mu);
        if (packet) core->dispatch_locked(std::move(packet->data), std::move(packet->fds), later);
        else core->close_locked(later);
      }
      core->cv.notify_all();
      for (auto& fn : later) fn();
      if (!packet) return stop_reading(core);
    }
    // More may be queued: let the loop's other handlers run first.
    core->loop->post([core] { on_readable(core); });
  }

  static void stop_reading(const std::shared_ptr<Core>& core) {
    if (!core->descriptor) return;
    // Deregistered before the fd closes (with the Core): the reactor never sees a reused number.
    (void)core->descriptor->release();
    core->descriptor.reset();
  }
};

InitChannel::InitChannel(Fd sock, EventLoop* loop) : loop_(loop), core_(std::make_shared<Core>()) {
  core_->sock = std::move(sock);
  core_->loop = loop;
  if (loop_) Core::start(core_);
}

InitChannel::~InitChannel() {
  Core::Later later;
  {
    std::lock_guard lock(core_->mu);
    core_->close_locked(later);
  }
  core_->cv.notify_all();
  if (!loop_) {
    for (auto& fn : later) fn();
    return;
  }
  // Callbacks run on the loop, as promised; the socket is deregistered there too. If the loop
  // has stopped, the io_context destroys this handler (and the Core) when it is destroyed.
  loop_->post([core = core_, later = std::move(later)] {
    for (auto& fn : later) fn();
    Core::stop_reading(core);
  });
}

template <class Pred>
Result<bool> InitChannel::wait_until(Pred done, std::chrono::steady_clock::time_point deadline) {
  auto& c = *core_;
  std::unique_lock lock(c.mu);
  if (loop_) {
    if (loop_->on_loop_thread())
      return Error::make(errc::protocol, "a synchronous wait on the sandbox channel from the event loop thread");
    if (loop_->io().stopped()) return Error::make(errc::not_found, "sandbox channel: the event loop has stopped");
    c.cv.wait_until(lock, deadline, [&] { return done() || c.closed; });
    if (done()) return true;
    if (c.closed) return Error::make(errc::not_found, "sandbox is gone");
    return false;
  }
  for (;;) {
    if (done()) return true;
    if (c.closed) return Error::make(errc::not_found, "sandbox is gone");
    auto now = std::chrono::steady_clock::now();
    if (c.reading) {
      if (now >= deadline) return false;
      c.cv.wait_until(lock, deadline);
      continue;
    }
    // Become the reader; a deadline already past still gets one non-blocking look.
    c.reading = true;
    lock.unlock();
    auto ms = now >= deadline ? 0 : std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    struct pollfd p = {c.sock.get(), POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1'000'000)));
    Result<sys::Packet> packet = Error::make(errc::timed_out, "");
    if (n > 0) packet = sys::recv_packet(c.sock.get());
    Core::Later later;
    lock.lock();
    c.reading = false;
    if (n > 0) {
      if (packet) c.dispatch_locked(std::move(packet->data), std::move(packet->fds), later);
      else c.close_locked(later);
    }
    c.cv.notify_all();
    // Without a loop no callback is ever registered (on_exit refuses), so `later` is empty.
    if (n > 0) continue;  // there may be more queued
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
}

Result<InitChannel::Reply> InitChannel::call(initpb::InitRequest request, std::chrono::milliseconds timeout) {
  auto& c = *core_;
  uint64_t id;
  {
    std::lock_guard lock(c.mu);
    if (c.closed) return Error::make(errc::not_found, "sandbox is gone");
    id = ++c.next_id;
  }
  request.set_id(id);
  std::string bytes;
  request.SerializeToString(&bytes);
  if (auto r = sys::send_packet(c.sock.get(), bytes); !r) {
    Core::Later later;
    {
      std::lock_guard lock(c.mu);
      c.close_locked(later);
    }
    c.cv.notify_all();
    if (loop_) loop_->post([later = std::move(later)] { for (auto& fn : later) fn(); });
    return Error::make(errc::not_found, "sandbox is gone");
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto got = wait_until([&] { return c.replies.count(id) > 0; }, deadline);
  std::lock_guard lock(c.mu);
  auto it = c.replies.find(id);
  if (it == c.replies.end()) {
    c.abandoned.insert(id);  // a late reply is dropped, not kept forever
    if (!got) return got.error();
    return Error::make(errc::timed_out, "sandbox did not answer");
  }
  Reply reply = std::move(it->second);
  c.replies.erase(it);
  if (reply.response.err()) {
    return Error(std::error_code(reply.response.err(), std::generic_category()), reply.response.error());
  }
  return reply;
}

Result<std::optional<initpb::Exited>> InitChannel::wait_exit(int pid, std::chrono::milliseconds timeout) {
  auto& c = *core_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto got = wait_until([&] { return c.exits.count(pid) > 0; }, deadline);
  std::lock_guard lock(c.mu);
  if (auto it = c.exits.find(pid); it != c.exits.end()) {
    auto ex = it->second;
    c.exits.erase(it);
    return std::optional<initpb::Exited>(ex);
  }
  if (!got) return got.error();
  return std::optional<initpb::Exited>();
}

Result<> InitChannel::on_exit(int pid, ExitCallback done) {
  if (!loop_) return Error::make(errc::unsupported, "exit callbacks need the engine's event loop");
  auto& c = *core_;
  std::lock_guard lock(c.mu);
  if (auto it = c.exits.find(pid); it != c.exits.end()) {
    loop_->post([done = std::move(done), ex = it->second] { done(ex); });
    c.exits.erase(it);
  } else if (c.closed) {
    loop_->post([done = std::move(done)] { done(std::nullopt); });
  } else {
    c.exit_callbacks[pid] = std::move(done);
  }
  return ok();
}

std::vector<initpb::WatchEvent> InitChannel::take_watch_events(uint64_t watch_id, std::chrono::milliseconds timeout) {
  auto& c = *core_;
  auto queued = [&] {
    auto it = c.watch_events.find(watch_id);
    return it != c.watch_events.end() && !it->second.empty();
  };
  // Without a loop this also reads what is queued on the socket.
  if (!loop_ || timeout.count() > 0) (void)wait_until(queued, std::chrono::steady_clock::now() + timeout);
  std::lock_guard lock(c.mu);
  std::vector<initpb::WatchEvent> out;
  auto it = c.watch_events.find(watch_id);
  if (it == c.watch_events.end()) return out;
  out.assign(it->second.begin(), it->second.end());
  it->second.clear();
  return out;
}

Result<> InitChannel::on_watch_events(uint64_t watch_id, std::function<void()> ready) {
  if (!loop_) return Error::make(errc::unsupported, "watch callbacks need the engine's event loop");
  auto& c = *core_;
  std::lock_guard lock(c.mu);
  if (c.closed) return ok();
  auto it = c.watch_events.find(watch_id);
  if (it != c.watch_events.end() && !it->second.empty()) loop_->post(std::move(ready));
  else c.watch_callbacks[watch_id] = std::move(ready);
  return ok();
}

void InitChannel::forget_watch(uint64_t watch_id) {
  std::function<void()> dropped;  // destroyed after the lock: it may hold anything
  std::lock_guard lock(core_->mu);
  core_->watch_events.erase(watch_id);
  if (auto it = core_->watch_callbacks.find(watch_id); it != core_->watch_callbacks.end()) {
    dropped = std::move(it->second);
    core_->watch_callbacks.erase(it);
  }
}

Result<> InitChannel::on_close(std::function<void()> done) {
  if (!loop_) return Error::make(errc::unsupported, "close callbacks need the engine's event loop");
  auto& c = *core_;
  std::lock_guard lock(c.mu);
  if (c.closed) loop_->post(std::move(done));
  else c.close_callbacks.push_back(std::move(done));
  return ok();
}

bool InitChannel::closed() {
  std::lock_guard lock(core_->mu);
  return core_->closed;
}

}  // namespace brig::sandbox
