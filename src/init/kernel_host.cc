#include "init/kernel_host.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <zmq.hpp>

#include "base/util.h"
#include "init/jupyter.h"
#include "init/kernel.h"
#include "init/line_kernel.h"
#include "init/spawn.h"
#include "isolate/caps.h"
#include "sys/seqpacket.h"
#include "sys/syscalls.h"

namespace brig::init {
namespace {

using jupyter::json;
using Clock = KernelClock;
using namespace std::chrono_literals;

constexpr size_t kMaxRequestBytes = 8 << 20;  // one request line (code is capped by the daemon)
constexpr size_t kMaxPendingOut = 256 << 20;  // unread output before a connection is dropped
constexpr size_t kMaxQueued = 64;             // executions waiting per context
constexpr size_t kStreamChunk = 1 << 20;      // stdout/stderr text per NDJSON line
constexpr auto kStartTimeout = 60s;
constexpr auto kInterruptGrace = 3s;
constexpr auto kHousekeepingTimeout = 10s;  // a silent env step
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr const char* kHome = "/home/user";

// A connection from the daemon: one request line in, lines out.
struct Conn {
  Fd fd;
  std::string in, out;
  bool have_request = false;
  bool gone = false;     // the daemon closed it (client disconnect) or it broke
  bool finish = false;   // close once `out` is flushed
  void line(const json& j) {
    if (gone) return;
    out += j.dump(-1, ' ', false, json::error_handler_t::replace);
    out += '\n';
    if (out.size() > kMaxPendingOut) gone = true;  // the reader stopped reading
  }
  void reply(int status, json body) {
    line({{"status", status}, {"body", std::move(body)}});
    finish = true;
  }
};

struct Step {
  std::string code;
  bool main = false;  // the user's code (its output goes to the connection)
};

// One request to run code (or the host's own work, without a connection: env updates): its
// steps run one after another in the context's kernel, and it is the sink of the one in flight.
struct Exec final : StepSink {
  std::shared_ptr<Conn> conn;  // null for the host's own work
  std::deque<Step> steps;
  bool in_flight = false;      // the front step was given to the kernel
  bool step_done = false;      // ... and the kernel said it is over
  bool began = false;          // a step was given
  int64_t timeout_ms = 0;
  std::optional<Clock::time_point> deadline, interrupted_at;
  bool timed_out = false;

  bool for_caller() const { return conn && !steps.empty() && steps.front().main; }

  void stream(bool is_stderr, std::string_view text) override {
    if (!for_caller()) return;
    for (size_t off = 0; off < text.size();) {
      size_t n = std::min(kStreamChunk, text.size() - off);
      // Never split a UTF-8 sequence across lines.
      while (off + n < text.size() && n > 1 && (static_cast<unsigned char>(text[off + n]) & 0xC0) == 0x80) --n;
      conn->line({{"type", is_stderr ? "stderr" : "stdout"}, {"text", text.substr(off, n)},
                  {"timestamp", jupyter::iso_now()}});
      off += n;
    }
  }
  void line(json l) override {
    if (!for_caller()) return;
    // After a timeout the host says what happened; the kernel's interrupt error is noise.
    if (timed_out && l.value("type", "") == "error") return;
    conn->line(l);
  }
  void done() override { step_done = true; }
};

struct Context {
  std::string id, language, kernel_name, cwd;
  std::unique_ptr<Kernel> kernel;
  uint64_t generation = 0;  // which start of its kernel this is
  Clock::time_point started;
  std::deque<std::unique_ptr<Exec>> queue;  // the front one runs
  json describe() const { return {{"id", id}, {"language", language}, {"cwd", cwd}}; }
  // The code env_vars become: the kernel's language, in the dialect of the kernel running it.
  std::string env_dialect() const { return kernel_name == "node" ? "node" : language; }
  Exec* in_flight() { return !queue.empty() && queue.front()->in_flight ? queue.front().get() : nullptr; }
};

class Host {
 public:
  Host(Fd control, std::map<std::string, std::string> env, uint32_t max_contexts)
      : control_(std::move(control)), env_(std::move(env)), max_contexts_(max_contexts) {
    char tmpl[] = "/tmp/.brig-kernels-XXXXXX";
    if (::mkdtemp(tmpl)) dir_ = tmpl;
  }

