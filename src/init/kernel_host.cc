#include "init/kernel_host.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
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
#include <zmq_addon.hpp>

#include "base/util.h"
#include "init/jupyter.h"
#include "init/spawn.h"
#include "isolate/caps.h"
#include "sys/seqpacket.h"
#include "sys/syscalls.h"

extern const char* const brig_bash_kernel_py;  // src/init/bash_kernel.py, embedded by cmake

namespace brig::init {
namespace {

using jupyter::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr size_t kMaxRequestBytes = 8 << 20;     // one request line (code is capped by the daemon)
constexpr size_t kMaxPendingOut = 256 << 20;     // unread output before a connection is dropped
constexpr size_t kMaxKernelMessage = 256 << 20;  // one message from a kernel (zmq enforces it)
constexpr size_t kMaxContexts = 32;
constexpr size_t kMaxQueued = 64;                // executions waiting per context
constexpr size_t kStreamChunk = 1 << 20;         // stdout/stderr text per NDJSON line
constexpr auto kStartTimeout = 60s;
constexpr auto kInterruptGrace = 3s;
constexpr auto kDenoSettle = 25ms;
constexpr auto kHousekeepingTimeout = 10s;  // a silent env step
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr const char* kHome = "/home/user";


// Variables a kernel needs whatever the sandbox's environment says.
std::map<std::string, std::string> kernel_env_overrides(const std::string& kernel_name) {
  // Figures left open at the end of a cell come back as PNG results (a template's Agg is right
  // for scripts, not for a kernel).
  if (kernel_name == "python3")
    return {{"MPLBACKEND", "module://matplotlib_inline.backend_inline"}, {"PYDEVD_DISABLE_FILE_VALIDATION", "1"}};
  // Results are data, not terminal output: no ANSI colour codes in them.
  if (kernel_name == "deno") return {{"NO_COLOR", "1"}};
  return {};
}

// Creates or replaces a file only this user can read, in the host's own 0700 directory.
Result<> write_private_file(const std::string& path, std::string_view content) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return Error::from_errno(errno, "create " + path);
  return write_fd_all(fd.get(), content, path);
}

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

struct KernelSpec {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  bool message_interrupt = false;
};

struct Kernel {
  pid_t pid = -1;
  std::string key, session;
  std::unique_ptr<zmq::socket_t> shell, iopub, control;
  bool message_interrupt = false;
  bool ready = false, got_info = false, got_iopub = false;
  Clock::time_point started, last_info;
  std::string log_path;
  uint64_t generation = 0;  // which start of the context's kernel this is
  bool running() const { return pid > 0; }
};

struct Step {
  std::string code;
  bool main = false;  // the user's code (its output goes to the connection)
};

struct Exec {
  std::shared_ptr<Conn> conn;  // null for the host's own work (environment updates)
  std::deque<Step> steps;
  std::string msg_id;          // of the step in flight; empty = none sent yet
  bool got_reply = false, got_idle = false, saw_error = false;
  bool began = false;          // a step was sent
  int64_t timeout_ms = 0;
  std::optional<Clock::time_point> deadline, interrupted_at, settle_until;
  bool timed_out = false;
};

struct Context {
  std::string id, language, kernel_name, cwd;
  Kernel kernel;
  std::deque<std::unique_ptr<Exec>> queue;  // the front one runs
  json describe() const { return {{"id", id}, {"language", language}, {"cwd", cwd}}; }
};

class Host {
 public:
  Host(Fd control, std::map<std::string, std::string> env) : control_(std::move(control)), env_(std::move(env)) {
    char tmpl[] = "/tmp/.brig-kernels-XXXXXX";
    if (::mkdtemp(tmpl)) dir_ = tmpl;
    if (!dir_.empty()) (void)write_private_file(dir_ + "/bash_kernel.py", brig_bash_kernel_py);
  }

