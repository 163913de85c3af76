#include "server/mcp_backend.h"

#include <signal.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/util.h"
#include "core/archive.h"
#include "core/code.h"
#include "core/status.h"
#include "server/envd/process_stream.h"
#include "server/envd/rpc.h"
#include "server/local_request.h"
#include "server/rest/rest.h"

namespace brig::server {
namespace {

using nlohmann::json;
// How often a stream in progress (a command's output, a cell) looks at its cancel token and at
// the host closing, when nothing arrives.
constexpr auto kStreamPoll = std::chrono::milliseconds(250);

// A core error on its way to a tool: a server fault is logged once, here, with its cause
// (core/status.h); the message goes to the model as it is.
Error reported(const Error& e, std::string_view what) {
  core::report(e, what);
  return e;
}

Error stopping() { return Error::make(errc::unsupported, "the daemon is stopping"); }
Error cancelled() { return Error::make(errc::conflict, "cancelled"); }

// The user a request without one acts as: the template's (as envd does).
Result<sandbox::User> default_user(const core::Live& live) { return sandbox::parse_user(live.tpl.config.user); }

}  // namespace

// ---- McpHost -----------------------------------------------------------------------------

McpHost::Lease::~Lease() {
  if (!host_) return;
  std::lock_guard lock(host_->mu_);
  if (--host_->active_ == 0) host_->cv_.notify_all();
}

Result<McpHost::Lease> McpHost::enter() {
  std::lock_guard lock(mu_);
  if (closed_) return stopping();
  ++active_;
  return Lease(this);
}

void McpHost::close() {
  std::unique_lock lock(mu_);
  closed_ = true;
  cv_.wait(lock, [this] { return active_ == 0; });
}

// ---- InProcessBackend --------------------------------------------------------------------

Result<McpHost::Lease> InProcessBackend::authorize() {
  BRIG_TRY_ASSIGN(lease, host_->enter());
  // Every valid key may do everything today; a per-key policy would decide here.
  if (!host_->core_.keys().valid(key_)) return Error::make(errc::invalid_argument, "the API key is no longer valid");
  return lease;
}

Result<std::shared_ptr<core::Live>> InProcessBackend::live(const std::string& id, bool running) {
  auto l = host_->core_.find(id);
  if (!l) return mcp::sandbox_gone(l.error().message());
  if (running) BRIG_TRY(core::Service::check_running(**l));
  return l;
}

Result<mcp::CreatedSandbox> InProcessBackend::create_sandbox(const mcp::NewSandbox& req) {
  BRIG_TRY_ASSIGN(lease, authorize());
  auto& core = host_->core_;
  core::CreateSandbox cmd;
  cmd.template_ref = req.template_ref;
  cmd.timeout = std::chrono::seconds(req.timeout_s);
  cmd.env = req.env;
  cmd.metadata = req.metadata;
  cmd.allow_internet_access = req.allow_internet_access;
  if (req.allow_out || req.deny_out)
    cmd.network = core::NetworkConfig{.allow_out = req.allow_out.value_or(std::vector<std::string>{}),
                                      .deny_out = req.deny_out.value_or(std::vector<std::string>{})};
  auto l = core.create(cmd);
  if (!l) return reported(l.error(), "mcp create sandbox");
  mcp::CreatedSandbox out{(*l)->id, (*l)->tpl.name, ""};
  if (auto info = core.info(out.id)) out.ends_at = rest::rfc3339(info->end_at_ms);
  return out;
}

Result<std::vector<mcp::SandboxRow>> InProcessBackend::list_sandboxes(const std::map<std::string, std::string>& metadata) {
  BRIG_TRY_ASSIGN(lease, authorize());
  auto& core = host_->core_;
  core::ListSandboxes q;
  q.metadata = metadata;
  q.limit = 1000;
  std::vector<mcp::SandboxRow> out;
  for (auto& s : core.list(q).rows) {
    mcp::SandboxRow row;
    row.id = s.id;
    row.template_name = s.template_name;
    row.state = s.state == "paused" ? "paused" : "running";
    row.started_at = rest::rfc3339(s.started_at_ms);
    row.ends_at = rest::rfc3339(s.end_at_ms);
    row.cpu_count = std::max<uint32_t>(1, s.cpu_millis / 1000);
    row.memory_mb = s.memory_bytes >> 20;
    row.metadata = s.metadata;
    if (auto l = core.live(s.id)) {
      core::Metric m = core.metric(*l);
      row.usage = mcp::SandboxRow::Usage{m.cpu_used_pct, m.mem_used};
    }
    out.push_back(std::move(row));
  }
  return out;
}

Result<> InProcessBackend::kill_sandbox(const std::string& id) {
  BRIG_TRY_ASSIGN(lease, authorize());
  BRIG_TRY(live(id, /*running=*/false));
  auto k = host_->core_.kill(id);
  if (!k && k.error().is(errc::not_found)) return mcp::sandbox_gone(k.error().message());  // it ended meanwhile
  if (!k) return reported(k.error(), "mcp kill sandbox");
  return ok();
}

Result<> InProcessBackend::set_timeout(const std::string& id, int64_t seconds) {
  BRIG_TRY_ASSIGN(lease, authorize());
  BRIG_TRY(live(id));
  if (auto s = host_->core_.set_timeout(id, std::chrono::seconds(seconds)); !s) return reported(s.error(), "mcp set timeout");
  return ok();
}

Result<> InProcessBackend::pause_sandbox(const std::string& id, bool keep_memory) {
  BRIG_TRY_ASSIGN(lease, authorize());
  BRIG_TRY(live(id, /*running=*/false));
  auto r = host_->core_.pause(id, keep_memory);
  if (!r && r.error().is(errc::not_found)) return mcp::sandbox_gone(r.error().message());
  if (!r && !r.error().is(errc::conflict)) return reported(r.error(), "mcp pause sandbox");
  return r;
}

Result<> InProcessBackend::resume_sandbox(const std::string& id, bool reboot) {
  BRIG_TRY_ASSIGN(lease, authorize());
  BRIG_TRY(live(id, /*running=*/false));
  auto r = host_->core_.resume(id, std::nullopt, /*keep_memory=*/!reboot);
  if (!r && r.error().is(errc::not_found)) return mcp::sandbox_gone(r.error().message());
  if (!r && !r.error().is(errc::conflict)) return reported(r.error(), "mcp resume sandbox");
  if (!r) return r.error();
  return ok();
}

Result<mcp::SandboxDomain> InProcessBackend::sandbox_domain(const std::string& id) {
  BRIG_TRY_ASSIGN(lease, authorize());
  BRIG_TRY_ASSIGN(l, live(id, /*running=*/false));
  return mcp::SandboxDomain{host_->domain_, l->ingress.allow_public_traffic};
}

Result<mcp::ExecResult> InProcessBackend::exec(const mcp::Exec& req, const mcp::OutputFn& on_output,
                                               mcp::CancelToken* cancel) {
  if (cancel && cancel->cancelled()) return cancelled();
  std::shared_ptr<core::Live> l;
  std::shared_ptr<core::ProcessHub> hub;
  {
    BRIG_TRY_ASSIGN(lease, authorize());
    BRIG_TRY_ASSIGN(found, live(req.sandbox_id));
    l = found;
    core::StartProcess cmd;
    cmd.spec.cmd = req.cmd;
    cmd.spec.args = req.args;
    cmd.spec.env = req.env;
    cmd.spec.cwd = req.cwd;
    BRIG_TRY_ASSIGN(user, req.user.empty() ? default_user(*l) : sandbox::parse_user(req.user));
    cmd.spec.user = user;
    cmd.spec.stdin_pipe = req.stdin;
    if (req.timeout_ms > 0) cmd.timeout = std::chrono::milliseconds(req.timeout_ms);
    auto started = host_->core_.start_process(*l, std::move(cmd));
    if (!started) return reported(started.error(), "mcp run command");
    hub = *started;
  }
  // From here on the process and its sandbox are held directly; the core is not touched.
  const uint64_t cursor = hub->subscribe(/*from_start=*/true);
  struct Unsubscribe {
    core::ProcessHub& hub;
    uint64_t cursor;
    ~Unsubscribe() { hub.unsubscribe(cursor); }
  } unsubscribe{*hub, cursor};
  if (req.on_start) req.on_start(hub->pid());
  // A process outlives its caller (E2B semantics): a cancelled call kills it, at once.
  mcp::OnCancel kill(cancel, [&] {
    if (!hub->finished()) (void)l->sandbox->signal(hub->pid(), SIGKILL, /*process_group=*/true);
  });
  for (;;) {
    if (cancel && cancel->cancelled()) return cancelled();
    if (host_->closed()) return stopping();
    for (auto& ev : hub->next(cursor, kStreamPoll)) {
      if (ev.kind != core::ProcessEvent::end) {
        on_output(ev.kind == core::ProcessEvent::stderr_data, ev.bytes());
        continue;
      }
      if (cancel && cancel->cancelled()) return cancelled();  // the end the cancel's kill caused
      auto end = envd::end_event(ev);  // the words envd's end event uses ("signal: killed")
      mcp::ExecResult out;
      out.exited = end.exited();
      out.exit_code = end.exited() ? end.exit_code() : -1;
      out.status = end.status();
      out.oom_killed = ev.oom_killed;
      if (ev.killed_by_deadline) out.error = "it ran past its timeout (" + std::to_string(req.timeout_ms / 1000) + " s) and was killed";
      return out;
    }
  }
}

Result<> InProcessBackend::send_input(const std::string& sandbox_id, int pid, std::string_view data) {
  BRIG_TRY_ASSIGN(lease, authorize());
  BRIG_TRY_ASSIGN(l, live(sandbox_id));
  if (auto s = host_->core_.send_input(*l, core::ProcessSelector{pid, ""}, data); !s) return reported(s.error(), "mcp send input");
  return ok();
}

Result<mcp::CellOutcome> InProcessBackend::run_cell(const mcp::Cell& cell,
                                                    const std::function<void(std::string_view line)>& on_line,
                                                    mcp::CancelToken* cancel) {
  std::shared_ptr<core::Live> l;
  {
    BRIG_TRY_ASSIGN(lease, authorize());
    BRIG_TRY_ASSIGN(found, live(cell.sandbox_id));
    l = found;
  }
  core::RunCode cmd;
  cmd.code = cell.code;
  cmd.context_id = cell.context_id;
  cmd.language = cell.language;
  cmd.env = cell.env;
  if (cell.timeout_ms > 0) cmd.timeout_ms = cell.timeout_ms;
  auto request = core::kernel_request(cmd, host_->core_.config().limits);
  if (!request) return mcp::CellOutcome{400, request.error().message()};  // as /execute answers it
  auto call = core::KernelCall::open(*l, *request);
  auto reply = call ? call->status() : Result<json>(call.error());
  if (!reply) {  // never the caller's fault: logged once, here
    spdlog::error("mcp run code: the code interpreter is not available: {}", reply.error().message());
    return reply.error();
  }
  if (int status = (*reply)["status"]; status != 200) {
    const json& body = reply->contains("body") ? (*reply)["body"] : json("");
    return mcp::CellOutcome{status >= 400 && status <= 599 ? status : 502, body.is_string() ? body.get<std::string>() : body.dump()};
  }
  // Returning closes the connection to the kernel host, which interrupts a running cell: that
  // is what a cancelled call (or a stopping daemon) gets.
  for (;;) {
    if (cancel && cancel->cancelled()) return cancelled();
    if (host_->closed()) return stopping();
    auto line = call->next(kStreamPoll);
    if (line && !*line && l->sandbox->alive()) continue;
    if (!line || !*line) break;  // the kernel host went away, or the sandbox ended
    if ((*line)->empty()) continue;
    on_line(**line);
    if ((*line)->starts_with("{\"type\":\"end_of_execution\"")) {
      if (cancel && cancel->cancelled()) return cancelled();
      return mcp::CellOutcome{};
    }
  }
  json err = {{"type", "error"}, {"name", "UnexpectedEndOfExecution"},
              {"value", l->sandbox->alive() ? "the kernel host stopped before the cell finished"
                                            : "the sandbox ended before the cell finished"},
              {"traceback", ""}};
  on_line(err.dump());
  on_line(R"({"type":"end_of_execution"})");
  return mcp::CellOutcome{};
}

Result<std::vector<mcp::DirEntry>> InProcessBackend::list_dir(const std::string& sandbox_id, const std::string& path,
                                                              int depth) {
  BRIG_TRY_ASSIGN(lease, authorize());
  BRIG_TRY_ASSIGN(l, live(sandbox_id));
  BRIG_TRY_ASSIGN(user, default_user(*l));
  auto entries = host_->core_.list_dir(*l, path, static_cast<uint32_t>(std::clamp(depth, 1, 5)), user);
  if (!entries) return reported(entries.error(), "mcp list files");
  std::vector<mcp::DirEntry> out;
  out.reserve(entries->size());
  for (auto& e : *entries) {
    filesystem::EntryInfo pb;
    envd::to_pb(e, &pb);  // the permissions and owner words envd uses
    mcp::DirEntry d;
    d.kind = e.type == sandbox::FileType::symlink ? mcp::DirEntry::symlink
             : e.type == sandbox::FileType::dir   ? mcp::DirEntry::dir
                                                  : mcp::DirEntry::file;
    d.path = pb.path();
    d.size = static_cast<uint64_t>(pb.size());
    d.permissions = pb.permissions();
    d.owner = pb.owner();
    if (d.kind == mcp::DirEntry::symlink) d.symlink_target = pb.symlink_target();
    out.push_back(std::move(d));
  }
  return out;
}

Result<std::string> InProcessBackend::read_file(const std::string& sandbox_id, const std::string& path, size_t max_bytes) {
  std::shared_ptr<core::Live> l;
  {
    BRIG_TRY_ASSIGN(lease, authorize());
    BRIG_TRY_ASSIGN(found, live(sandbox_id));
    l = found;
  }
  BRIG_TRY_ASSIGN(user, default_user(*l));
  sandbox::EntryInfo info;
  auto fd = l->sandbox->open_read(path, user, &info);
  if (!fd) return reported(fd.error(), "mcp read file");
  if (info.size > max_bytes) return Error::make(errc::limit_exceeded, path + " is larger than " + format_size(max_bytes));
  // At most the size the file had when it was opened (a file that keeps growing ends there).
  std::string out(info.size, '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd->get(), out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return reported(Error::from_errno(errno, "read " + path), "mcp read file");
    if (n == 0) break;  // truncated meanwhile
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

Result<> InProcessBackend::write_file(const std::string& sandbox_id, const std::string& path, std::string_view content) {
  std::shared_ptr<core::Live> l;
  {
    BRIG_TRY_ASSIGN(lease, authorize());
    BRIG_TRY_ASSIGN(found, live(sandbox_id));
    l = found;
  }
  BRIG_TRY_ASSIGN(user, default_user(*l));
  auto fd = l->sandbox->open_write(path, user, 0644);
  if (!fd) return reported(fd.error(), "mcp write file");
  if (auto w = write_fd_all(fd->get(), content, path); !w) return reported(w.error(), "mcp write file");
  return ok();
}

Result<mcp::Archive> InProcessBackend::download_archive(const std::string& sandbox_id, const std::string& path,
                                                        const std::string& format, uint64_t max_bytes,
                                                        uint32_t max_entries, size_t max_archive) {
  std::shared_ptr<core::Live> l;
  {
    BRIG_TRY_ASSIGN(lease, authorize());
    BRIG_TRY_ASSIGN(found, live(sandbox_id));
    l = found;
  }
  BRIG_TRY_ASSIGN(user, default_user(*l));
  auto exported = core::export_archive(*l, path, user, format, max_bytes, max_entries);
  if (!exported) return reported(exported.error(), "mcp download files");
  mcp::Archive out{"", exported->entries, exported->bytes};
  // The helper runs as the sandbox user, who can stop it: every wait is bounded.
  const int fd = exported->fd.get();
  char buf[1 << 16];
  auto last = std::chrono::steady_clock::now();
  for (;;) {
    if (host_->closed()) return stopping();
    struct pollfd p = {fd, POLLIN, 0};
    int ready = ::poll(&p, 1, static_cast<int>(kStreamPoll.count()));
    if (ready < 0 && errno != EINTR) return reported(Error::from_errno(errno, "poll"), "mcp download files");
    if (ready <= 0) {
      if (std::chrono::steady_clock::now() - last > core::kArchiveStall)
        return Error::make(errc::timed_out, "the archive helper stopped producing the archive");
      continue;
    }
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return reported(Error::from_errno(errno, "read the archive"), "mcp download files");
    if (n == 0) return out;
    if (out.data.size() + static_cast<size_t>(n) > max_archive)
      return Error::make(errc::limit_exceeded, "the archive is larger than " + format_size(max_archive));
    out.data.append(buf, static_cast<size_t>(n));
    last = std::chrono::steady_clock::now();
  }
}

Result<mcp::Unpacked> InProcessBackend::upload_archive(const std::string& sandbox_id, const std::string& path,
                                                       const std::string& format, std::string_view archive) {
  std::shared_ptr<core::Live> l;
  {
    BRIG_TRY_ASSIGN(lease, authorize());
    BRIG_TRY_ASSIGN(found, live(sandbox_id));
    l = found;
  }
  BRIG_TRY_ASSIGN(user, default_user(*l));
  // The tool bounds the archive (16 MB); the entries as /files/archive does.
  auto in = core::import_archive(*l, path, user, format, archive, 256ull << 20, 100'000);
  if (!in) return reported(in.error(), "mcp upload files");
  return mcp::Unpacked{in->path, in->entries, in->bytes};
}

Result<mcp::ApiResponse> InProcessBackend::call_api(const std::string& method, const std::string& target,
                                                    const std::string& body, size_t max_body) {
  BRIG_TRY_ASSIGN(lease, authorize());
  auto started = std::chrono::steady_clock::now();
  Request req;
  req.method = method;
  req.target = target;
  req.body = body;
  req.remote = "mcp";
  // The same checks as any client's request: the caller's key, a loopback Host.
  req.headers = {{"host", "localhost"}, {"x-api-key", key_}, {"user-agent", "brig-mcp"}};
  if (!body.empty()) req.headers["content-type"] = "application/json";
  auto res = serve_locally(host_->router_, std::move(req), max_body);
  std::string path = target.substr(0, target.find('?'));  // never the query: it may carry a signature
  if (!res) {
    spdlog::info("mcp api call {} {} failed: {}", method, path.substr(0, 128), res.error().message());
    return res.error();
  }
  spdlog::info("mcp api call {} {} status={} ms={:.1f}", method, path.substr(0, 128), res->status,
               std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
  if (res->status >= 400) host_->core_.count_http_error(method + " " + path.substr(0, 64));
  return mcp::ApiResponse{res->status, std::move(res->body)};
}

}  // namespace brig::server