  [[noreturn]] void run(const std::vector<std::string>& prestart) {
    // A kernel that exits leaves a pipe without a reader: a write must fail, not kill the host.
    ::signal(SIGPIPE, SIG_IGN);
    for (auto& lang : prestart) {
      auto c = default_context(lang);
      (void)c;  // a kernel that cannot start is reported to the first execution that needs it
    }
    for (;;) {
      std::vector<zmq_pollitem_t> items;
      items.push_back({nullptr, control_.get(), ZMQ_POLLIN, 0});
      for (auto& c : conns_) {
        short ev = c->out.empty() ? 0 : ZMQ_POLLOUT;
        if (!c->gone) ev |= ZMQ_POLLIN;
        items.push_back({nullptr, c->fd.get(), ev, 0});
      }
      struct Polled {
        Context* context;
        uint64_t generation;  // a kernel restarted meanwhile has other fds: skip what was seen
        size_t first;
      };
      std::vector<Polled> kernels;
      for (auto& [id, c] : contexts_) {
        if (!c->kernel->running()) continue;
        kernels.push_back({c.get(), c->generation, items.size()});
        c->kernel->poll_items(items);
      }
      const size_t polled_conns = conns_.size();
      try {
        zmq::poll(items.data(), items.size(), std::chrono::milliseconds(hurry_ ? 5 : 100));
      } catch (const zmq::error_t&) {
      }
      // Anything a kernel or a connection sends is untrusted: a malformed message is dropped,
      // never allowed to end the host (and every context with it).
      try {
        for (size_t i = 0; i < polled_conns; ++i) on_conn(*conns_[i], items[1 + i].revents);
        for (auto& p : kernels)
          if (p.context->generation == p.generation && p.context->kernel->running())
            p.context->kernel->on_poll(&items[p.first], p.context->in_flight());
        if (items[0].revents) on_control();  // last: it may add connections
        reap();
        hurry_ = false;
        for (auto& [id, c] : contexts_) tick(*c);
      } catch (const std::exception&) {
      }
      std::erase_if(conns_, [](const std::shared_ptr<Conn>& c) { return c->gone || (c->finish && c->out.empty()); });
      std::erase_if(contexts_, [](const auto& kv) { return kv.second->id.empty(); });  // removed
    }
  }

 private:
  // ---- brig-init and the daemon's connections -------------------------------------------------

  void on_control() {
    auto packet = sys::recv_packet(control_.get());
    if (!packet) {
      shutdown_all();
      ::_exit(0);  // brig-init is gone
    }
    json msg = json::parse(packet->data, nullptr, false);
    std::string op = msg.is_object() ? msg.value("op", "") : "";
    if (op == "conn" && packet->fds.size() == 1) {
      auto c = std::make_shared<Conn>();
      c->fd = std::move(packet->fds[0]);
      ::fcntl(c->fd.get(), F_SETFL, ::fcntl(c->fd.get(), F_GETFL) | O_NONBLOCK);
      conns_.push_back(std::move(c));
    } else if (op == "env" && msg.contains("env") && msg["env"].is_object()) {
      env_.clear();
      for (auto& [k, v] : msg["env"].items())
        if (v.is_string()) env_[k] = v.get<std::string>();
      // Running kernels learn the new variables too (a pooled sandbox's kernel started first).
      if (!msg["env"].empty())
        for (auto& [id, c] : contexts_) {
          json set = msg["env"];
          for (auto& [k, v] : kernel_env_overrides(c->kernel_name)) set.erase(k);
          auto code = jupyter::env_code(c->env_dialect(), set);
          if (code.apply.empty()) continue;
          auto e = std::make_unique<Exec>();
          e->steps.push_back({code.apply, false});
          c->queue.push_back(std::move(e));
        }
    }
  }

