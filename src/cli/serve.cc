// brig serve: the E2B-compatible HTTP daemon; brig key create: API keys.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>

#include "base/event_loop.h"
#include "base/fd.h"
#include "base/log.h"
#include "base/util.h"
#include "cli/commands.h"
#include "mcp/code_mode.h"
#include "sandbox/engine.h"
#include "server/daemon.h"

namespace brig::cli {
namespace {

struct ServeArgs {
  bool print_config = false;
};

int fail(const Error& e) {
  std::cerr << "brig: " << e.message() << "\n";
  return 1;
}

// The key the README's command prints: kept (0600) in the state dir so local tools
// (brig mcp, the CLI) find it when run by the same user. A key from before keys took E2B's
// shape ("brig_…", which the Python SDK refuses) is replaced by a new one; it stays valid.
Result<std::string> local_key(core::KeyStore& keys, const std::string& state_dir) {
  const std::string path = state_dir + "/api-key";
  if (auto existing = read_small_file(path, 1024)) {
    std::string key(trim(*existing));
    if (core::looks_like_e2b_key(key)) return key;
  }
  BRIG_TRY_ASSIGN(key, keys.create("local"));
  const std::string tmp = path + ".new";
  ::unlink(tmp.c_str());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return Error::from_errno(errno, "create " + tmp);
  BRIG_TRY(write_fd_all(fd.get(), key, tmp));
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Error::from_errno(errno, "rename " + tmp);
  return key;
}

int serve(const ServeArgs& a, const Globals& g) {
  const config::Config& c = g.config;
  if (a.print_config) {
    std::fputs(config::to_toml(c).c_str(), stdout);
    return 0;
  }
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  // The daemon's one event loop: declared first so that it outlives the engine and every
  // sandbox (their control channels and process pipes are read on it). Its thread starts after
  // Engine::open has forked the zygote, and after the signals are blocked (sigwait gets them).
  // One handler per connection at most, so the pool never makes a request wait for another.
  EventLoop loop(EventLoop::Options{.max_blocking_threads = c.server.max_connections});
  sandbox::EngineOptions engine_options;
  engine_options.state_dir = c.server.state_dir;
  engine_options.loop = &loop;
  engine_options.sandbox = c.sandbox;
  engine_options.limits = c.limits;
  engine_options.network = c.network;
  auto engine = sandbox::Engine::open(engine_options);
  if (!engine) return fail(engine.error());
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  loop.start();
  auto store = store::TemplateStore::open((*engine)->state_dir(), c.build);
  if (!store) return fail(store.error());
  auto keys = core::KeyStore::open((*engine)->state_dir());
  if (!keys) return fail(keys.error());
  if (!c.server.api_key.empty()) (*keys)->add_ephemeral(c.server.api_key);
  auto key = local_key(**keys, (*engine)->state_dir());
  if (!key) return fail(key.error());
  // Every connection is an fd: 1,000 idle keep-alive clients do not fit the usual soft limit
  // of 1,024. Raised after the engine opened, so the zygote and the sandboxes keep theirs.
  if (struct rlimit rl; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < std::min<rlim_t>(rl.rlim_max, 65536)) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 65536);
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  mcp::code_mode::set_process_limits(mcp::code_mode::Limits::from(c.mcp));
  server::DaemonOptions opts;
  opts.loop = &loop;
  opts.http.listen = c.server.listen;
  opts.http.max_connections = c.server.max_connections;
  opts.http.read_timeout = std::chrono::seconds(c.server.read_timeout_s);
  opts.http.idle_timeout = std::chrono::seconds(c.server.idle_timeout_s);
  opts.http.tunnel_idle_timeout = std::chrono::seconds(c.server.port_idle_timeout_s);
  opts.domain = c.server.domain;
  opts.pool_size = c.server.pool_size;
  opts.config = c;
  // Sandboxes' networks (root only) enforce domain rules through brig egress, started from
  // this very binary.
  if (::geteuid() == 0) opts.egress_exe = "/proc/self/exe";
  auto daemon = server::Daemon::start(opts, **engine, **store, **keys);
  if (!daemon) return fail(daemon.error());
  std::string url = "http://" + (*daemon)->address();
  std::printf("brig serve: listening on %s (state in %s)\n\n", url.c_str(), (*engine)->state_dir().c_str());
  std::printf("export E2B_API_KEY=%s\nexport E2B_API_URL=%s\nexport E2B_SANDBOX_URL=%s\nexport E2B_DOMAIN=%s\n\n",
              key->c_str(), url.c_str(), url.c_str(), (*daemon)->domain().c_str());
  std::fflush(stdout);
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    spdlog::warn("signal {}: shutting down; sandboxes keep running for the next brig serve", sig);
    (*daemon)->stop();
  });
  (*daemon)->run();
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  daemon->reset();
  // Sandboxes keep running; the next `brig serve` on this state dir re-adopts them.
  (*engine)->detach_persistent();
  return 0;
}

}  // namespace

Runner add_serve(CLI::App& app, Globals& globals) {
  auto a = std::make_shared<ServeArgs>();
  auto* sub = app.add_subcommand("serve", "Serve the E2B-compatible HTTP API (control plane and sandbox data plane).");
  add_config_flags(*sub, "serve", globals);
  sub->add_flag("--print-config", a->print_config,
                "Print the effective configuration (file, environment and flags applied) as commented TOML, and exit");
  sub->footer("Configuration: /etc/brig/brig.toml if it exists, or --config PATH (TOML; `brig serve --print-config`\n"
              "prints every setting with its bounds). The environment overrides the file (BRIG_<SECTION>_<KEY>), and\n"
              "flags override both (the ones above, and --set section.key=VALUE for any setting).\n"
              "Point the e2b SDKs (npm and Python) at it with the export lines it prints. The API key is kept in\n"
              "<state-dir>/api-key; more keys: brig key create. BRIG_API_KEY adds one for this run.\n"
              "Ports: the data plane routes by the E2b-Sandbox-Id and E2b-Sandbox-Port headers, or by a Host of\n"
              "<port>-<sandboxid>.<domain>, e.g. curl http://49999-<id>.localhost:49982/health");
  return [sub, a, &globals]() -> int { return sub->parsed() ? serve(*a, globals) : -1; };
}

Runner add_key(CLI::App& app, Globals& globals) {
  auto name = std::make_shared<std::string>("cli");
  auto* sub = app.add_subcommand("key", "Manage API keys.");
  sub->require_subcommand(1);
  auto* create = sub->add_subcommand("create", "Create an API key (shown once; only its hash is stored).");
  create->add_option("--name", *name, "A label for the key")->capture_default_str();
  return [sub, create, name, &globals]() -> int {
    if (!sub->parsed() || !create->parsed()) return -1;
    const std::string& dir = globals.config.server.state_dir;
    ::mkdir(dir.c_str(), 0700);
    auto keys = core::KeyStore::open(dir);
    if (!keys) return fail(keys.error());
    auto key = (*keys)->create(*name);
    if (!key) return fail(key.error());
    std::printf("%s\n", key->c_str());
    return 0;
  };
}

}  // namespace brig::cli
