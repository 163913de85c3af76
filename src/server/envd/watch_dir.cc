// filesystem.Filesystem/WatchDir: a directory's events, streamed. A pull stream: brig-init
// pushes each event over the control channel, which wakes the loop, which writes it; no thread
// waits for the directory to change. Entries asked for (include_entry) are read on the pool,
// since reading one is a call to brig-init.
#include <algorithm>
#include <mutex>

#include "base/event_loop.h"
#include "server/envd/rpc.h"
#include "server/envd/watch_event.h"

namespace brig::server::envd {
namespace {
constexpr auto kKeepalive = std::chrono::seconds(50);
using Clock = std::chrono::steady_clock;

class WatchSource final : public Source, public std::enable_shared_from_this<WatchSource> {
 public:
  WatchSource(std::shared_ptr<core::Live> live, uint64_t watch_id, connect::Codec codec, std::string base,
              bool include_entry, sandbox::User user, Clock::time_point deadline)
      : live_(std::move(live)), id_(watch_id), codec_(codec), base_(std::move(base)), include_entry_(include_entry),
        user_(user), deadline_(deadline) {}
  // On the pool (or a local request's thread): unwatching is a call to brig-init.
  ~WatchSource() override { (void)live_->sandbox->unwatch(id_); }

  Next next(bool idle, std::function<void()> wake) override {
    Next out;
    auto& sb = *live_->sandbox;
    if (!started_) {
      started_ = true;
      // The sandbox's end wakes the stream, whichever wait it is in.
      std::weak_ptr<WatchSource> weak = weak_from_this();
      (void)sb.on_gone([weak] {
        if (auto s = weak.lock()) s->poke();
      });
      filesystem::WatchDirResponse start;
      start.mutable_start();
      out.bytes = connect::frame(codec_, start);
      return sent(std::move(out));
    }
    {
      std::lock_guard lock(mu_);
      if (!entries_.empty()) {
        out.bytes = std::move(entries_);
        entries_.clear();
        return sent(std::move(out));
      }
      if (reading_entries_) {
        wake_ = std::move(wake);
        return out;
      }
    }
    if (Clock::now() >= deadline_) {
      out.bytes = connect::end_stream(connect::RpcError{core::Status::deadline_exceeded, "watch ended at Connect-Timeout-Ms"});
      out.end = true;
      return out;
    }
    auto events = sb.take_watch_events(id_);
    if (!events.empty()) {
      if (!include_entry_) {
        for (auto& ev : events) out.bytes += frame(ev, nullptr);
        return sent(std::move(out));
      }
      return read_entries(std::move(events), std::move(wake));
    }
    if (!sb.alive()) {
      out.end = true;  // the sandbox is gone: the stream ends with it
      return out;
    }
    if (idle) {
      filesystem::WatchDirResponse ka;
      ka.mutable_keepalive();
      out.bytes = connect::frame(codec_, ka);
      return sent(std::move(out));
    }
    {
      std::lock_guard lock(mu_);
      wake_ = std::move(wake);
    }
    std::weak_ptr<WatchSource> weak = weak_from_this();
    (void)sb.on_watch_events(id_, [weak] {
      if (auto s = weak.lock()) s->poke();
    });
    return out;
  }

  // The keep-alive interval, or less when the deadline comes first (then the idle call ends it).
  std::chrono::milliseconds idle_interval() const override {
    if (deadline_ == Clock::time_point::max()) return kKeepalive;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - last_sent_);
    return std::clamp<std::chrono::milliseconds>(left, std::chrono::milliseconds(0), kKeepalive);
  }

 private:
  Next sent(Next out) {
    last_sent_ = Clock::now();
    return out;
  }

  std::string frame(const sandbox::WatchEvent& ev, const sandbox::EntryInfo* entry) const {
    filesystem::WatchDirResponse out;
    auto* fe = out.mutable_filesystem();
    fe->set_name(ev.name);
    fe->set_type(event_type(ev.op));
    if (entry) to_pb(*entry, fe->mutable_entry());
    return connect::frame(codec_, out);
  }

  // Each event's entry is read on the pool; the frames wait in entries_ for the next call.
  Next read_entries(std::vector<sandbox::WatchEvent> events, std::function<void()> wake) {
    {
      std::lock_guard lock(mu_);
      reading_entries_ = true;
      wake_ = std::move(wake);
    }
    auto* loop = live_->sandbox->event_loop();
    auto job = [self = shared_from_this(), events = std::move(events)] {
      std::string frames;
      for (auto& ev : events) {
        std::optional<sandbox::EntryInfo> entry;
        if (ev.op != sandbox::WatchOp::remove && ev.op != sandbox::WatchOp::rename)
          if (auto e = self->live_->sandbox->stat(self->base_ + "/" + ev.name, self->user_)) entry = *e;
        frames += self->frame(ev, entry ? &*entry : nullptr);
      }
      {
        std::lock_guard lock(self->mu_);
        self->entries_ += frames;
        self->reading_entries_ = false;
      }
      self->poke();
    };
    Next out;
    if (!loop || !loop->blocking(std::move(job))) out.end = true;  // stopping
    return out;
  }

  // Wakes the stream's current wait, if it is waiting.
  void poke() {
    std::function<void()> w;
    {
      std::lock_guard lock(mu_);
      w = std::move(wake_);
      wake_ = nullptr;
    }
    if (w) w();
  }

  const std::shared_ptr<core::Live> live_;
  const uint64_t id_;
  const connect::Codec codec_;
  const std::string base_;
  const bool include_entry_;
  const sandbox::User user_;
  const Clock::time_point deadline_;
  bool started_ = false;
  Clock::time_point last_sent_ = Clock::now();
  std::mutex mu_;  // guards what the pool's entry reads and the wake-ups share
  std::function<void()> wake_;
  std::string entries_;
  bool reading_entries_ = false;
};

}  // namespace

Route watch_dir(const Call& call) {
  Route r;
  r.pull = [call](Request& req) -> Pull {
    filesystem::WatchDirRequest in;
    auto codec = connect::decode_stream_request(req, &in);
    if (!codec) return stream_error(connect::Codec::json, {core::Status::invalid_argument, codec.error().message()});
    auto id = call.core.watch_dir(*call.live, in.path(), in.recursive(), call.user);
    if (!id) return stream_error(*codec, connect::rpc_error(id.error(), "filesystem.WatchDir"));
    auto deadline = Clock::time_point::max();
    if (auto t = connect::timeout_of(req); t && t->count() > 0) deadline = Clock::now() + *t;
    Pull p;
    p.head.status = 200;
    p.head.headers = {{"Content-Type", connect::stream_content_type(*codec)}};
    p.source = std::make_shared<WatchSource>(call.live, *id, *codec, in.path(), in.include_entry(), call.user, deadline);
    return p;
  };
  return r;
}

}  // namespace brig::server::envd