  void on_conn(Conn& c, short revents) {
    if (revents & ZMQ_POLLOUT) {
      ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n > 0) c.out.erase(0, static_cast<size_t>(n));
      else if (n < 0 && errno != EAGAIN && errno != EINTR) c.gone = true;
    }
    if (!(revents & (ZMQ_POLLIN | ZMQ_POLLERR))) return;
    char buf[65536];
    ssize_t n = ::read(c.fd.get(), buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      c.gone = true;  // the daemon hung up: a running execution is interrupted in tick()
      return;
    }
    if (n < 0 || c.have_request) return;  // nothing more is expected after the request
    c.in.append(buf, static_cast<size_t>(n));
    auto nl = c.in.find('\n');
    if (nl == std::string::npos) {
      if (c.in.size() > kMaxRequestBytes) c.reply(413, "request too large");
      return;
    }
    c.have_request = true;
    json req = json::parse(c.in.substr(0, nl), nullptr, false);
    c.in.clear();
    for (auto& sp : conns_)
      if (sp.get() == &c) handle(sp, req);
  }

  void handle(const std::shared_ptr<Conn>& conn, const json& req) {
    if (!req.is_object() || !req.contains("op") || !req["op"].is_string()) return conn->reply(400, "malformed request");
    const std::string op = req["op"];
    auto str = [&](const char* k) { return req.contains(k) && req[k].is_string() ? req[k].get<std::string>() : ""; };
    if (op == "list_contexts") {
      json list = json::array();
      for (auto& [id, c] : contexts_) list.push_back(c->describe());
      return conn->reply(200, list);
    }
    if (op == "create_context") {
      auto lang = jupyter::normalize_language(str("language"));
      auto c = create_context(lang.empty() ? "python" : lang, str("cwd"));
      if (!c) return conn->reply(c.error().is(errc::limit_exceeded) ? 429 : 400, c.error().message());
      return conn->reply(200, (*c)->describe());
    }
    if (op == "restart_context" || op == "remove_context") {
      auto it = contexts_.find(str("id"));
      if (it == contexts_.end()) return conn->reply(404, "Context " + str("id") + " not found");
      Context& c = *it->second;
      fail_all(c, "ContextRestarted", op == "remove_context" ? "the context was removed" : "the context was restarted");
      c.kernel->stop();
      if (op == "remove_context") {
        for (auto d = defaults_.begin(); d != defaults_.end(); ++d)
          if (d->second == c.id) {
            defaults_.erase(d);
            break;
          }
        c.id.clear();  // erased after this iteration
        return conn->reply(200, json::object());
      }
      if (auto s = start_kernel(c); !s) return conn->reply(500, s.error().message());
      return conn->reply(200, c.describe());
    }
    if (op == "execute") {
      if (!req.contains("code") || !req["code"].is_string()) return conn->reply(400, "code must be a string");
      Context* c = nullptr;
      if (auto id = str("context_id"); !id.empty()) {
        auto it = contexts_.find(id);
        if (it == contexts_.end()) return conn->reply(404, "Context " + id + " not found");
        c = it->second.get();
      } else {
        auto lang = jupyter::normalize_language(str("language"));
        auto d = default_context(lang.empty() ? "python" : lang);
        if (!d) return conn->reply(400, d.error().message());
        c = *d;
      }
      if (c->queue.size() >= kMaxQueued) return conn->reply(429, "too many executions queued in this context");
      auto e = std::make_unique<Exec>();
      e->conn = conn;
      json env = req.contains("env_vars") && req["env_vars"].is_object() ? req["env_vars"] : json::object();
      auto code = jupyter::env_code(c->env_dialect(), env);
      if (!code.apply.empty()) e->steps.push_back({code.apply, false});
      e->steps.push_back({req["code"].get<std::string>(), true});
      if (!code.restore.empty()) e->steps.push_back({code.restore, false});
      if (req.contains("timeout_ms") && req["timeout_ms"].is_number_integer()) e->timeout_ms = req["timeout_ms"];
      conn->line({{"status", 200}});
      c->queue.push_back(std::move(e));
      return;
    }
    conn->reply(400, "unknown op '" + op + "'");
  }

