#include "server/envd.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <zlib.h>

#include <nlohmann/json.hpp>

#include "base/util.h"
#include "base/wire.h"
#include "envd/filesystem.pb.h"
#include "envd/process.pb.h"
#include "server/connect.h"

namespace brig::server::envd {
namespace {

using connect::Codec;
using connect::RpcError;
constexpr auto kDefaultKeepalive = std::chrono::seconds(50);
constexpr size_t kMaxFileBytes = 512ull << 20;
constexpr size_t kStreamChunk = 256 << 10;  // one read and one chunk of a file download

// ---- filesystem ----------------------------------------------------------------------------

std::string permissions_string(const sandbox::EntryInfo& e) {
  std::string s(10, '-');
  s[0] = e.type == sandbox::FileType::dir ? 'd' : e.type == sandbox::FileType::symlink ? 'L' : '-';
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i)
    if (e.mode & (0400u >> i)) s[static_cast<size_t>(i + 1)] = rwx[i];
  return s;
}

std::string owner_name(uint32_t id) { return id == 0 ? "root" : id == 1000 ? "user" : std::to_string(id); }

// As upstream envd: a symlink is described by what it points to (type and permission bits of
// its target, the target's absolute path; the link's own path when it dangles), never as a
// type of its own, which the Python SDK's enum lacks. Its permissions string stays "L…".
void to_pb(const sandbox::EntryInfo& e, filesystem::EntryInfo* out) {
  out->set_name(e.name);
  out->set_path(e.path);
  const bool link = e.type == sandbox::FileType::symlink;
  switch (link ? e.target_type : e.type) {
    case sandbox::FileType::file: out->set_type(filesystem::FILE_TYPE_FILE); break;
    case sandbox::FileType::dir: out->set_type(filesystem::FILE_TYPE_DIRECTORY); break;
    default: out->set_type(filesystem::FILE_TYPE_UNSPECIFIED);
  }
  out->set_size(static_cast<int64_t>(e.size));
  out->set_mode((link ? e.target_mode : e.mode) & 0777);
  out->set_permissions(permissions_string(e));
  out->set_owner(owner_name(e.uid));
  out->set_group(owner_name(e.gid));
  out->mutable_modified_time()->set_seconds(e.mtime_ns / 1'000'000'000);
  out->mutable_modified_time()->set_nanos(static_cast<int32_t>(e.mtime_ns % 1'000'000'000));
  if (link) out->set_symlink_target(e.resolved_target.empty() ? e.path : e.resolved_target);
  for (auto& [k, v] : e.metadata) (*out->mutable_metadata())[k] = v;
}

template <class Req, class Resp>
Route unary(std::function<Result<Resp>(const Req&)> fn) {
  Route r;
  r.respond = [fn](Request& req) {
    Req in;
    auto codec = connect::decode_unary(req, &in);
    if (!codec) return connect::unary_error({"invalid_argument", codec.error().message()});
    auto out = fn(in);
    if (!out) return connect::unary_error(connect::to_rpc_error(out.error()));
    return connect::unary_ok(*codec, *out);
  };
  return r;
}

// Sends the trailers-only error of a stream (HTTP 200, EndStream with the error).
void stream_error(Stream& s, Codec codec, const RpcError& e) {
  s.begin(200, {{"Content-Type", connect::stream_content_type(codec)}});
  s.write(connect::end_stream(e));
}

// ---- processes -----------------------------------------------------------------------------

std::shared_ptr<ProcessHub> find_process(Live& live, const process::ProcessSelector& sel) {
  std::lock_guard lock(live.mu);
  if (sel.selector_case() == process::ProcessSelector::kPid) {
    auto it = live.processes.find(static_cast<int>(sel.pid()));
    return it == live.processes.end() ? nullptr : it->second;
  }
  if (sel.selector_case() == process::ProcessSelector::kTag)
    for (auto& [pid, hub] : live.processes)
      if (hub->spec().tag == sel.tag() && !hub->finished()) return hub;
  return nullptr;
}

process::ProcessEvent::EndEvent end_event(const ProcessEvent& ev) {
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

// Streams a process's events to one client: start, data..., end, EndStream. The process
// survives the client going away.
template <class Resp>
void stream_process(std::shared_ptr<ProcessHub> hub, Codec codec, const Request& req, Stream& s,
                    Metrics& metrics, bool from_start) {
  auto keepalive = kDefaultKeepalive;
  if (auto k = req.header("keepalive-ping-interval"); !k.empty() && k.size() < 6 &&
                                                      k.find_first_not_of("0123456789") == std::string::npos)
    keepalive = std::chrono::seconds(std::max(1, std::stoi(k)));
  uint64_t cursor = hub->subscribe(from_start);
  struct Unsub {
    ProcessHub& h;
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
    *end.mutable_event()->mutable_end() = end_event({ProcessEvent::end, nullptr, *st, false});
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
      if (ev.kind == ProcessEvent::end) {
        *e->mutable_end() = end_event(ev);
        if (!s.write(connect::frame(codec, out))) return;
        std::optional<RpcError> err;
        if (ev.killed_by_deadline) err = RpcError{"deadline_exceeded", "the process ran past Connect-Timeout-Ms and was killed"};
        s.write(connect::end_stream(err));
        return;
      }
      auto* d = e->mutable_data();
      if (ev.kind == ProcessEvent::stdout_data) d->set_stdout(*ev.data);
      else if (ev.kind == ProcessEvent::stderr_data) d->set_stderr(*ev.data);
      else d->set_pty(*ev.data);
      metrics.bytes_streamed += ev.size();
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

Route start_route(std::shared_ptr<Live> live, sandbox::User user, Metrics& metrics) {
  Route r;
  r.stream = [live, user, &metrics](Request& req, Stream& s) {
    process::StartRequest in;
    auto codec = connect::decode_stream_request(req, &in);
    if (!codec) return stream_error(s, Codec::json, {"invalid_argument", codec.error().message()});
    sandbox::ProcessSpec spec;
    spec.cmd = in.process().cmd();
    spec.args.assign(in.process().args().begin(), in.process().args().end());
    for (auto& [k, v] : in.process().envs()) spec.env[k] = v;
    spec.cwd = in.process().has_cwd() ? in.process().cwd() : live->tpl.config.workdir;
    spec.user = user;
    spec.stdin_pipe = !in.has_stdin() || in.stdin();
    if (in.has_pty()) {
      spec.pty = true;
      spec.rows = static_cast<uint16_t>(in.pty().size().rows() ? in.pty().size().rows() : 24);
      spec.cols = static_cast<uint16_t>(in.pty().size().cols() ? in.pty().size().cols() : 80);
      spec.stdin_pipe = false;
    }
    if (in.has_tag()) spec.tag = in.tag();
    const uint64_t oom_kills_before = sandbox::oom_kills(*live->sandbox);
    auto proc = live->sandbox->spawn(spec);
    if (!proc) {
      RpcError e = connect::to_rpc_error(proc.error());
      if (proc.error().message().find("chdir") != std::string::npos) e.code = "invalid_argument";
      return stream_error(s, *codec, e);
    }
    ++metrics.execs;
    auto started = ProcessHub::start(live->sandbox, std::move(*proc), spec, oom_kills_before);
    if (!started) return stream_error(s, *codec, connect::to_rpc_error(started.error()));
    auto hub = std::move(*started);
    if (auto t = connect::timeout_of(req); t && t->count() > 0) hub->set_deadline(std::chrono::steady_clock::now() + *t);
    {
      std::lock_guard lock(live->mu);
      // Forget processes that ended long enough ago for late Connects to have come.
      for (auto it = live->processes.begin(); it != live->processes.end();)
        it = it->second->finished() && live->processes.size() > 256 ? live->processes.erase(it) : std::next(it);
      live->processes[hub->pid()] = hub;
    }
    stream_process<process::StartResponse>(hub, *codec, req, s, metrics, /*from_start=*/true);
  };
  return r;
}

Route connect_route(std::shared_ptr<Live> live, Metrics& metrics) {
  Route r;
  r.stream = [live, &metrics](Request& req, Stream& s) {
    process::ConnectRequest in;
    auto codec = connect::decode_stream_request(req, &in);
    if (!codec) return stream_error(s, Codec::json, {"invalid_argument", codec.error().message()});
    auto hub = find_process(*live, in.process());
    if (!hub) return stream_error(s, *codec, {"not_found", "process not found"});
    stream_process<process::ConnectResponse>(hub, *codec, req, s, metrics, /*from_start=*/false);
  };
  return r;
}

process::ProcessConfig config_of(const sandbox::ProcessSpec& spec) {
  process::ProcessConfig c;
  c.set_cmd(spec.cmd);
  for (auto& a : spec.args) c.add_args(a);
  for (auto& [k, v] : spec.env) (*c.mutable_envs())[k] = v;
  c.set_cwd(spec.cwd);
  return c;
}

std::optional<Route> process_route(std::shared_ptr<Live> live, const std::string& method, sandbox::User user,
                                   Metrics& metrics) {
  if (method == "Start") return start_route(live, user, metrics);
  if (method == "Connect") return connect_route(live, metrics);
  if (method == "List")
    return unary<process::ListRequest, process::ListResponse>([live](const process::ListRequest&) -> Result<process::ListResponse> {
      process::ListResponse out;
      std::lock_guard lock(live->mu);
      for (auto& [pid, hub] : live->processes) {
        if (hub->finished()) continue;
        auto* p = out.add_processes();
        p->set_pid(static_cast<uint32_t>(pid));
        *p->mutable_config() = config_of(hub->spec());
        if (!hub->spec().tag.empty()) p->set_tag(hub->spec().tag);
      }
      return out;
    });
  if (method == "SendInput")
    return unary<process::SendInputRequest, process::SendInputResponse>(
        [live](const process::SendInputRequest& in) -> Result<process::SendInputResponse> {
          auto hub = find_process(*live, in.process());
          if (!hub || hub->finished()) return Error::from_errno(ENOENT, "process not found");
          const auto& input = in.input();
          BRIG_TRY(hub->write_stdin(input.input_case() == process::ProcessInput::kPty ? input.pty() : input.stdin()));
          return process::SendInputResponse{};
        });
  if (method == "SendSignal")
    return unary<process::SendSignalRequest, process::SendSignalResponse>(
        [live](const process::SendSignalRequest& in) -> Result<process::SendSignalResponse> {
          auto hub = find_process(*live, in.process());
          if (!hub || hub->finished()) return Error::from_errno(ENOENT, "process not found");
          int sig = in.signal() == process::SIGNAL_SIGTERM ? SIGTERM : in.signal() == process::SIGNAL_SIGKILL ? SIGKILL : 0;
          if (!sig) return Error::make(errc::invalid_argument, "signal must be SIGNAL_SIGTERM or SIGNAL_SIGKILL");
          BRIG_TRY(live->sandbox->signal(hub->pid(), sig, true));
          return process::SendSignalResponse{};
        });
  if (method == "CloseStdin")
    return unary<process::CloseStdinRequest, process::CloseStdinResponse>(
        [live](const process::CloseStdinRequest& in) -> Result<process::CloseStdinResponse> {
          auto hub = find_process(*live, in.process());
          if (!hub) return Error::from_errno(ENOENT, "process not found");
          BRIG_TRY(hub->close_stdin());
          return process::CloseStdinResponse{};
        });
  if (method == "Update")
    return unary<process::UpdateRequest, process::UpdateResponse>(
        [live](const process::UpdateRequest& in) -> Result<process::UpdateResponse> {
          auto hub = find_process(*live, in.process());
          if (!hub) return Error::from_errno(ENOENT, "process not found");
          if (in.has_pty())
            BRIG_TRY(hub->resize(static_cast<uint16_t>(in.pty().size().rows()), static_cast<uint16_t>(in.pty().size().cols())));
          return process::UpdateResponse{};
        });
  if (method == "StreamInput") {
    Route r;  // client streaming needs HTTP/2 or bidi; over HTTP/1.1 answer honestly
    r.respond = [](Request&) {
      return connect::unary_error({"unimplemented", "StreamInput needs client streaming; use SendInput"});
    };
    return r;
  }
  return std::nullopt;
}

filesystem::EventType event_type(sandbox::WatchOp op) {
  switch (op) {
    case sandbox::WatchOp::create: return filesystem::EVENT_TYPE_CREATE;
    case sandbox::WatchOp::write: return filesystem::EVENT_TYPE_WRITE;
    case sandbox::WatchOp::remove: return filesystem::EVENT_TYPE_REMOVE;
    case sandbox::WatchOp::rename: return filesystem::EVENT_TYPE_RENAME;
    case sandbox::WatchOp::chmod: return filesystem::EVENT_TYPE_CHMOD;
  }
  return filesystem::EVENT_TYPE_UNSPECIFIED;
}

Route watch_route(std::shared_ptr<Live> live, sandbox::User user) {
  Route r;
  r.stream = [live, user](Request& req, Stream& s) {
    filesystem::WatchDirRequest in;
    auto codec = connect::decode_stream_request(req, &in);
    if (!codec) return stream_error(s, Codec::json, {"invalid_argument", codec.error().message()});
    auto st = live->sandbox->stat(in.path(), user);
    if (!st) return stream_error(s, *codec, connect::to_rpc_error(st.error()));
    if (st->type != sandbox::FileType::dir) return stream_error(s, *codec, {"invalid_argument", "not a directory"});
    auto id = live->sandbox->watch(in.path(), in.recursive(), user);
    if (!id) return stream_error(s, *codec, connect::to_rpc_error(id.error()));
    struct Unwatch {
      Live& l;
      uint64_t id;
      ~Unwatch() { (void)l.sandbox->unwatch(id); }
    } unwatch{*live, *id};
    auto deadline = std::chrono::steady_clock::time_point::max();
    if (auto t = connect::timeout_of(req); t && t->count() > 0) deadline = std::chrono::steady_clock::now() + *t;
    s.begin(200, {{"Content-Type", connect::stream_content_type(*codec)}});
    filesystem::WatchDirResponse start;
    start.mutable_start();
    if (!s.write(connect::frame(*codec, start))) return;
    auto last_sent = std::chrono::steady_clock::now();
    std::string base = in.path();
    for (;;) {
      for (auto& ev : live->sandbox->take_watch_events(*id)) {
        filesystem::WatchDirResponse out;
        auto* fe = out.mutable_filesystem();
        fe->set_name(ev.name);
        fe->set_type(event_type(ev.op));
        if (in.include_entry() && ev.op != sandbox::WatchOp::remove && ev.op != sandbox::WatchOp::rename)
          if (auto e = live->sandbox->stat(base + "/" + ev.name, user)) to_pb(*e, fe->mutable_entry());
        if (!s.write(connect::frame(*codec, out))) return;
        last_sent = std::chrono::steady_clock::now();
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        s.write(connect::end_stream(RpcError{"deadline_exceeded", "watch ended at Connect-Timeout-Ms"}));
        return;
      }
      if (s.peer_gone() || !live->sandbox->alive()) return;
      if (std::chrono::steady_clock::now() - last_sent >= kDefaultKeepalive) {
        filesystem::WatchDirResponse ka;
        ka.mutable_keepalive();
        if (!s.write(connect::frame(*codec, ka))) return;
        last_sent = std::chrono::steady_clock::now();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  };
  return r;
}

std::optional<Route> filesystem_route(std::shared_ptr<Live> live, const std::string& method, sandbox::User user) {
  auto& sb = *live->sandbox;
  if (method == "Stat")
    return unary<filesystem::StatRequest, filesystem::StatResponse>(
        [&sb, live, user](const filesystem::StatRequest& in) -> Result<filesystem::StatResponse> {
          BRIG_TRY_ASSIGN(e, sb.stat(in.path(), user));
          filesystem::StatResponse out;
          to_pb(e, out.mutable_entry());
          return out;
        });
  if (method == "MakeDir")
    return unary<filesystem::MakeDirRequest, filesystem::MakeDirResponse>(
        [&sb, live, user](const filesystem::MakeDirRequest& in) -> Result<filesystem::MakeDirResponse> {
          if (auto existing = sb.stat(in.path(), user)) {
            if (existing->type == sandbox::FileType::dir) return Error::from_errno(EEXIST, "directory already exists");
            return Error::make(errc::invalid_argument, "a file exists at '" + in.path() + "'");
          }
          BRIG_TRY_ASSIGN(e, sb.make_dir(in.path(), user));
          filesystem::MakeDirResponse out;
          to_pb(e, out.mutable_entry());
          return out;
        });
  if (method == "Move")
    return unary<filesystem::MoveRequest, filesystem::MoveResponse>(
        [&sb, live, user](const filesystem::MoveRequest& in) -> Result<filesystem::MoveResponse> {
          BRIG_TRY_ASSIGN(e, sb.move(in.source(), in.destination(), user));
          filesystem::MoveResponse out;
          to_pb(e, out.mutable_entry());
          return out;
        });
  if (method == "ListDir")
    return unary<filesystem::ListDirRequest, filesystem::ListDirResponse>(
        [&sb, live, user](const filesystem::ListDirRequest& in) -> Result<filesystem::ListDirResponse> {
          BRIG_TRY_ASSIGN(st, sb.stat(in.path(), user));
          if (st.type != sandbox::FileType::dir && st.type != sandbox::FileType::symlink)
            return Error::make(errc::invalid_argument, "'" + in.path() + "' is not a directory");
          BRIG_TRY_ASSIGN(entries, sb.list_dir(in.path(), in.depth() ? in.depth() : 1, user));
          filesystem::ListDirResponse out;
          for (auto& e : entries) to_pb(e, out.add_entries());
          return out;
        });
  if (method == "Remove")
    return unary<filesystem::RemoveRequest, filesystem::RemoveResponse>(
        [&sb, live, user](const filesystem::RemoveRequest& in) -> Result<filesystem::RemoveResponse> {
          auto r = sb.remove(in.path(), user);
          if (!r && r.error().sys_errno() != ENOENT) return r.error();
          return filesystem::RemoveResponse{};
        });
  if (method == "WatchDir") return watch_route(live, user);
  if (method == "CreateWatcher")
    return unary<filesystem::CreateWatcherRequest, filesystem::CreateWatcherResponse>(
        [&sb, live, user](const filesystem::CreateWatcherRequest& in) -> Result<filesystem::CreateWatcherResponse> {
          BRIG_TRY_ASSIGN(id, sb.watch(in.path(), in.recursive(), user));
          filesystem::CreateWatcherResponse out;
          out.set_watcher_id(new_sandbox_id());
          std::lock_guard lock(live->mu);
          if (live->watchers.size() >= 64) return Error::make(errc::limit_exceeded, "too many watchers");
          live->watchers[out.watcher_id()] = id;
          return out;
        });
  if (method == "GetWatcherEvents")
    return unary<filesystem::GetWatcherEventsRequest, filesystem::GetWatcherEventsResponse>(
        [&sb, live](const filesystem::GetWatcherEventsRequest& in) -> Result<filesystem::GetWatcherEventsResponse> {
          uint64_t id;
          {
            std::lock_guard lock(live->mu);
            auto it = live->watchers.find(in.watcher_id());
            if (it == live->watchers.end()) return Error::from_errno(ENOENT, "watcher not found");
            id = it->second;
          }
          filesystem::GetWatcherEventsResponse out;
          for (auto& ev : sb.take_watch_events(id)) {
            auto* fe = out.add_events();
            fe->set_name(ev.name);
            fe->set_type(event_type(ev.op));
          }
          return out;
        });
  if (method == "RemoveWatcher")
    return unary<filesystem::RemoveWatcherRequest, filesystem::RemoveWatcherResponse>(
        [&sb, live](const filesystem::RemoveWatcherRequest& in) -> Result<filesystem::RemoveWatcherResponse> {
          std::lock_guard lock(live->mu);
          auto it = live->watchers.find(in.watcher_id());
          if (it == live->watchers.end()) return Error::from_errno(ENOENT, "watcher not found");
          (void)sb.unwatch(it->second);
          live->watchers.erase(it);
          return filesystem::RemoveWatcherResponse{};
        });
  return std::nullopt;
}

// ---- /files --------------------------------------------------------------------------------

// multipart/form-data (RFC 7578), read as it arrives: parts separated by "--boundary", each
// with headers, a blank line and a body. The reader keeps one buffer of at most kStreamChunk
// plus a delimiter's length; a part's body goes to the caller piece by piece.
class MultipartReader {
 public:
  static Result<MultipartReader> open(BodyReader& body, const std::string& content_type) {
    auto b = content_type.find("boundary=");
    if (b == std::string::npos) return Error::make(errc::invalid_argument, "multipart body without a boundary");
    std::string boundary = content_type.substr(b + 9);
    if (auto semi = boundary.find(';'); semi != std::string::npos) boundary.resize(semi);
    if (boundary.size() >= 2 && boundary.front() == '"') boundary = boundary.substr(1, boundary.size() - 2);
    if (boundary.empty() || boundary.size() > 200) return Error::make(errc::invalid_argument, "bad multipart boundary");
    return MultipartReader(body, "--" + boundary);
  }

  struct Part {
    std::string name, filename;
  };

  // The next part's headers; nullopt after the closing delimiter.
  Result<std::optional<Part>> next() {
    // Skip what is left of the current part (or the preamble) up to the next delimiter.
    for (;;) {
      BRIG_TRY(fill(delim_.size() + 4));
      if (auto at = buf_.find(delim_); at != std::string::npos) {
        buf_.erase(0, at + delim_.size());
        break;
      }
      if (eof_) return Error::make(errc::invalid_argument, "multipart body without its delimiter");
      buf_.erase(0, buf_.size() - delim_.size());
    }
    BRIG_TRY(fill(2));
    if (buf_.compare(0, 2, "--") == 0) return std::optional<Part>();  // the closing delimiter
    if (buf_.compare(0, 2, "\r\n") != 0) return Error::make(errc::invalid_argument, "malformed multipart delimiter");
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (buf_.size() > kMaxPartHeaders) return Error::make(errc::limit_exceeded, "multipart headers too large");
      if (eof_) return Error::make(errc::invalid_argument, "malformed multipart headers");
      BRIG_TRY(fill(buf_.size() + 1));
    }
    if (++parts_ > kMaxParts) return Error::make(errc::limit_exceeded, "more than 1000 parts");
    Part part = disposition(end >= 2 ? buf_.substr(2, end - 2) : std::string());
    buf_.erase(0, end + 4);
    in_body_ = true;
    return std::optional<Part>(std::move(part));
  }

  // Up to `cap` bytes of the current part's body; 0 at its end.
  Result<size_t> read(char* out, size_t cap) {
    if (!in_body_) return size_t{0};
    const std::string end = "\r\n" + delim_;
    BRIG_TRY(fill(end.size() + 1));
    size_t at = buf_.find(end);
    size_t avail = at != std::string::npos ? at : (eof_ ? 0 : buf_.size() - std::min(buf_.size(), end.size() - 1));
    if (at == std::string::npos && eof_) return Error::make(errc::invalid_argument, "unterminated multipart part");
    if (at == 0) {
      buf_.erase(0, 2);  // the CRLF before the delimiter; next() finds the delimiter
      in_body_ = false;
      return size_t{0};
    }
    size_t n = std::min(avail, cap);
    std::memcpy(out, buf_.data(), n);
    buf_.erase(0, n);
    return n;
  }

 private:
  static constexpr size_t kMaxPartHeaders = 16 << 10;
  static constexpr size_t kMaxParts = 1000;

  MultipartReader(BodyReader& body, std::string delim) : body_(&body), delim_(std::move(delim)) {}

  // Reads until the buffer holds at least `want` bytes (or the body ends).
  Result<> fill(size_t want) {
    char chunk[65536];
    while (buf_.size() < want && !eof_) {
      BRIG_TRY_ASSIGN(n, body_->read(chunk, std::min(sizeof chunk, kStreamChunk)));
      if (n == 0) eof_ = true;
      buf_.append(chunk, n);
    }
    return ok();
  }

  static Part disposition(const std::string& headers) {
    Part part;
    for (auto& line : split(headers, '\n')) {
      std::string l(trim(line)), lower = l;
      for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!lower.starts_with("content-disposition:")) continue;
      auto param = [&](const std::string& key) -> std::string {
        auto k = lower.find(" " + key + "=\"");
        if (k == std::string::npos) k = lower.find(";" + key + "=\"");
        if (k == std::string::npos) return "";
        size_t start = k + key.size() + 3;
        size_t end = l.find('"', start);
        return end == std::string::npos ? "" : l.substr(start, end - start);
      };
      part.name = param("name");
      part.filename = param("filename");
    }
    return part;
  }

  BodyReader* body_;
  std::string delim_, buf_;
  bool eof_ = false, in_body_ = false;
  size_t parts_ = 0;
};

bool same(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool signature_ok(const Request& req, const Live& live, const std::string& path, const std::string& op,
                  const std::string& user) {
  if (!req.header("x-access-token").empty()) return same(req.header("x-access-token"), live.access_token);
  std::string sig = req.param("signature");
  if (sig.empty()) return false;
  std::string exp = req.param("signature_expiration");
  if (!exp.empty()) {
    if (exp.size() > 12 || exp.find_first_not_of("0123456789") != std::string::npos) return false;
    if (std::stoll(exp) < now_unix_ms() / 1000) return false;
  }
  return same(sig, file_signature(path, op, user, live.access_token, exp));
}

// A failed /files operation, as E2B's envd answers it (downloads and uploads alike).
Response file_error(const Error& e, const std::string& path) {
  int code = e.sys_errno();
  if (code == ENOENT) return Response::error(404, "file not found: " + path);
  if (code == ENOSPC) return Response::error(507, "not enough space: " + e.message());
  if (code == EACCES || code == EPERM) return Response::error(401, e.message());
  if (code == EISDIR || code == ENOTDIR || e.is(errc::invalid_argument)) return Response::error(400, e.message());
  if (e.is(errc::limit_exceeded)) return Response::error(413, e.message());
  return Response::error(500, e.message());
}

// GET /files: the file's bytes go from the fd brig-init opened (as the user, inside the
// sandbox) to the socket in kStreamChunk pieces, so the daemon's memory does not grow with the
// file. At most the size the file had when it was opened is sent (a file the sandbox keeps
// appending to does not stream forever).
void stream_file(const Live& live, sandbox::User user, Request& req, Stream& s) {
  auto fail = [&s](const Response& r) {
    if (s.begin(r.status, {{"Content-Type", "application/json"}})) s.write(r.body);
    s.finish();
  };
  std::string path = req.param("path");
  if (path.empty()) return fail(Response::error(400, "the path query parameter is required"));
  if (!signature_ok(req, live, path, "read", req.param("username")))
    return fail(Response::error(401, "invalid access token or signature"));
  sandbox::EntryInfo info;
  auto fd = live.sandbox->open_read(path, user, &info);
  if (!fd) return fail(file_error(fd.error(), path));
  if (!s.begin(200, {{"Content-Type", "application/octet-stream"}, {"Content-Length", std::to_string(info.size)}})) return;
  std::string buf(kStreamChunk, '\0');
  uint64_t left = info.size;
  while (left > 0) {
    ssize_t n = ::read(fd->get(), buf.data(), std::min<uint64_t>(buf.size(), left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // truncated meanwhile, or unreadable: the short body ends the connection
    if (!s.write(std::string_view(buf.data(), static_cast<size_t>(n)))) return;  // the client left
    left -= static_cast<uint64_t>(n);
  }
  s.finish();
}

// An octet-stream body (gzip-encoded or not) from the socket into the fd brig-init opened, a
// piece at a time: the daemon holds one read buffer and one inflate window, whatever the size.
Result<> body_to_fd(BodyReader& body, int fd, bool gzip) {
  std::string in(kStreamChunk, '\0'), out(gzip ? kStreamChunk : 0, '\0');
  z_stream zs = {};
  if (gzip && inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return Error::make(errc::protocol, "inflateInit2");
  struct End {
    z_stream* zs;
    ~End() {
      if (zs) inflateEnd(zs);
    }
  } end{gzip ? &zs : nullptr};
  uint64_t written = 0;
  bool stream_end = false;
  for (;;) {
    BRIG_TRY_ASSIGN(n, body.read(in.data(), in.size()));
    if (n == 0) break;
    if (!gzip) {
      BRIG_TRY(write_fd_all(fd, std::string_view(in.data(), n), "the uploaded file"));
      continue;
    }
    if (stream_end) return Error::make(errc::invalid_argument, "data after the end of the gzip stream");
    zs.next_in = reinterpret_cast<Bytef*>(in.data());  // SAFETY: byte buffer
    zs.avail_in = static_cast<uInt>(n);
    while (zs.avail_in > 0 && !stream_end) {
      zs.next_out = reinterpret_cast<Bytef*>(out.data());  // SAFETY: byte buffer
      zs.avail_out = static_cast<uInt>(out.size());
      int rc = inflate(&zs, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END) return Error::make(errc::invalid_argument, "body is not valid gzip");
      stream_end = rc == Z_STREAM_END;
      size_t got = out.size() - zs.avail_out;
      written += got;
      if (written > kMaxFileBytes) return Error::make(errc::limit_exceeded, "decompressed body larger than 512 MiB");
      BRIG_TRY(write_fd_all(fd, std::string_view(out.data(), got), "the uploaded file"));
    }
  }
  if (gzip && !stream_end) return Error::make(errc::invalid_argument, "body is not valid gzip (truncated)");
  return ok();
}

// POST /files: the body streams into the files (octet-stream: one file, maybe gzip-encoded;
// multipart: one file per "file" part), each opened by brig-init as the user.
Response upload(const Live& live, sandbox::User user, Request& req, BodyReader& body) {
  std::string path = req.param("path");
  if (!signature_ok(req, live, path, "write", req.param("username")))
    return Response::error(401, "invalid access token or signature");
  std::vector<std::string> written;  // destinations, in order
  std::string ct = req.header("content-type");
  if (ct.starts_with("multipart/form-data")) {
    auto mp = MultipartReader::open(body, ct);
    if (!mp) return Response::error(400, mp.error().message());
    auto body_error = [](const Error& e) {
      return e.is(errc::limit_exceeded) ? Response::error(413, e.message()) : Response::error(400, e.message());
    };
    std::string buf(kStreamChunk, '\0');
    for (;;) {
      auto part = mp->next();
      if (!part) return body_error(part.error());
      if (!*part) break;
      if ((*part)->name != "file") continue;  // its body is skipped by the next next()
      std::string dest = !path.empty() ? path : (*part)->filename;
      if (dest.empty()) return Response::error(400, "a file part without a path");
      auto fd = live.sandbox->open_write(dest, user, 0644);
      if (!fd) return file_error(fd.error(), dest);
      for (;;) {
        auto n = mp->read(buf.data(), buf.size());
        if (!n) return body_error(n.error());
        if (*n == 0) break;
        if (auto w = write_fd_all(fd->get(), std::string_view(buf.data(), *n), dest); !w) return file_error(w.error(), dest);
      }
      written.push_back(dest);
    }
  } else {
    if (path.empty()) return Response::error(400, "the path query parameter is required");
    auto fd = live.sandbox->open_write(path, user, 0644);
    if (!fd) return file_error(fd.error(), path);
    if (auto w = body_to_fd(body, fd->get(), req.header("content-encoding") == "gzip"); !w) {
      if (w.error().is(errc::protocol)) return Response::error(400, w.error().message());
      return file_error(w.error(), path);
    }
    written.push_back(path);
  }
  if (written.empty()) return Response::error(400, "no file in the request");
  // X-Metadata-<key>: value headers replace the files' metadata (keys lower-cased).
  std::map<std::string, std::string> metadata;
  bool has_metadata = false;
  for (auto& [name, value] : req.headers)
    if (name.starts_with("x-metadata-")) {
      has_metadata = true;
      metadata[name.substr(11)] = value;
    }
  nlohmann::json out = nlohmann::json::array();
  for (auto& dest : written) {
    if (has_metadata)
      if (auto m = live.sandbox->set_metadata(dest, user, metadata); !m) return Response::error(400, m.error().message());
    auto st = live.sandbox->stat(dest, user);
    std::string full = st ? st->path : dest;
    nlohmann::json item = {{"path", full}, {"name", full.substr(full.find_last_of('/') + 1)}, {"type", "file"}};
    if (has_metadata) item["metadata"] = metadata;
    out.push_back(item);
  }
  return Response::json(200, out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

Route files_route(std::shared_ptr<Live> live, sandbox::User user, const Request& head) {
  Route r;
  r.body_limit = kMaxFileBytes;
  std::string method = head.method;
  if (method == "GET") {
    r.stream = [live, user](Request& req, Stream& s) { stream_file(*live, user, req, s); };
    return r;
  }
  if (method != "POST") {
    r.respond = [](Request&) { return Response::error(405, "use GET or POST"); };
    return r;
  }
  r.consume = [live, user](Request& req, BodyReader& body) { return upload(*live, user, req, body); };
  return r;
}

}  // namespace

std::string file_signature(const std::string& path, const std::string& op, const std::string& user,
                           const std::string& token, const std::string& expiration) {
  std::string raw = path + ":" + op + ":" + user + ":" + token;
  if (!expiration.empty()) raw += ":" + expiration;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(raw.data(), raw.size(), md, &len, EVP_sha256(), nullptr);
  std::string sig = base64_encode(std::string_view(reinterpret_cast<char*>(md), len));  // SAFETY: bytes
  while (!sig.empty() && sig.back() == '=') sig.pop_back();
  return "v1_" + sig;
}

Result<sandbox::User> user_of(const Request& req, const Live& live) {
  std::string name = req.param("username");
  std::string auth = req.header("authorization");
  if (name.empty() && auth.starts_with("Basic ")) {
    auto header = trim(std::string_view(auth).substr(6));
    if (header.size() > 4096) return Error::make(errc::invalid_argument, "Authorization header too long");
    BRIG_TRY_ASSIGN(decoded, base64_decode(header));
    name = decoded.substr(0, decoded.find(':'));
  }
  if (name.empty()) name = live.tpl.config.user;
  return sandbox::parse_user(name);
}

// ---- /files/archive (a brig extension): a directory as tar.gz or zip, out and in -----------

constexpr uint64_t kMaxArchiveExportBytes = 4ull << 30;
constexpr uint32_t kMaxArchiveEntries = 100'000;
constexpr uint64_t kMaxArchiveUploadBytes = 256ull << 20;
constexpr auto kArchiveStall = std::chrono::seconds(60);  // the helper made no progress this long

// Reads one line (the archive child's JSON status) from `fd`, waiting up to `timeout`.
Result<nlohmann::json> read_status_line(int fd, std::chrono::seconds timeout) {
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char c;
  while (line.size() < 8192) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    struct pollfd p = {fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) == 0)
      return Error::make(errc::timed_out, "the archive was not ready in time");
    ssize_t n = ::read(fd, &c, 1);  // byte by byte: what follows the line is the archive
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error::make(errc::protocol, "the archive helper stopped before answering");
    if (c == '\n') break;
    line += c;
  }
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (!j.is_object()) return Error::make(errc::protocol, "malformed answer from the archive helper");
  return j;
}

int archive_error_status(const nlohmann::json& j) {
  std::string code = j.value("code", "");
  if (code == "not_found") return 404;
  if (code == "too_large") return 413;
  if (code == "forbidden") return 403;
  if (code == "escape" || code == "unsupported" || code == "bad_archive") return 400;
  return 500;
}

uint64_t bounded_param(const Request& req, const std::string& name, uint64_t max) {
  std::string v = req.param(name);
  if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos) return max;
  return std::min<uint64_t>(std::stoull(v), max);
}

Route archive_route(std::shared_ptr<Live> live, sandbox::User user, const Request& head) {
  Route r;
  if (head.method == "GET") {
    r.stream = [live, user](Request& req, Stream& s) {
      auto fail = [&](int status, const std::string& msg) {
        s.begin(status, {{"Content-Type", "application/json"}});
        s.write(nlohmann::json{{"code", status}, {"message", msg}}.dump());
      };
      std::string path = req.param("path"), format = req.param("format").empty() ? "tar.gz" : req.param("format");
      if (path.empty()) return fail(400, "the path query parameter is required");
      if (format != "tar.gz" && format != "zip") return fail(400, "format must be tar.gz or zip");
      auto fd = live->sandbox->export_archive(path, user, format, bounded_param(req, "max_bytes", kMaxArchiveExportBytes),
                                              static_cast<uint32_t>(bounded_param(req, "max_entries", kMaxArchiveEntries)));
      if (!fd) return fail(500, fd.error().message());
      auto status = read_status_line(fd->get(), std::chrono::seconds(120));
      if (!status) return fail(500, status.error().message());
      if (!status->value("ok", false)) return fail(archive_error_status(*status), status->value("error", "cannot archive"));
      std::string base = path.substr(path.find_last_of('/') + 1);
      if (base.empty()) base = "archive";
      std::string safe;
      for (char c : base) safe += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ? c : '_';
      if (!s.begin(200, {{"Content-Type", format == "zip" ? "application/zip" : "application/gzip"},
                         {"Content-Disposition", "attachment; filename=\"" + safe.substr(0, 100) + "." + format + "\""},
                         {"X-Archive-Entries", std::to_string(status->value("entries", 0))},
                         {"X-Archive-Bytes", std::to_string(status->value("bytes", 0))}}))
        return;
      // The helper runs as the sandbox user, who can stop it: never wait on it for long, and
      // notice a client that left.
      char buf[1 << 16];
      auto last = std::chrono::steady_clock::now();
      for (;;) {
        struct pollfd p = {fd->get(), POLLIN, 0};
        int ready = ::poll(&p, 1, 1000);
        if (ready < 0 && errno != EINTR) return;
        if (ready <= 0) {
          if (s.peer_gone() || std::chrono::steady_clock::now() - last > kArchiveStall) return;
          continue;
        }
        ssize_t n = ::read(fd->get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        if (!s.write(std::string_view(buf, static_cast<size_t>(n)))) return;
        last = std::chrono::steady_clock::now();
      }
    };
    return r;
  }
  r.body_limit = kMaxArchiveUploadBytes;
  r.respond = [live, user](Request& req) -> Response {
    if (req.method != "POST") return Response::error(405, "use GET (download) or POST (upload)");
    std::string path = req.param("path");
    std::string format = req.param("format");
    if (format.empty()) format = req.header("content-type") == "application/zip" ? "zip" : "tar.gz";
    if (path.empty()) return Response::error(400, "the path query parameter (the directory to unpack into) is required");
    if (format != "tar.gz" && format != "zip") return Response::error(400, "format must be tar.gz or zip");
    auto pipes = live->sandbox->import_archive(path, user, format, kMaxArchiveUploadBytes, kMaxArchiveEntries);
    if (!pipes) return Response::error(500, pipes.error().message());
    {
      Fd in = std::move(pipes->first);
      ::fcntl(in.get(), F_SETFL, ::fcntl(in.get(), F_GETFL) | O_NONBLOCK);
      std::string_view body = req.body;
      auto last = std::chrono::steady_clock::now();
      while (!body.empty()) {
        struct pollfd p = {in.get(), POLLOUT, 0};
        int ready = ::poll(&p, 1, 1000);
        if (ready < 0 && errno != EINTR) break;
        if (ready <= 0) {
          if (std::chrono::steady_clock::now() - last > kArchiveStall)
            return Response::error(504, "the archive helper stopped reading");
          continue;
        }
        ssize_t n = ::write(in.get(), body.data(), body.size());
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) break;  // the helper gave up early: its answer says why
        body.remove_prefix(static_cast<size_t>(n));
        last = std::chrono::steady_clock::now();
      }
    }
    auto status = read_status_line(pipes->second.get(), std::chrono::seconds(300));
    if (!status) return Response::error(500, status.error().message());
    if (!status->value("ok", false)) return Response::error(archive_error_status(*status), status->value("error", "cannot unpack"));
    return Response::json(200, nlohmann::json{{"path", status->value("path", path)},
                                              {"entries", status->value("entries", 0)},
                                              {"bytes", status->value("bytes", 0)}}
                                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  };
  return r;
}

std::optional<Route> route(std::shared_ptr<Live> live, const Request& req, sandbox::User user, Metrics& metrics) {
  const std::string& p = req.path;
  if (p == "/files") return files_route(live, user, req);
  if (p == "/files/archive") return archive_route(live, user, req);
  if (req.method != "POST") return std::nullopt;
  if (p.starts_with("/process.Process/")) return process_route(live, p.substr(17), user, metrics);
  if (p.starts_with("/filesystem.Filesystem/")) return filesystem_route(live, p.substr(23), user);
  return std::nullopt;
}

}  // namespace brig::server::envd
