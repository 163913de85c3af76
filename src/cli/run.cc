// brig run: a one-shot sandbox. Create, run one command with live output, exit with its
// status, destroy.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iostream>
#include <thread>

#include "base/util.h"
#include "cli/commands.h"
#include "cli/templates.h"
#include "sandbox/engine.h"

namespace brig::cli {
namespace {

// Empty or 0: the template's value, else the configuration's [sandbox] default.
struct RunArgs {
  std::string template_name;
  std::string rootfs;
  std::string memory;
  double cpus = 0;
  std::string disk;
  uint32_t pids = 0;
  std::string timeout;
  std::vector<std::string> env;
  std::string user;    // "" = the template's default user
  std::string cwd;
  bool stdin_forward = false;
  std::vector<std::string> command;
};

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data.remove_prefix(static_cast<size_t>(n));
  }
}

Result<sandbox::SandboxSpec> build_spec(const RunArgs& a, const store::TemplateInfo* tpl,
                                        const store::TemplateStore* store, std::chrono::milliseconds timeout,
                                        const config::Sandbox& defaults) {
  sandbox::SandboxSpec spec;
  if (tpl) {
    spec = store::sandbox_spec(*store, *tpl, defaults);
    spec.kernels.clear();  // one command: no kernel host started ahead
  } else {
    spec.rootfs = a.rootfs;
    spec.template_name = "rootfs";
    spec.memory_bytes = uint64_t{defaults.memory_mib} << 20;
    spec.cpu_millis = defaults.cpu_millis;
    spec.pids = defaults.pids;
    spec.disk_bytes = uint64_t{defaults.disk_mib} << 20;
  }
  if (!a.memory.empty()) {
    BRIG_TRY_ASSIGN(memory_bytes, parse_size(a.memory));
    spec.memory_bytes = memory_bytes;
  }
  if (!a.disk.empty()) {
    BRIG_TRY_ASSIGN(disk, parse_size(a.disk));
    spec.disk_bytes = disk;
  }
  if (a.cpus > 0) spec.cpu_millis = static_cast<uint32_t>(a.cpus * 1000);
  if (a.pids > 0) spec.pids = a.pids;
  spec.shm_bytes = std::min(uint64_t{defaults.shm_mib} << 20, spec.memory_bytes / 2);
  // The sandbox outlives the command by a little, so the command's own timeout fires first.
  spec.lifetime = timeout + std::chrono::seconds(5);
  for (auto& kv : a.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return Error::make(errc::invalid_argument, "--env wants KEY=VALUE, got '" + kv + "'");
    spec.env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return spec;
}

int run_command(const RunArgs& a, const Globals& g) {
  auto fail = [](const Error& e, int code = 125) {
    std::cerr << "brig: " << e.message() << "\n";
    return code;
  };
  const config::Config& c = g.config;
  if (a.command.empty()) return fail(Error::make(errc::invalid_argument, "no command given (brig run [options] -- CMD ARGS...)"));
  const std::string timeout_text = a.timeout.empty() ? std::to_string(c.sandbox.lifetime_s) + "s" : a.timeout;
  auto timeout = parse_duration(timeout_text);
  if (!timeout) return fail(timeout.error());
  if (!a.rootfs.empty() && !a.template_name.empty())
    return fail(Error::make(errc::invalid_argument, "give --template or --rootfs, not both"));
  std::string stdin_data;
  if (a.stdin_forward) {
    char buf[65536];
    ssize_t n;
    while ((n = ::read(0, buf, sizeof buf)) > 0) {
      stdin_data.append(buf, static_cast<size_t>(n));
      if (stdin_data.size() > c.limits.run_stdin_bytes)
        return fail(Error::make(errc::limit_exceeded,
                                "stdin above " + format_size(c.limits.run_stdin_bytes) + " (limits.run_stdin_bytes)"));
    }
  }

  // Signals go to a waiting thread, which kills the sandbox; the zygote is forked first.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  sigaddset(&sigs, SIGUSR1);  // our own "run is over" wake-up for the waiter
  auto engine = sandbox::Engine::open({.state_dir = c.server.state_dir, .sandbox = c.sandbox, .limits = c.limits});
  if (!engine) return fail(engine.error());
  std::unique_ptr<store::TemplateStore> store;
  std::optional<store::TemplateInfo> tpl;
  if (a.rootfs.empty()) {
    auto opened = store::TemplateStore::open((*engine)->state_dir(), c.build);
    if (!opened) return fail(opened.error());
    store = std::move(*opened);
    TerminalProgress progress(false);
    auto found = store::resolve_template(**engine, *store, a.template_name.empty() ? "base" : a.template_name, progress);
    if (!found) return fail(found.error());
    tpl = std::move(*found);
  }
  auto spec = build_spec(a, tpl ? &*tpl : nullptr, store.get(), *timeout, c.sandbox);
  if (!spec) return fail(spec.error());
  auto user = sandbox::parse_user(a.user.empty() ? (tpl ? tpl->config.user : "user") : a.user);
  if (!user) return fail(user.error());
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  auto sb = (*engine)->create(*spec);
  if (!sb) return fail(sb.error());
  const std::string id = (*sb)->id();
  if (tpl)
    if (auto r = store::start_template_services(**sb, *tpl); !r) {
      (void)(*engine)->kill(id);
      return fail(r.error());
    }
  std::atomic<int> interrupted{0};
  std::thread waiter([&] {
    int sig = 0;
    if (sigwait(&sigs, &sig) == 0 && sig != SIGUSR1) {
      interrupted = sig;
      (void)(*engine)->kill(id);
    }
  });

  sandbox::ProcessSpec ps;
  ps.cmd = a.command[0];
  ps.args.assign(a.command.begin() + 1, a.command.end());
  ps.user = *user;
  ps.cwd = a.cwd.empty() && tpl ? tpl->config.workdir : a.cwd;
  sandbox::RunOptions opts;
  opts.timeout = *timeout;
  opts.output_limit = c.limits.run_output_bytes;
  opts.stdin_data = std::move(stdin_data);
  opts.on_stdout = [](std::string_view d) { write_all(1, d); };
  opts.on_stderr = [](std::string_view d) { write_all(2, d); };
  auto result = (*sb)->run(ps, opts);

  pthread_kill(waiter.native_handle(), SIGUSR1);
  waiter.join();
  int code;
  if (interrupted) {
    std::cerr << "brig: interrupted; sandbox " << id << " killed\n";
    code = 128 + interrupted;
  } else if (!result) {
    code = fail(result.error(), result.error().sys_errno() == ENOENT ? 127 : 126);
  } else if (result->timed_out) {
    std::cerr << "brig: command timed out after " << timeout_text << " and was killed\n";
    code = 124;
  } else if (result->oom_killed) {
    std::cerr << "brig: command killed: out of memory (limit " << format_size(spec->memory_bytes) << ")\n";
    code = 137;
  } else {
    if (result->output_truncated) std::cerr << "brig: output truncated at the output cap\n";
    code = result->shell_code();
  }
  if (auto r = (*engine)->kill(id); !r && !interrupted && !r.error().is(errc::not_found))
    std::cerr << "brig: cleanup: " << r.error().message() << "\n";
  return code;
}

}  // namespace