  // ---- contexts and kernels ------------------------------------------------------------------

  std::string path() const {
    auto it = env_.find("PATH");
    return it != env_.end() && !it->second.empty() ? it->second : kDefaultPath;
  }

  // What this sandbox has to run each language (looked up when a context is created, so a
  // runtime installed meanwhile is found).
  Installed installed() const {
    Installed in;
    auto spec = [](const char* name) {
      for (const char* root : kKernelspecRoots)
        if (::access((std::string(root) + name + "/kernel.json").c_str(), R_OK) == 0) return true;
      return false;
    };
    in.python3 = spec("python3");
    in.deno = spec("deno");
    in.ir = spec("ir");
    in.bash = find_executable("bash", path());
    if (in.bash.empty()) in.bash = find_executable("/bin/bash", "");
    in.node = find_executable("node", path());
    if (in.node.empty()) in.node = find_executable("nodejs", path());
    return in;
  }

  Result<Context*> default_context(const std::string& language) {
    BRIG_TRY_ASSIGN(choice, choose_kernel(language, installed()));
    if (auto it = defaults_.find(choice.name); it != defaults_.end()) return contexts_.at(it->second).get();
    BRIG_TRY_ASSIGN(c, create_context(language, ""));
    defaults_[c->kernel_name] = c->id;
    return c;
  }

