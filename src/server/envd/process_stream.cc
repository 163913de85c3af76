#include "server/envd/process_stream.h"

#include <signal.h>

#include <cstring>

#include "base/wire.h"

namespace brig::server::envd {
namespace {
constexpr auto kDefaultKeepalive = std::chrono::seconds(50);
}  // namespace

process::ProcessEvent::EndEvent end_event(const core::ProcessEvent& ev) {
  process::ProcessEvent::EndEvent end;
  if (ev.status.signal) {
    std::string what = ev.status.signal == SIGKILL ? "signal: killed"
                       : ev.status.signal == SIGTERM ? "signal: terminated"
                                                     : "signal: " + std::string(strsignal(ev.status.signal));
    end.set_exit_code(-1);
    end.set_exited(false);
    end.set_status(what);
    // The status stays what envd says; the error says why (the CLI and MCP show it).
    end.set_error(ev.oom_killed ? std::string(wire::kOutOfMemoryError) : what);
  } else {
    std::string what = "exit status " + std::to_string(ev.status.exit_code);
    end.set_exit_code(ev.status.exit_code);
    end.set_exited(true);
    end.set_status(what);
    if (ev.status.exit_code) end.set_error(ev.oom_killed ? std::string(wire::kOutOfMemoryError) : what);
  }
  return end;
}

template <class Resp>
void stream_process(core::Service& core, std::shared_ptr<core::ProcessHub> hub, connect::Codec codec, const Request& req,
                    Stream& s, bool from_start) {
  auto keepalive = kDefaultKeepalive;
  if (auto k = req.header("keepalive-ping-interval"); !k.empty() && k.size() < 6 &&
                                                      k.find_first_not_of("0123456789") == std::string::npos)
    keepalive = std::chrono::seconds(std::max(1, std::stoi(k)));
  uint64_t cursor = hub->subscribe(from_start);
  struct Unsub {
    core::ProcessHub& h;
    uint64_t c;
    ~Unsub() { h.unsubscribe(c); }
  } unsub{*hub, cursor};
  s.begin(200, {{"Content-Type", connect::stream_content_type(codec)}});
  Resp start;
  start.mutable_event()->mutable_start()->set_pid(static_cast<uint32_t>(hub->pid()));
  if (!s.write(connect::frame(codec, start))) return;
  // A process that already ended (late Connect) reports its end at once.
  if (auto st = hub->exit_status(); !from_start && st && hub->finished()) {
    Resp end;
    *end.mutable_event()->mutable_end() = end_event({core::ProcessEvent::end, "", *st, false});
    s.write(connect::frame(codec, end));
    s.write(connect::end_stream(std::nullopt));
    return;
  }
  auto last_sent = std::chrono::steady_clock::now();
  for (;;) {
    auto events = hub->next(cursor, std::chrono::milliseconds(500));
    for (auto& ev : events) {
      Resp out;
      auto* e = out.mutable_event();
      if (ev.kind == core::ProcessEvent::end) {
        *e->mutable_end() = end_event(ev);
        if (!s.write(connect::frame(codec, out))) return;
        std::optional<connect::RpcError> err;
        if (ev.killed_by_deadline)
          err = connect::RpcError{core::Status::deadline_exceeded, "the process ran past Connect-Timeout-Ms and was killed"};
        s.write(connect::end_stream(err));
        return;
      }
      auto* d = e->mutable_data();
      if (ev.kind == core::ProcessEvent::stdout_data) d->set_stdout(ev.data);
      else if (ev.kind == core::ProcessEvent::stderr_data) d->set_stderr(ev.data);
      else d->set_pty(ev.data);
      core.count_streamed(ev.data.size());
      if (!s.write(connect::frame(codec, out))) return;
      last_sent = std::chrono::steady_clock::now();
    }
    if (events.empty()) {
      if (s.peer_gone()) return;
      if (std::chrono::steady_clock::now() - last_sent >= keepalive) {
        Resp ka;
        ka.mutable_event()->mutable_keepalive();
        if (!s.write(connect::frame(codec, ka))) return;
        last_sent = std::chrono::steady_clock::now();
      }
    }
  }
}

template void stream_process<process::StartResponse>(core::Service&, std::shared_ptr<core::ProcessHub>, connect::Codec,
                                                     const Request&, Stream&, bool);
template void stream_process<process::ConnectResponse>(core::Service&, std::shared_ptr<core::ProcessHub>, connect::Codec,
                                                       const Request&, Stream&, bool);

}  // namespace brig::server::envd
