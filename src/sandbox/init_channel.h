// InitChannel: the engine's end of a sandbox's control channel to brig-init.
// Requests get ids and matching responses; process exits and watch events arriving in between
// are kept until taken, or handed to the callback registered for them.
//
// Two ways to read the socket:
// - on an EventLoop (the daemon): the loop thread waits on the socket and dispatches every
//   message as it arrives; synchronous call()/wait_exit() waiters are woken by a condition
//   variable, exits registered with on_exit() are pushed to their callback on the loop.
// - without one (brig run, the builder, tests): whichever caller is waiting reads the socket,
//   one at a time.
//
// Thread safety: every method may be called from any thread, except that call(), wait_exit()
// and a waiting take_watch_events() must not be called on the loop thread (they would wait
// for the thread they block). The EventLoop must outlive the channel.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "init.pb.h"

namespace brig {
class EventLoop;
}

namespace brig::sandbox {

class InitChannel {
 public:
  explicit InitChannel(Fd sock, EventLoop* loop = nullptr);
  ~InitChannel();
  InitChannel(const InitChannel&) = delete;
  InitChannel& operator=(const InitChannel&) = delete;

  struct Reply {
    initpb::InitResponse response;
    std::vector<Fd> fds;
  };
  // Sends `request` and waits for its reply. A reply with err != 0 becomes an Error.
  Result<Reply> call(initpb::InitRequest request, std::chrono::milliseconds timeout = std::chrono::seconds(60));

  // Waits until `pid`'s exit is known or `timeout` passes.
  Result<std::optional<initpb::Exited>> wait_exit(int pid, std::chrono::milliseconds timeout);
  // Calls `done` on the loop thread once `pid` has exited (posted at once if it already has),
  // or with nullopt when the channel closes first. Needs a loop (errc::unsupported otherwise).
  // The exit is then not kept for wait_exit. One callback per pid.
  using ExitCallback = std::function<void(std::optional<initpb::Exited>)>;
  Result<> on_exit(int pid, ExitCallback done);
  // The events queued for `watch_id`, waiting up to `timeout` for the first one.
  std::vector<initpb::WatchEvent> take_watch_events(uint64_t watch_id,
                                                    std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // Calls `ready` on the loop thread once events are queued for `watch_id` (posted at once if
  // some are). Never once the channel has closed: the sandbox's end is told by its pidfd
  // (Sandbox::on_gone). One call per registration, one registration per watch. Needs a loop.
  Result<> on_watch_events(uint64_t watch_id, std::function<void()> ready);
  // Drops what is queued or registered for a watch that has ended.
  void forget_watch(uint64_t watch_id);
  // Calls `done` on the loop thread once the channel has closed (brig-init is gone, or this
  // channel was destroyed), posted at once if it already has. Needs a loop.
  Result<> on_close(std::function<void()> done);
  bool closed();
  EventLoop* loop() const { return loop_; }

 private:
  struct Core;
  // Without a loop: waits (reading the socket if nobody else is) until `done()` or the deadline.
  // On a loop: waits on the condition variable the loop notifies.
  template <class Pred>
  Result<bool> wait_until(Pred done, std::chrono::steady_clock::time_point deadline);

  EventLoop* loop_;
  std::shared_ptr<Core> core_;  // shared with the loop's pending handlers
};

}  // namespace brig::sandbox