  Result<Context*> create_context(const std::string& language, const std::string& cwd) {
    const Installed in = installed();
    BRIG_TRY_ASSIGN(choice, choose_kernel(language, in));
    if (contexts_.size() >= max_contexts_)
      return Error::make(errc::limit_exceeded, "too many contexts (" + std::to_string(max_contexts_) + ")");
    auto c = std::make_unique<Context>();
    c->id = random_hex(16);
    c->id = c->id.substr(0, 8) + "-" + c->id.substr(8, 4) + "-" + c->id.substr(12, 4) + "-" + c->id.substr(16, 4) +
            "-" + c->id.substr(20);
    c->language = language;
    c->kernel_name = choice.name;
    c->cwd = cwd.empty() ? kHome : expand_path(cwd, kHome);
    struct stat st;
    if (::stat(c->cwd.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return Error::make(errc::invalid_argument, "cwd '" + c->cwd + "' is not a directory in the sandbox");
    switch (choice.family) {
      case KernelFamily::jupyter: c->kernel = make_jupyter_kernel(zmq_, choice.name); break;
      case KernelFamily::bash: c->kernel = make_bash_kernel(in.bash); break;
      case KernelFamily::node: c->kernel = make_node_kernel(in.node); break;
    }
    BRIG_TRY(start_kernel(*c));
    Context* raw = c.get();
    contexts_[c->id] = std::move(c);
    return raw;
  }

  Result<> start_kernel(Context& c) {
    if (dir_.empty()) return Error::from_errno(ENOENT, "no private directory for kernels");
    KernelLaunch launch;
    launch.context_id = c.id;
    launch.cwd = c.cwd;
    launch.dir = dir_;
    launch.env = {{"PATH", kDefaultPath}, {"HOME", kHome}, {"USER", "user"}, {"LOGNAME", "user"}};
    for (auto& [k, v] : env_) launch.env[k] = v;
    BRIG_TRY(c.kernel->start(launch));
    c.generation = ++generations_;
    c.started = Clock::now();
    return ok();
  }

  void finish_front(Context& c) {
    auto e = std::move(c.queue.front());
    c.queue.pop_front();
    if (e->conn) {
      if (e->timed_out)
        e->conn->line({{"type", "error"}, {"name", "TimeoutError"},
                       {"value", "the cell ran longer than its timeout of " + std::to_string(e->timeout_ms) +
                                     " ms and was interrupted; the kernel and its state were kept"},
                       {"traceback", ""}});
      e->conn->line({{"type", "end_of_execution"}});
      e->conn->finish = true;
    }
  }

  static void fail(Exec& e, const std::string& name, const std::string& why) {
    if (!e.conn) return;
    e.conn->line({{"type", "error"}, {"name", name}, {"value", why}, {"traceback", ""}});
    e.conn->line({{"type", "end_of_execution"}});
    e.conn->finish = true;
  }

  void fail_all(Context& c, const std::string& name, const std::string& why) {
    for (auto& e : c.queue) fail(*e, name, why);
    c.queue.clear();
  }

  // The kernel is gone or stuck: start a new one; what ran in the old one is lost.
  void replace_kernel(Context& c, const std::string& name, const std::string& why) {
    if (c.in_flight()) {
      auto e = std::move(c.queue.front());
      c.queue.pop_front();
      fail(*e, name, why);
    }
    restart_after_loss(c);
  }

  void restart_after_loss(Context& c) {
    c.kernel->stop();
    // Host-internal steps (env updates) are replayed through the new kernel's environment.
    std::erase_if(c.queue, [](const std::unique_ptr<Exec>& e) { return !e->conn; });
    if (auto s = start_kernel(c); !s) fail_all(c, "KernelError", "the kernel could not be restarted: " + s.error().message());
  }

  void tick(Context& c) {
    Kernel& k = *c.kernel;
    if (c.id.empty()) return;
    if (!k.running()) {
      // A kernel that failed to start is tried again when there is work for it.
      if (!c.queue.empty())
        if (auto s = start_kernel(c); !s) fail_all(c, "KernelError", s.error().message());
      return;
    }
    auto now = Clock::now();
    if (k.tick(now, c.in_flight())) hurry_ = true;
    if (!k.ready()) {
      if (now - c.started > kStartTimeout) {
        std::string log = k.start_log();
        k.stop();
        fail_all(c, "KernelError", "the " + c.kernel_name + " kernel did not start within 60 s" +
                                       (log.empty() ? "" : ": " + log));
      }
      return;
    }
    while (!c.queue.empty()) {
      Exec& e = *c.queue.front();
      if (!e.in_flight) {
        if (e.conn && e.conn->gone) {
          // The caller left before the code ran: nothing of it runs, but an environment that
          // was already applied is still restored.
          if (!e.began) {
            c.queue.pop_front();
            continue;
          }
          std::erase_if(e.steps, [](const Step& s) { return s.main; });
        }
        if (e.steps.empty()) {
          finish_front(c);
          continue;
        }
        const Step& s = e.steps.front();
        e.in_flight = e.began = true;
        e.step_done = false;
        e.deadline.reset();
        e.interrupted_at.reset();
        if (s.main && e.timeout_ms > 0) e.deadline = now + std::chrono::milliseconds(e.timeout_ms);
        if (!s.main) e.deadline = now + kHousekeepingTimeout;  // env set/restore must not hang the queue
        k.begin(s.code, s.main, e);
        if (!e.step_done) return;  // (a line kernel ends an empty cell at once)
      }
      if (e.step_done) {
        e.steps.pop_front();
        e.in_flight = false;
        if (e.steps.empty()) finish_front(c);
        continue;
      }
      if (!e.interrupted_at) {
        if (e.steps.front().main && e.conn && e.conn->gone) {
          e.interrupted_at = now;
          k.interrupt();
        } else if (e.deadline && now > *e.deadline) {
          e.timed_out = e.steps.front().main;
          e.interrupted_at = now;
          k.interrupt();
        }
      } else if (now - *e.interrupted_at > kInterruptGrace) {
        replace_kernel(c, e.timed_out ? "TimeoutError" : "KernelRestarted",
                       "the cell did not stop when interrupted, so the kernel was restarted: its state (variables, "
                       "imports) was lost");
      }
      return;
    }
  }

  void reap() {
    for (;;) {
      int status;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      for (auto& [id, c] : contexts_) {
        if (c->kernel->pid() != pid) continue;
        const bool was_ready = c->kernel->ready();
        Exec* e = c->in_flight();
        if (!was_ready) {
          (void)c->kernel->exited(status, nullptr);
          std::string how = WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status))
                                                : "exited with code " + std::to_string(WEXITSTATUS(status));
          std::string log = c->kernel->start_log();
          c->kernel->stop();
          fail_all(*c, "KernelError", "the " + c->kernel_name + " kernel " + how + " while starting" +
                                          (log.empty() ? "" : ": " + log));
        } else if (c->kernel->exited(status, e)) {
          restart_after_loss(*c);  // the kernel told the caller; its step is over
        } else {
          std::string how = WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status)) +
                                                      (WTERMSIG(status) == SIGKILL ? " (out of memory?)" : "")
                                                : "exited with code " + std::to_string(WEXITSTATUS(status));
          replace_kernel(*c, "KernelDied", "the kernel " + how + " and was restarted: its state was lost");
        }
      }
    }
  }

  void shutdown_all() {
    for (auto& [id, c] : contexts_) c->kernel->stop();
  }

  zmq::context_t zmq_{1};
  Fd control_;
  std::map<std::string, std::string> env_;
  const uint32_t max_contexts_;
  std::string dir_;
  std::vector<std::shared_ptr<Conn>> conns_;
  std::map<std::string, std::unique_ptr<Context>> contexts_;
  std::map<std::string, std::string> defaults_;  // kernel name -> context id
  bool hurry_ = false;                           // a kernel waits for something soon: poll briefly
  uint64_t generations_ = 0;
};

}  // namespace

