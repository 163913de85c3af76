// brig run: a one-shot sandbox. Create, run one command with live output, exit with its
// status, destroy. With a daemon running (BRIG_URL, or the default address, and a key it
// accepts) the sandbox is one of its warm ones, taken over the API; otherwise (or with
// --rootfs, an explicit limit, or --standalone) this process opens its own engine.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/log.h"
#include "base/util.h"
#include "cli/commands.h"
#include "cli/templates.h"
#include "client/api_client.h"
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
  bool standalone = false;  // --standalone: never use a daemon
  bool limits_given = false;  // --memory, --cpus, --disk or --pids: the API cannot set them
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

Result<std::string> read_stdin(uint64_t limit) {
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > limit)
      return Error::make(errc::limit_exceeded, "stdin above " + format_size(limit) + " (limits.run_stdin_bytes)");
  }
  return data;
}

// 128 + N for the envd end status "signal: NAME" (Go's wording, which brig's envd keeps).
int signal_exit_code(const std::string& status) {
  if (status == "signal: killed") return 128 + SIGKILL;
  if (status == "signal: terminated") return 128 + SIGTERM;
  for (int sig = 1; sig < NSIG; ++sig)
    if (const char* name = ::strsignal(sig); name && status == "signal: " + std::string(name)) return 128 + sig;
  return 128 + SIGKILL;
}

