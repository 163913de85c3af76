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

namespace {

template <class Resp>
class ProcessSource final : public Source {
 public:
  ProcessSource(core::Service& core, std::shared_ptr<core::ProcessHub> hub, connect::Codec codec, bool from_start,
                std::chrono::milliseconds keepalive)
      : core_(core), hub_(std::move(hub)), codec_(codec), from_start_(from_start), keepalive_(keepalive),
        cursor_(hub_->subscribe(from_start)) {}
  ~ProcessSource() override { hub_->unsubscribe(cursor_); }

  Next next(bool idle, std::function<void()> wake) override {
    Next out;
    if (!started_) {
      started_ = true;
      Resp start;
      start.mutable_event()->mutable_start()->set_pid(static_cast<uint32_t>(hub_->pid()));
      out.bytes = connect::frame(codec_, start);
      // A process that already ended (a late Connect) reports its end at once.
      if (auto st = hub_->exit_status(); !from_start_ && st && hub_->finished()) {
        Resp end;
        *end.mutable_event()->mutable_end() = end_event({core::ProcessEvent::end, nullptr, *st, false});
        out.bytes += connect::frame(codec_, end);
        out.bytes += connect::end_stream(std::nullopt);
        out.end = true;
      }
      return out;
    }
    auto events = hub_->next(cursor_, std::chrono::milliseconds(0));
    for (auto& ev : events) {
      Resp frame;
      auto* e = frame.mutable_event();
      if (ev.kind == core::ProcessEvent::end) {
        *e->mutable_end() = end_event(ev);
        out.bytes += connect::frame(codec_, frame);
        std::optional<connect::RpcError> err;
        if (ev.killed_by_deadline)
          err = connect::RpcError{core::Status::deadline_exceeded, "the process ran past Connect-Timeout-Ms and was killed"};
        out.bytes += connect::end_stream(err);
        out.end = true;
        return out;
      }
      auto* d = e->mutable_data();
      if (ev.kind == core::ProcessEvent::stdout_data) d->set_stdout(*ev.data);
      else if (ev.kind == core::ProcessEvent::stderr_data) d->set_stderr(*ev.data);
      else d->set_pty(*ev.data);
      core_.count_streamed(ev.size());
      out.bytes += connect::frame(codec_, frame);
    }
    if (out.bytes.empty()) {
      if (idle) {
        Resp ka;
        ka.mutable_event()->mutable_keepalive();
        out.bytes = connect::frame(codec_, ka);
      } else {
        hub_->when_ready(cursor_, std::move(wake));
      }
    }
    return out;
  }

  std::chrono::milliseconds idle_interval() const override { return keepalive_; }

 private:
  core::Service& core_;
  const std::shared_ptr<core::ProcessHub> hub_;
  const connect::Codec codec_;
  const bool from_start_;
  const std::chrono::milliseconds keepalive_;
  const uint64_t cursor_;
  bool started_ = false;
};

}  // namespace

template <class Resp>
Pull stream_process(core::Service& core, std::shared_ptr<core::ProcessHub> hub, connect::Codec codec, const Request& req,
                    bool from_start) {
  std::chrono::milliseconds keepalive = kDefaultKeepalive;
  if (auto k = req.header("keepalive-ping-interval"); !k.empty() && k.size() < 6 &&
                                                      k.find_first_not_of("0123456789") == std::string::npos)
    keepalive = std::chrono::seconds(std::max(1, std::stoi(k)));
  Pull p;
  p.head.status = 200;
  p.head.headers = {{"Content-Type", connect::stream_content_type(codec)}};
  p.source = std::make_shared<ProcessSource<Resp>>(core, std::move(hub), codec, from_start, keepalive);
  return p;
}

template Pull stream_process<process::StartResponse>(core::Service&, std::shared_ptr<core::ProcessHub>, connect::Codec,
                                                     const Request&, bool);
template Pull stream_process<process::ConnectResponse>(core::Service&, std::shared_ptr<core::ProcessHub>, connect::Codec,
                                                       const Request&, bool);

}  // namespace brig::server::envd
