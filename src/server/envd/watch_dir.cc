// filesystem.Filesystem/WatchDir: a directory's events, streamed.
#include <algorithm>

#include "server/envd/rpc.h"
#include "server/envd/watch_event.h"

namespace brig::server::envd {
namespace {
constexpr auto kKeepalive = std::chrono::seconds(50);
// Longest wait for the next events before checking the client, the deadline and keepalives.
constexpr auto kWait = std::chrono::milliseconds(500);
}  // namespace

Route watch_dir(const Call& call) {
  Route r;
  r.stream = [call](Request& req, Stream& s) {
    filesystem::WatchDirRequest in;
    auto codec = connect::decode_stream_request(req, &in);
    if (!codec) return stream_error(s, connect::Codec::json, {core::Status::invalid_argument, codec.error().message()});
    auto& sb = *call.live->sandbox;
    auto id = call.core.watch_dir(*call.live, in.path(), in.recursive(), call.user);
    if (!id) return stream_error(s, *codec, connect::rpc_error(id.error(), "filesystem.WatchDir"));
    struct Unwatch {
      sandbox::Sandbox& sb;
      uint64_t id;
      ~Unwatch() { (void)sb.unwatch(id); }
    } unwatch{sb, *id};
    auto deadline = std::chrono::steady_clock::time_point::max();
    if (auto t = connect::timeout_of(req); t && t->count() > 0) deadline = std::chrono::steady_clock::now() + *t;
    s.begin(200, {{"Content-Type", connect::stream_content_type(*codec)}});
    filesystem::WatchDirResponse start;
    start.mutable_start();
    if (!s.write(connect::frame(*codec, start))) return;
    auto last_sent = std::chrono::steady_clock::now();
    std::string base = in.path();
    for (;;) {
      // Waits on the control channel for the first event (pushed by brig-init), no polling.
      auto wait = kWait;
      if (deadline != std::chrono::steady_clock::time_point::max())
        wait = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()),
                          std::chrono::milliseconds(0), kWait);
      for (auto& ev : sb.take_watch_events(*id, wait)) {
        filesystem::WatchDirResponse out;
        auto* fe = out.mutable_filesystem();
        fe->set_name(ev.name);
        fe->set_type(event_type(ev.op));
        if (in.include_entry() && ev.op != sandbox::WatchOp::remove && ev.op != sandbox::WatchOp::rename)
          if (auto e = sb.stat(base + "/" + ev.name, call.user)) to_pb(*e, fe->mutable_entry());
        if (!s.write(connect::frame(*codec, out))) return;
        last_sent = std::chrono::steady_clock::now();
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        s.write(connect::end_stream(connect::RpcError{core::Status::deadline_exceeded, "watch ended at Connect-Timeout-Ms"}));
        return;
      }
      if (s.peer_gone() || !sb.alive()) return;
      if (std::chrono::steady_clock::now() - last_sent >= kKeepalive) {
        filesystem::WatchDirResponse ka;
        ka.mutable_keepalive();
        if (!s.write(connect::frame(*codec, ka))) return;
        last_sent = std::chrono::steady_clock::now();
      }
    }
  };
  return r;
}

}  // namespace brig::server::envd
