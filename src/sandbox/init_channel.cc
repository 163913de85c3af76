#include "sandbox/init_channel.h"

#include <poll.h>
#include <sys/socket.h>

#include "sys/seqpacket.h"

namespace brig::sandbox {

namespace {
constexpr size_t kMaxQueuedWatchEvents = 10'000;
}

void InitChannel::dispatch(std::string data, std::vector<Fd> fds) {
  initpb::InitMessage msg;
  if (!msg.ParseFromString(data)) return;
  switch (msg.msg_case()) {
    case initpb::InitMessage::kResponse: {
      uint64_t id = msg.response().id();
      replies_[id] = Reply{std::move(*msg.mutable_response()), std::move(fds)};
      break;
    }
    case initpb::InitMessage::kExited: exits_[msg.exited().pid()] = msg.exited(); break;
    case initpb::InitMessage::kWatchEvent: {
      auto& q = watch_events_[msg.watch_event().watch_id()];
      if (q.size() < kMaxQueuedWatchEvents) q.push_back(msg.watch_event());
      break;
    }
    case initpb::InitMessage::MSG_NOT_SET: break;
  }
}

template <class Pred>
Result<bool> InitChannel::pump_until(Pred done, std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  for (;;) {
    if (done()) return true;
    if (closed_) return Error::make(errc::not_found, "sandbox is gone");
    auto now = std::chrono::steady_clock::now();
    if (reading_) {
      if (now >= deadline) return false;
      cv_.wait_until(lock, deadline);
      continue;
    }
    // Become the reader; a deadline already past still gets one non-blocking look.
    reading_ = true;
    lock.unlock();
    auto ms = now >= deadline ? 0 : std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    struct pollfd p = {sock_.get(), POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1'000'000)));
    Result<sys::Packet> packet = Error::make(errc::timed_out, "");
    if (n > 0) packet = sys::recv_packet(sock_.get());
    lock.lock();
    reading_ = false;
    if (n > 0) {
      if (packet) dispatch(std::move(packet->data), std::move(packet->fds));
      else closed_ = true;
    }
    cv_.notify_all();
    if (n > 0) continue;  // there may be more queued
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
}

Result<InitChannel::Reply> InitChannel::call(initpb::InitRequest request, std::chrono::milliseconds timeout) {
  uint64_t id;
  {
    std::lock_guard lock(mu_);
    if (closed_) return Error::make(errc::not_found, "sandbox is gone");
    id = ++next_id_;
  }
  request.set_id(id);
  std::string bytes;
  request.SerializeToString(&bytes);
  if (auto r = sys::send_packet(sock_.get(), bytes); !r) {
    std::lock_guard lock(mu_);
    closed_ = true;
    return Error::make(errc::not_found, "sandbox is gone");
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  BRIG_TRY_ASSIGN(got, pump_until([&] { return replies_.count(id) > 0; }, deadline));
  if (!got) return Error::make(errc::timed_out, "sandbox did not answer");
  std::lock_guard lock(mu_);
  Reply reply = std::move(replies_[id]);
  replies_.erase(id);
  if (reply.response.err()) {
    return Error(std::error_code(reply.response.err(), std::generic_category()), reply.response.error());
  }
  return reply;
}

Result<std::optional<initpb::Exited>> InitChannel::wait_exit(int pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto got = pump_until([&] { return exits_.count(pid) > 0; }, deadline);
  std::lock_guard lock(mu_);
  if (auto it = exits_.find(pid); it != exits_.end()) {
    auto ex = it->second;
    exits_.erase(it);
    return std::optional<initpb::Exited>(ex);
  }
  if (!got) return got.error();
  return std::optional<initpb::Exited>();
}

std::vector<initpb::WatchEvent> InitChannel::take_watch_events(uint64_t watch_id) {
  (void)pump_until([] { return false; }, std::chrono::steady_clock::now());  // drain what is queued
  std::lock_guard lock(mu_);
  std::vector<initpb::WatchEvent> out;
  auto it = watch_events_.find(watch_id);
  if (it == watch_events_.end()) return out;
  out.assign(it->second.begin(), it->second.end());
  it->second.clear();
  return out;
}

bool InitChannel::closed() {
  std::lock_guard lock(mu_);
  return closed_;
}

}  // namespace brig::sandbox
