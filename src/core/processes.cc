// core::Service: processes in a sandbox (envd's process service, MCP's run_command).
#include <signal.h>

#include "core/service.h"

namespace brig::core {
namespace {

Error no_process() { return Error::from_errno(ENOENT, "process not found"); }

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
