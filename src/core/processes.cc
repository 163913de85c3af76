// core::Service: processes in a sandbox (envd's process service, MCP's run_command).
#include <signal.h>

#include "core/service.h"

namespace brig::core {
namespace {

Error no_process() { return Error::from_errno(ENOENT, "process not found"); }

// The sandbox's log hears of a process's start and end: its pid, tag, user and command line
// (cut at 256 bytes, secrets redacted), never its output.
void log_process(Live& live, ProcessHub& hub) {
  if (!live.log) return;
  const sandbox::ProcessSpec& spec = hub.spec();
  std::string cmd = spec.cmd;
  for (const std::string& a : spec.args) {
    if (cmd.size() > 256) break;
    cmd += ' ' + a;
  }
  if (cmd.size() > 256) cmd = cmd.substr(0, 256) + "...";
  if (live.secrets && live.secrets->redacting()) live.secrets->redaction()->redact(cmd);
  std::map<std::string, std::string> fields = {{"pid", std::to_string(hub.pid())}, {"cmd", std::move(cmd)},
                                               {"user", sandbox::user_name(spec.user)}};
  if (!spec.tag.empty()) fields["tag"] = spec.tag;
  live.log->add(LogLevel::info, "Process started", std::move(fields));
  hub.on_end([log = live.log, pid = hub.pid()](const ProcessEvent& e) {
    std::map<std::string, std::string> f = {{"pid", std::to_string(pid)}};
    if (e.status.signal) f["signal"] = std::to_string(e.status.signal);
    else f["exit_code"] = std::to_string(e.status.exit_code);
    if (e.killed_by_deadline) f["killed"] = "timeout";
    if (e.oom_killed) f["killed"] = "out of memory";
    const bool clean = !e.status.signal && e.status.exit_code == 0;
    log->add(e.oom_killed ? LogLevel::error : clean ? LogLevel::info : LogLevel::warn, "Process ended", std::move(f));
  });
}

}  // namespace

Result<std::shared_ptr<ProcessHub>> Service::start_process(Live& live, StartProcess cmd) {
  if (cmd.spec.cwd.empty()) cmd.spec.cwd = live.tpl.config.workdir;
  const uint64_t oom_kills_before = sandbox::oom_kills(*live.sandbox);
  auto proc = live.sandbox->spawn(cmd.spec);
  if (!proc) {
    // A cwd that is missing or not a directory is the caller's mistake (envd answers
    // invalid_argument); looked up only on this failure path, so a start costs no extra trip.
    if (!cmd.spec.cwd.empty())
      if (auto st = live.sandbox->stat(cmd.spec.cwd, cmd.spec.user); !st || st->type != sandbox::FileType::dir)
        return Error::make(errc::invalid_argument, proc.error().message());
    return proc.error();
  }
  ++metrics_.execs;
  BRIG_TRY_ASSIGN(hub, ProcessHub::start(live.sandbox, std::move(*proc), cmd.spec, oom_kills_before, live.secrets));
  if (cmd.timeout && cmd.timeout->count() > 0) hub->set_deadline(std::chrono::steady_clock::now() + *cmd.timeout);
  log_process(live, *hub);
  std::lock_guard lock(live.mu);
  // Forget processes that ended long enough ago for late Connects to have come (ended ones are
  // kept up to limits.processes_per_sandbox).
  for (auto it = live.processes.begin(); it != live.processes.end();)
    it = it->second->finished() && live.processes.size() > options_.config.limits.processes_per_sandbox ? live.processes.erase(it) : std::next(it);
  live.processes[hub->pid()] = hub;
  return hub;
}

Result<std::shared_ptr<ProcessHub>> Service::find_process(Live& live, const ProcessSelector& sel) {
  std::lock_guard lock(live.mu);
  if (sel.pid) {
    auto it = live.processes.find(*sel.pid);
    if (it != live.processes.end()) return it->second;
  } else if (!sel.tag.empty()) {
    for (auto& [pid, hub] : live.processes)
      if (hub->spec().tag == sel.tag && !hub->finished()) return hub;
  }
  return no_process();
}

std::vector<std::shared_ptr<ProcessHub>> Service::running_processes(Live& live) {
  std::vector<std::shared_ptr<ProcessHub>> out;
  std::lock_guard lock(live.mu);
  for (auto& [pid, hub] : live.processes)
    if (!hub->finished()) out.push_back(hub);
  return out;
}

Result<> Service::send_input(Live& live, const ProcessSelector& sel, std::string_view data) {
  BRIG_TRY_ASSIGN(hub, find_process(live, sel));
  if (hub->finished()) return no_process();
  return hub->write_stdin(data);
}

Result<> Service::send_signal(Live& live, const ProcessSelector& sel, int sig) {
  if (sig != SIGTERM && sig != SIGKILL) return Error::make(errc::invalid_argument, "signal must be SIGNAL_SIGTERM or SIGNAL_SIGKILL");
  BRIG_TRY_ASSIGN(hub, find_process(live, sel));
  if (hub->finished()) return no_process();
  return live.sandbox->signal(hub->pid(), sig, true);
}

Result<> Service::close_stdin(Live& live, const ProcessSelector& sel) {
  BRIG_TRY_ASSIGN(hub, find_process(live, sel));
  return hub->close_stdin();
}

Result<> Service::resize_pty(Live& live, const ProcessSelector& sel, uint16_t rows, uint16_t cols) {
  BRIG_TRY_ASSIGN(hub, find_process(live, sel));
  return hub->resize(rows, cols);
}

}  // namespace brig::core