Runner add_run(CLI::App& app, Globals& globals) {
  auto args = std::make_shared<RunArgs>();
  auto* sub = app.add_subcommand("run", "Run one command in a fresh sandbox, then destroy it.");
  sub->footer(
      "Examples:\n"
      "  brig run --template python3 -- python3 -c 'print(1+1)'\n"
      "  brig run --rootfs /var/cache/brig/rootfs/test-XXXX -- sh -c 'id; hostname'\n"
      "  echo hi | brig run -i --rootfs DIR -- cat\n"
      "  brig run --rootfs DIR --memory 256M --cpus 0.5 --timeout 10s -- bash -c 'yes > /dev/null'\n"
      "Exit status: the command's, 128+N if killed by signal N, 124 on timeout, 137 on OOM,\n"
      "125 if the sandbox could not be created, 126/127 if the command could not be started.");
  sub->add_option("--template", args->template_name,
                  "Template: base, minimal, python3, node, code-interpreter-v1 or one you built (default: base; "
                  "a missing built-in is built on first use)");
  sub->add_option("--rootfs", args->rootfs, "A root filesystem directory to use instead of a template (read-only, root-owned)");
  sub->add_option("--memory", args->memory,
                  "Hard memory limit, e.g. 256M, 2G (default: the template's, else sandbox.memory_mib, 512M)");
  sub->add_option("--cpus", args->cpus, "CPU quota in CPUs, e.g. 0.5 (default: the template's, else sandbox.cpu_millis, 1)");
  sub->add_option("--disk", args->disk, "Size of the writable layer (default: sandbox.disk_mib, 1G)");
  sub->add_option("--pids", args->pids, "Maximum number of tasks (default: sandbox.pids, 512)");
  sub->add_option("--timeout", args->timeout,
                  "Kill the command after this long, e.g. 30s, 5m (default: sandbox.lifetime_s, 300s)");
  sub->add_option("-e,--env", args->env, "Environment variable KEY=VALUE (repeatable)");
  sub->add_option("-u,--user", args->user, "user (uid 1000) or root (root inside the sandbox only); default: the template's");
  sub->add_option("-w,--cwd", args->cwd, "Working directory inside the sandbox (default: the user's home)");
  sub->add_flag("-i,--stdin", args->stdin_forward, "Pass this process's stdin to the command");
  sub->add_option("command", args->command, "The command and its arguments (after --)")->required();
  sub->positionals_at_end();
  return [sub, args, &globals]() -> int { return sub->parsed() ? run_command(*args, globals) : -1; };
}

}  // namespace brig::cli