  [[noreturn]] void run(const std::vector<std::string>& prestart) {
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
        zmq::socket_t* socket;
        uint64_t generation;  // a kernel restarted meanwhile has new sockets: skip the old ones
      };
      std::vector<Polled> socks;
      for (auto& [id, c] : contexts_) {
        if (!c->kernel.running()) continue;
        for (auto* s : {c->kernel.shell.get(), c->kernel.iopub.get(), c->kernel.control.get()}) {
          items.push_back({s->handle(), 0, ZMQ_POLLIN, 0});
          socks.push_back({c.get(), s, c->kernel.generation});
        }
      }
      const size_t polled_conns = conns_.size();
      try {
        zmq::poll(items.data(), items.size(), std::chrono::milliseconds(settling_ ? 5 : 100));
      } catch (const zmq::error_t&) {
      }
      // Anything a kernel or a connection sends is untrusted: a malformed message is dropped,
      // never allowed to end the host (and every context with it).
      try {
        for (size_t i = 0; i < polled_conns; ++i) on_conn(*conns_[i], items[1 + i].revents);
        for (size_t i = 0; i < socks.size(); ++i) {
          auto& p = socks[i];
          if (items[1 + polled_conns + i].revents && p.context->kernel.running() &&
              p.context->kernel.generation == p.generation)
            drain(*p.context, *p.socket);
        }
        if (items[0].revents) on_control();  // last: it may add connections
        reap();
        settling_ = false;
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
          auto code = jupyter::env_code(c->language, set);
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
      stop_kernel(c.kernel);
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
      auto code = jupyter::env_code(c->language, env);
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

  Result<Context*> default_context(const std::string& language) {
    auto kernel = jupyter::kernel_for(language);
    if (!kernel) return Error::make(errc::invalid_argument, "unsupported language '" + language + "'");
    if (auto it = defaults_.find(*kernel); it != defaults_.end()) return contexts_.at(it->second).get();
    BRIG_TRY_ASSIGN(c, create_context(language, ""));
    defaults_[*kernel] = c->id;
    return c;
  }

  Result<Context*> create_context(const std::string& language, const std::string& cwd) {
    auto kernel = jupyter::kernel_for(language);
    if (!kernel) return Error::make(errc::invalid_argument, "unsupported language '" + language +
                                                                "' (python, javascript, typescript, bash, r)");
    if (contexts_.size() >= kMaxContexts) return Error::make(errc::limit_exceeded, "too many contexts (32)");
    auto c = std::make_unique<Context>();
    c->id = jupyter::random_hex(16);
    c->id = c->id.substr(0, 8) + "-" + c->id.substr(8, 4) + "-" + c->id.substr(12, 4) + "-" + c->id.substr(16, 4) +
            "-" + c->id.substr(20);
    c->language = language;
    c->kernel_name = *kernel;
    c->cwd = cwd.empty() ? kHome : expand_path(cwd, kHome);
    struct stat st;
    if (::stat(c->cwd.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return Error::make(errc::invalid_argument, "cwd '" + c->cwd + "' is not a directory in the sandbox");
    BRIG_TRY(start_kernel(*c));
    Context* raw = c.get();
    contexts_[c->id] = std::move(c);
    return raw;
  }

  Result<KernelSpec> load_spec(const std::string& name) {
    KernelSpec spec;
    if (name == "bash") {
      if (dir_.empty()) return Error::from_errno(ENOENT, "no directory for the bash kernel");
      spec.argv = {"/usr/bin/python3", dir_ + "/bash_kernel.py", "-f", "{connection_file}"};
      return spec;
    }
    for (const char* root : {"/usr/local/share/jupyter/kernels/", "/usr/share/jupyter/kernels/"}) {
      auto text = read_small_file(root + name + "/kernel.json", 1 << 16);
      if (!text) continue;
      json j = json::parse(*text, nullptr, false);
      if (!j.is_object() || !j.contains("argv") || !j["argv"].is_array() || j["argv"].empty())
        return Error::make(errc::invalid_argument, std::string(root) + name + "/kernel.json is malformed");
      for (auto& a : j["argv"])
        if (a.is_string()) spec.argv.push_back(a);
      if (j.contains("env") && j["env"].is_object())
        for (auto& [k, v] : j["env"].items())
          if (v.is_string()) spec.env[k] = v.get<std::string>();
      spec.message_interrupt = j.value("interrupt_mode", "signal") == "message";
      return spec;
    }
    return Error::make(errc::not_found, "this sandbox's template has no '" + name + "' Jupyter kernel");
  }

  Result<> start_kernel(Context& c) {
    Kernel& k = c.kernel;
    BRIG_TRY_ASSIGN(spec, load_spec(c.kernel_name));
    // Five free loopback ports, held until all are picked so none repeats.
    std::vector<Fd> held;
    std::vector<int> ports;
    for (int i = 0; i < 5; ++i) {
      Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      struct sockaddr_in a = {};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      socklen_t len = sizeof a;
      if (!s || ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
          ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
        return Error::from_errno(errno, "pick a port for the kernel");
      ports.push_back(ntohs(a.sin_port));
      held.push_back(std::move(s));
    }
    held.clear();
    k = Kernel{};
    k.generation = ++generations_;
    k.key = jupyter::random_hex(32);
    k.session = jupyter::random_hex(16);
    k.message_interrupt = spec.message_interrupt;
    const std::string conn_file = dir_ + "/kernel-" + c.id + ".json";
    k.log_path = dir_ + "/kernel-" + c.id + ".log";
    json cf = {{"shell_port", ports[0]}, {"iopub_port", ports[1]}, {"stdin_port", ports[2]},
               {"control_port", ports[3]}, {"hb_port", ports[4]}, {"ip", "127.0.0.1"}, {"key", k.key},
               {"transport", "tcp"}, {"signature_scheme", "hmac-sha256"}, {"kernel_name", c.kernel_name}};
    BRIG_TRY(write_private_file(conn_file, cf.dump()));

    // Everything the child needs is built before fork (the host has zmq's threads).
    std::map<std::string, std::string> env = {{"PATH", kDefaultPath}, {"HOME", kHome}, {"USER", "user"},
                                              {"LOGNAME", "user"}};
    for (auto& [key, v] : env_) env[key] = v;
    for (auto& [key, v] : spec.env) env[key] = v;
    for (auto& [key, v] : kernel_env_overrides(c.kernel_name)) env[key] = v;
    std::vector<std::string> env_store, argv_store;
    for (auto& [key, v] : env) env_store.push_back(key + "=" + v);
    for (auto a : spec.argv) {
      if (auto p = a.find("{connection_file}"); p != std::string::npos) a.replace(p, 17, conn_file);
      argv_store.push_back(a);
    }
    if (argv_store[0].find('/') == std::string::npos) {
      for (auto& d : split(env["PATH"], ':'))
        if (::access((d + "/" + argv_store[0]).c_str(), X_OK) == 0) {
          argv_store[0] = d + "/" + argv_store[0];
          break;
        }
    }
    std::vector<char*> argv, envp;
    for (auto& a : argv_store) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env_store) envp.push_back(e.data());
    envp.push_back(nullptr);
    Fd log(::open(k.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    Fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!log || !null) return Error::from_errno(errno, "open the kernel's log");
    const std::string cwd = c.cwd;

    pid_t pid = ::fork();
    if (pid < 0) return Error::from_errno(errno, "fork a kernel");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::setsid();
      ::dup2(null.get(), 0);
      ::dup2(log.get(), 1);
      ::dup2(log.get(), 2);
      if (::chdir(cwd.c_str()) != 0) (void)!::chdir(kHome);
      ::brig::sys::mark_cloexec_from(3);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    k.pid = pid;
    k.started = Clock::now();
    auto endpoint = [&](int port) { return "tcp://127.0.0.1:" + std::to_string(port); };
    auto make = [&](zmq::socket_type type, int port) {
      auto s = std::make_unique<zmq::socket_t>(zmq_, type);
      s->set(zmq::sockopt::linger, 0);
      s->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(kMaxKernelMessage));
      if (type == zmq::socket_type::sub) s->set(zmq::sockopt::subscribe, "");
      s->connect(endpoint(port));
      return s;
    };
    try {
      k.shell = make(zmq::socket_type::dealer, ports[0]);
      k.iopub = make(zmq::socket_type::sub, ports[1]);
      k.control = make(zmq::socket_type::dealer, ports[3]);
    } catch (const zmq::error_t& e) {
      stop_kernel(k);
      return Error::make(errc::protocol, std::string("connect to the kernel: ") + e.what());
    }
    send_info(k);
    return ok();
  }

  void send_info(Kernel& k) {
    send(k, *k.shell, jupyter::make_request(k.session, "kernel_info_request", json::object()));
    k.last_info = Clock::now();
  }

  void stop_kernel(Kernel& k) {
    if (k.pid > 0) {
      ::kill(-k.pid, SIGKILL);
      ::kill(k.pid, SIGKILL);
      int status;
      ::waitpid(k.pid, &status, 0);
    }
    k.shell.reset();
    k.iopub.reset();
    k.control.reset();
    k.pid = -1;
    k.ready = false;
  }

  std::string log_tail(const Kernel& k) {
    auto text = read_small_file(k.log_path, 1 << 20);
    if (!text || text->empty()) return "";
    std::string t = *text;
    if (t.size() > 2000) t = "..." + t.substr(t.size() - 2000);
    return t;
  }

  static void send(Kernel& k, zmq::socket_t& s, const jupyter::Message& m) {
    auto frames = jupyter::serialize(m, k.key);
    try {
      for (size_t i = 0; i < frames.size(); ++i)
        s.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore | zmq::send_flags::dontwait
                                                              : zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  }

  void drain(Context& c, zmq::socket_t& s) {
    for (int budget = 0; budget < 256 && c.kernel.running(); ++budget) {
      std::vector<zmq::message_t> parts;
      std::optional<size_t> got;
      try {
        got = zmq::recv_multipart(s, std::back_inserter(parts), zmq::recv_flags::dontwait);
      } catch (const zmq::error_t&) {
        return;
      }
      if (!got) return;
      std::vector<std::string> frames;
      for (auto& p : parts) frames.push_back(p.to_string());
      auto m = jupyter::parse(frames, c.kernel.key);
      if (!m) continue;  // not from our kernel, or malformed: dropped
      try {
        if (&s == c.kernel.iopub.get()) on_iopub(c, *m);
        else if (&s == c.kernel.shell.get()) on_shell(c, *m);
      } catch (const nlohmann::json::exception&) {
        // A signed but ill-typed message (user code can sign with the kernel's key): dropped.
      }
    }
  }

  Exec* current(Context& c) {
    if (c.queue.empty() || c.queue.front()->msg_id.empty()) return nullptr;
    return c.queue.front().get();
  }

  void on_shell(Context& c, const jupyter::Message& m) {
    if (m.msg_type() == "kernel_info_reply") {
      c.kernel.got_info = true;
      return;
    }
    Exec* e = current(c);
    if (!e || m.parent_id() != e->msg_id || m.msg_type() != "execute_reply") return;
    e->got_reply = true;
    bool main = e->steps.front().main;
    const std::string status = m.content.value("status", "");
    if (main && status == "error" && !e->saw_error && e->conn && !e->timed_out)
      e->conn->line(jupyter::error_line(m.content));
    if (main && status == "aborted" && e->conn && !e->timed_out)
      e->conn->line({{"type", "error"}, {"name", "ExecutionAborted"},
                     {"value", "the kernel aborted the cell without running it"}, {"traceback", ""}});
  }

  void on_iopub(Context& c, const jupyter::Message& m) {
    c.kernel.got_iopub = true;
    Exec* e = current(c);
    if (!e || m.parent_id() != e->msg_id) return;
    if (e->settle_until) e->settle_until = Clock::now() + kDenoSettle;
    const std::string type = m.msg_type();
    if (type == "status") {
      if (m.content.value("execution_state", "") == "idle") e->got_idle = true;
      return;
    }
    if (!e->steps.front().main || !e->conn) return;
    Conn& out = *e->conn;
    if (type == "stream") {
      std::string name = m.content.value("name", "stdout") == "stderr" ? "stderr" : "stdout";
      std::string text = m.content.value("text", "");
      for (size_t off = 0; off < text.size(); off += kStreamChunk) {
        size_t n = std::min(kStreamChunk, text.size() - off);
        // Never split a UTF-8 sequence across lines.
        while (off + n < text.size() && n > 0 && (static_cast<unsigned char>(text[off + n]) & 0xC0) == 0x80) --n;
        out.line({{"type", name}, {"text", text.substr(off, n)}, {"timestamp", jupyter::iso_now()}});
      }
    } else if (type == "execute_input") {
      if (m.content.contains("execution_count") && m.content["execution_count"].is_number_integer())
        out.line({{"type", "number_of_executions"}, {"execution_count", m.content["execution_count"]}});
    } else if (type == "execute_result" || type == "display_data") {
      out.line(jupyter::result_line(m.content.value("data", json::object()), type == "execute_result"));
    } else if (type == "error") {
      e->saw_error = true;
      if (!e->timed_out) out.line(jupyter::error_line(m.content));
    }
  }

  void interrupt(Context& c, Exec& e) {
    e.interrupted_at = Clock::now();
    if (c.kernel.message_interrupt)
      send(c.kernel, *c.kernel.control, jupyter::make_request(c.kernel.session, "interrupt_request", json::object()));
    else
      ::kill(c.kernel.pid, SIGINT);
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

  void fail_all(Context& c, const std::string& name, const std::string& why) {
    for (auto& e : c.queue)
      if (e->conn) {
        e->conn->line({{"type", "error"}, {"name", name}, {"value", why}, {"traceback", ""}});
        e->conn->line({{"type", "end_of_execution"}});
        e->conn->finish = true;
      }
    c.queue.clear();
  }

  // The kernel is gone or stuck: start a new one; what ran in the old one is lost.
  void replace_kernel(Context& c, const std::string& name, const std::string& why) {
    if (!c.queue.empty() && !c.queue.front()->msg_id.empty()) {
      auto e = std::move(c.queue.front());
      c.queue.pop_front();
      if (e->conn) {
        e->conn->line({{"type", "error"}, {"name", name}, {"value", why}, {"traceback", ""}});
        e->conn->line({{"type", "end_of_execution"}});
        e->conn->finish = true;
      }
    }
    stop_kernel(c.kernel);
    // Host-internal steps (env updates) are replayed through the new kernel's environment.
    std::erase_if(c.queue, [](const std::unique_ptr<Exec>& e) { return !e->conn; });
    if (auto s = start_kernel(c); !s) fail_all(c, "KernelError", "the kernel could not be restarted: " + s.error().message());
  }

  void tick(Context& c) {
    Kernel& k = c.kernel;
    if (c.id.empty()) return;
    if (!k.running()) {
      // A kernel that failed to start is tried again when there is work for it.
      if (!c.queue.empty())
        if (auto s = start_kernel(c); !s) fail_all(c, "KernelError", s.error().message());
      return;
    }
    auto now = Clock::now();
    if (!k.ready) {
      if (k.got_info && k.got_iopub) {
        k.ready = true;
      } else if (now - k.started > kStartTimeout) {
        std::string tail = log_tail(k);
        stop_kernel(k);
        fail_all(c, "KernelError", "the " + c.kernel_name + " kernel did not start within 60 s" +
                                       (tail.empty() ? "" : ": " + tail));
        return;
      } else {
        // Until the subscription is up, iopub messages are lost: ask again until one arrives.
        if (now - k.last_info > 100ms && !k.got_iopub) send_info(k);
        return;
      }
    }
    while (!c.queue.empty()) {
      Exec& e = *c.queue.front();
      if (e.msg_id.empty()) {
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
        json content = {{"code", s.code}, {"silent", !s.main}, {"store_history", s.main},
                        {"user_expressions", json::object()}, {"allow_stdin", false}, {"stop_on_error", false}};
        // stop_on_error would make ipykernel abort whatever arrives just after a failing cell
        // (the next cell, or the step restoring its env_vars); cells run one at a time anyway.
        auto m = jupyter::make_request(k.session, "execute_request", std::move(content));
        e.msg_id = m.msg_id();
        e.got_reply = e.got_idle = e.saw_error = false;
        e.settle_until.reset();
        e.began = true;
        if (s.main && e.timeout_ms > 0) e.deadline = now + std::chrono::milliseconds(e.timeout_ms);
        if (!s.main) e.deadline = now + kHousekeepingTimeout;  // env set/restore must not hang the queue
        send(k, *k.shell, m);
        return;
      }
      if (e.got_reply && e.got_idle && c.kernel_name == "deno" && e.steps.front().main) {
        // Deno's kernel may publish a cell's result after its idle status: give late output a
        // moment (any message for the cell restarts the wait) before the cell is over.
        if (!e.settle_until) e.settle_until = now + kDenoSettle;
        if (now < *e.settle_until) {
          settling_ = true;
          return;
        }
      }
      if (e.got_reply && e.got_idle) {
        e.steps.pop_front();
        e.msg_id.clear();
        e.deadline.reset();
        e.interrupted_at.reset();
        if (e.steps.empty()) finish_front(c);
        continue;
      }
      if (!e.interrupted_at) {
        if (e.steps.front().main && e.conn && e.conn->gone) {
          interrupt(c, e);
        } else if (e.deadline && now > *e.deadline) {
          e.timed_out = e.steps.front().main;
          interrupt(c, e);
        }
      } else if (e.interrupted_at && now - *e.interrupted_at > kInterruptGrace) {
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
        if (c->kernel.pid != pid) continue;
        c->kernel.pid = -1;  // reaped: stop_kernel must not wait for it again
        std::string how = WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status))
                                              : "exited with code " + std::to_string(WEXITSTATUS(status));
        if (!c->kernel.ready) {
          std::string tail = log_tail(c->kernel);
          stop_kernel(c->kernel);
          fail_all(*c, "KernelError", "the " + c->kernel_name + " kernel " + how + " while starting" +
                                          (tail.empty() ? "" : ": " + tail));
        } else {
          replace_kernel(*c, "KernelDied", "the kernel " + how + " (out of memory?) and was restarted: its state was lost");
        }
      }
    }
  }

  void shutdown_all() {
    for (auto& [id, c] : contexts_) stop_kernel(c->kernel);
  }

  zmq::context_t zmq_{1};
  Fd control_;
  std::map<std::string, std::string> env_;
  std::string dir_;
  std::vector<std::shared_ptr<Conn>> conns_;
  std::map<std::string, std::unique_ptr<Context>> contexts_;
  std::map<std::string, std::string> defaults_;  // kernel name -> context id
  bool settling_ = false;                        // a cell waits for late output: poll briefly
  uint64_t generations_ = 0;
};

}  // namespace

std::string kernel_host_conn_message() { return R"({"op":"conn"})"; }

std::string kernel_host_env_message(const std::map<std::string, std::string>& env) {
  return json({{"op", "env"}, {"env", env}}).dump();
}

Result<KernelHost> start_kernel_host(const std::map<std::string, std::string>& env,
                                     const std::vector<std::string>& prestart) {
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
      Host host(std::move(control), env);
      host.run(prestart);
    }
  }
  theirs.reset();
  ::fcntl(ours.get(), F_SETFL, ::fcntl(ours.get(), F_GETFL) | O_NONBLOCK);
  return KernelHost{pid, std::move(ours)};
}

}  // namespace brig::init
