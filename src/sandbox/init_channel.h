// InitChannel: the engine's end of a sandbox's control channel to brig-init.
// Requests get ids and matching responses; process exits and watch events arriving in between
// are kept until taken. Any thread may call; one thread reads the socket at a time.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "init.pb.h"

namespace brig::sandbox {

class InitChannel {
 public:
  explicit InitChannel(Fd sock) : sock_(std::move(sock)) {}

  struct Reply {
    initpb::InitResponse response;
    std::vector<Fd> fds;
  };
  // Sends `request` and waits for its reply. A reply with err != 0 becomes an Error.
  Result<Reply> call(initpb::InitRequest request, std::chrono::milliseconds timeout = std::chrono::seconds(60));

  // Waits until `pid`'s exit is known or `timeout` passes.
  Result<std::optional<initpb::Exited>> wait_exit(int pid, std::chrono::milliseconds timeout);
  std::vector<initpb::WatchEvent> take_watch_events(uint64_t watch_id);
  bool closed();

 private:
  // Waits (reading the socket if nobody else is) until `done()` or the deadline.
  template <class Pred>
  Result<bool> pump_until(Pred done, std::chrono::steady_clock::time_point deadline);
  void dispatch(std::string data, std::vector<Fd> fds);

  Fd sock_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool reading_ = false;
  bool closed_ = false;
  uint64_t next_id_ = 0;
  std::map<uint64_t, Reply> replies_;
  std::map<int, initpb::Exited> exits_;
  std::map<uint64_t, std::deque<initpb::WatchEvent>> watch_events_;
};

}  // namespace brig::sandbox