std::string kernel_host_conn_message() { return R"({"op":"conn"})"; }

std::string kernel_host_env_message(const std::map<std::string, std::string>& env) {
  return json({{"op", "env"}, {"env", env}}).dump();
}

Result<KernelHost> start_kernel_host(const std::map<std::string, std::string>& env,
                                     const std::vector<std::string>& prestart, uint32_t max_contexts) {
  BRIG_TRY_ASSIGN(pair, sys::seqpacket_pair());
  auto [ours, theirs] = std::move(pair);
  pid_t pid = ::fork();
  if (pid < 0) return Error::from_errno(errno, "fork the kernel host");
  if (pid == 0) {
    // Nothing of brig-init's stays: signals, fds (but 0-2 and our socket), ids, capabilities.
    if (!become_user(initpb::USER_USER)) ::_exit(121);
    ::setsid();
    int keep = theirs.get();
    if (keep != 3) {
      if (::dup2(keep, 3) < 0) ::_exit(120);
      keep = 3;
    }
    (void)theirs.release();
    (void)ours.release();
    ::brig::sys::close_range(4, ~0u, 0);
    Fd control(keep);
    int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      for (int fd = 0; fd < 3; ++fd) ::dup2(null, fd);
      ::close(null);
    }
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    ::prctl(PR_SET_NAME, "brig-kernels", 0, 0, 0);
    if (::chdir(kHome) != 0) (void)!::chdir("/");
    ::umask(077);
    {
      Host host(std::move(control), env, max_contexts);
      host.run(prestart);
    }
  }
  theirs.reset();
  ::fcntl(ours.get(), F_SETFL, ::fcntl(ours.get(), F_GETFL) | O_NONBLOCK);
  return KernelHost{pid, std::move(ours)};
}

}  // namespace brig::init