// The run through a daemon: POST /sandboxes (a warm sandbox of the template, if its pool has
// one), process.Process/Start streamed to our stdout/stderr, DELETE. nullopt = no daemon to use
// (none reachable, or it refuses our key): the caller runs the sandbox itself.
std::optional<int> run_via_daemon(const RunArgs& a, const config::Config& c, std::chrono::milliseconds timeout,
                                  const std::string& stdin_data) {
  using nlohmann::json;
  auto api = daemon_client(c);
  if (!api || !api->has_key()) return std::nullopt;
  auto fail = [](const std::string& message, int code = 125) {
    std::cerr << "brig: " << message << "\n";
    return code;
  };
  // Bad input is refused here, as the standalone run refuses it, before anything is created.
  std::map<std::string, std::string> env;
  for (auto& kv : a.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return fail("--env wants KEY=VALUE, got '" + kv + "'");
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (!a.user.empty())
    if (auto u = sandbox::parse_user(a.user); !u) return fail(u.error().message());
  // The sandbox outlives the command by a little, so the command's own timeout fires first.
  auto lifetime_s = std::chrono::duration_cast<std::chrono::seconds>(timeout).count() + 6;
  json body = {{"templateID", a.template_name.empty() ? "base" : a.template_name},
               {"timeout", std::clamp<int64_t>(lifetime_s, 1, 30 * 24 * 3600)},
               {"metadata", {{"brig.role", "run"}}}};
  // Signals stay blocked from here on: a waiting thread turns them into a kill of the sandbox.
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) sigaddset(&sigs, sig);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  auto created = api->call("POST", "/sandboxes", body.dump());
  if (!created) {
    if (created.error().is(errc::unsupported)) {  // nothing listens there
      spdlog::debug("brig run: no daemon at {} ({}); running standalone", api->url(), created.error().message());
      pthread_sigmask(SIG_UNBLOCK, &sigs, nullptr);
      return std::nullopt;
    }
    return fail(created.error().message());
  }
  if (created->status == 401) {  // a daemon of another state dir: not ours to use
    spdlog::debug("brig run: the daemon at {} refused our key; running standalone", api->url());
    pthread_sigmask(SIG_UNBLOCK, &sigs, nullptr);
    return std::nullopt;
  }
  if (created->status != 201 && created->status != 200) return fail(client::api_error(*created));
  auto sandbox = json::parse(created->body, nullptr, false);
  if (!sandbox.is_object() || !sandbox.value("sandboxID", json()).is_string() ||
      !sandbox.value("envdAccessToken", json()).is_string())
    return fail("the daemon's create response has no sandboxID or envdAccessToken");
  const std::string id = sandbox["sandboxID"].get<std::string>();
  auto kill_sandbox = [&] {
    auto r = api->call("DELETE", "/sandboxes/" + id);
    if (!r) return r.error().message();
    return r->status == 204 || r->status == 404 ? std::string() : client::api_error(*r);
  };

  client::CancelToken cancel;
  std::atomic<int> interrupted{0};
  std::thread waiter([&] {
    int sig = 0;
    if (sigwait(&sigs, &sig) == 0 && sig != SIGUSR1) {
      interrupted = sig;
      cancel.cancel();  // exec() then kills the process; the sandbox goes below
    }
  });

  client::ExecRequest req;
  req.sandbox_id = id;
  req.access_token = sandbox["envdAccessToken"].get<std::string>();
  req.cmd = a.command[0];
  req.args.assign(a.command.begin() + 1, a.command.end());
  req.cwd = a.cwd;
  req.user = a.user;
  req.env = std::move(env);
  req.timeout_ms = static_cast<int>(std::min<int64_t>(timeout.count(), std::numeric_limits<int>::max()));
  req.stdin = a.stdin_forward;
  // stdin goes from its own thread, so output keeps flowing while a large input is written.
  std::thread feeder;
  if (a.stdin_forward)
    req.on_start = [&](int pid) {
      feeder = std::thread([&, pid] {
        std::map<std::string, std::string> h = {{"E2b-Sandbox-Id", id}, {"E2b-Sandbox-Port", "49983"},
                                                {"X-Access-Token", req.access_token},
                                                {"Content-Type", "application/json"}, {"Connect-Protocol-Version", "1"}};
        constexpr size_t kChunk = 512u << 10;  // one SendInput body stays well under the 1 MiB cap
        for (size_t off = 0; off < stdin_data.size() && !cancel.cancelled(); off += kChunk) {
          json in = {{"process", {{"pid", pid}}},
                     {"input", {{"stdin", base64_encode(std::string_view(stdin_data).substr(off, kChunk))}}}};
          auto r = api->call("POST", "/process.Process/SendInput", in.dump(), h);
          if (!r || r->status != 200) return;  // the process is gone; its end says why
        }
        (void)api->call("POST", "/process.Process/CloseStdin", json{{"process", {{"pid", pid}}}}.dump(), h);
      });
    };
  auto result = client::exec(*api, req, [](bool is_stderr, std::string_view d) { write_all(is_stderr ? 2 : 1, d); },
                             &cancel);
  if (feeder.joinable()) feeder.join();
  pthread_kill(waiter.native_handle(), SIGUSR1);
  waiter.join();

  int code;
  if (interrupted) {
    std::cerr << "brig: interrupted; sandbox " << id << " killed\n";
    code = 128 + interrupted;
  } else if (!result) {
    code = fail(result.error().message(), 126);
  } else if (result->error_code == "deadline_exceeded") {
    std::cerr << "brig: command timed out after " << a.timeout << " and was killed\n";
    code = 124;
  } else if (result->oom_killed) {
    std::string limit = "the sandbox's memory limit";
    if (auto info = api->call("GET", "/sandboxes/" + id); info && info->status == 200) {
      auto j = json::parse(info->body, nullptr, false);
      if (j.is_object() && j.value("memoryMB", json()).is_number_unsigned())
        limit = "limit " + format_size(j["memoryMB"].get<uint64_t>() << 20);
    }
    std::cerr << "brig: command killed: out of memory (" << limit << ")\n";
    code = 137;
  } else if (result->exited) {
    code = result->exit_code;
  } else if (!result->error_code.empty() && result->status.empty()) {
    // It never started: the Connect error says why (a missing program is not_found).
    code = fail(result->error, result->error_code == "not_found" ? 127 : 126);
  } else {
    code = signal_exit_code(result->status);
  }
  if (auto e = kill_sandbox(); !e.empty() && !interrupted) std::cerr << "brig: cleanup: " << e << "\n";
  return code;
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
    auto in = read_stdin(c.limits.run_stdin_bytes);
    if (!in) return fail(in.error());
    stdin_data = std::move(*in);
  }
  if (a.rootfs.empty() && !a.limits_given && !a.standalone)
    if (auto code = run_via_daemon(a, c, *timeout, stdin_data)) return *code;

  // Signals go to a waiting thread, which kills the sandbox; the zygote is forked first.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  sigaddset(&sigs, SIGUSR1);  // our own "run is over" wake-up for the waiter
  auto engine = sandbox::Engine::open({.state_dir = c.server.state_dir, .sandbox = c.sandbox, .limits = c.limits, .network = c.network});
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
      "125 if the sandbox could not be created, 126/127 if the command could not be started.\n"
      "With a daemon running (BRIG_URL, default http://127.0.0.1:49982, and BRIG_API_KEY or the\n"
      "state dir's key) the sandbox is one of its warm ones; --rootfs, --memory, --cpus, --disk,\n"
      "--pids or --standalone make brig run start its own.");
  sub->add_option("--template", args->template_name,
                  "Template: base, minimal, python3, node, code-interpreter-v1 or one you built (default: base; "
                  "a missing built-in is built on first use)");
  sub->add_option("--rootfs", args->rootfs, "A root filesystem directory to use instead of a template (read-only, root-owned)");
  sub->add_option("--memory", args->memory,
                  "Hard memory limit, e.g. 256M, 2G (default: the template's, else sandbox.memory_mib, 512M)");
  sub->add_option("--cpus", args->cpus, "CPU quota in CPUs, e.g. 0.5 (default: the template's, else sandbox.cpu_millis, 1)");
  sub->add_option("--disk", args->disk, "Size of the sandbox's disk (default: sandbox.disk_mib, 10G)");
  sub->add_option("--pids", args->pids, "Maximum number of tasks (default: sandbox.pids, 512)");
  sub->add_option("--timeout", args->timeout,
                  "Kill the command after this long, e.g. 30s, 5m (default: sandbox.lifetime_s, 300s)");
  sub->add_option("-e,--env", args->env, "Environment variable KEY=VALUE (repeatable)");
  sub->add_option("-u,--user", args->user, "user (uid 1000) or root (root inside the sandbox only); default: the template's");
  sub->add_option("-w,--cwd", args->cwd, "Working directory inside the sandbox (default: the user's home)");
  sub->add_flag("-i,--stdin", args->stdin_forward, "Pass this process's stdin to the command");
  sub->add_flag("--standalone", args->standalone, "Start the sandbox in this process even when a daemon is running");
  sub->add_option("command", args->command, "The command and its arguments (after --)")->required();
  sub->positionals_at_end();
  return [sub, args, &globals]() -> int {
    if (!sub->parsed()) return -1;
    for (const char* limit : {"--memory", "--cpus", "--disk", "--pids"}) args->limits_given |= sub->count(limit) > 0;
    return run_command(*args, globals);
  };
}

}  // namespace brig::cli
