// A Jupyter kernel from the template's kernelspec, spoken to over ZeroMQ (protocol v5.3): five
// loopback ports, a random HMAC key, a connection file in the host's private directory.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "base/fd.h"
#include "base/util.h"
#include "init/jupyter.h"
#include "init/kernel.h"

namespace brig::init {
namespace {

using namespace std::chrono_literals;

constexpr size_t kMaxKernelMessage = 256 << 20;  // one message from a kernel (zmq enforces it)
constexpr auto kDenoSettle = 25ms;

struct KernelSpec {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  bool message_interrupt = false;
};

Result<KernelSpec> load_spec(const std::string& name) {
  KernelSpec spec;
  for (const char* root : kKernelspecRoots) {
    // The user owns /usr/local (pip, npm -g): its kernelspecs are the user's to plant.
    auto text = read_untrusted_file(root + name + "/kernel.json", 1 << 16);
    if (!text) continue;
    json j = json::parse(*text, nullptr, false);
    if (!j.is_object() || !j.contains("argv") || !j["argv"].is_array() || j["argv"].empty())
      return Error::make(errc::invalid_argument, std::string(root) + name + "/kernel.json is malformed");
    for (auto& a : j["argv"])
      if (a.is_string()) spec.argv.push_back(a);
    if (spec.argv.empty())
      return Error::make(errc::invalid_argument, std::string(root) + name + "/kernel.json is malformed");
    if (j.contains("env") && j["env"].is_object())
      for (auto& [k, v] : j["env"].items())
        if (v.is_string()) spec.env[k] = v.get<std::string>();
    spec.message_interrupt = j.value("interrupt_mode", "signal") == "message";
    return spec;
  }
  return Error::make(errc::not_found, "this sandbox's template has no '" + name + "' Jupyter kernel");
}

class JupyterKernel final : public Kernel {
 public:
  JupyterKernel(zmq::context_t& zmq, std::string name) : zmq_(zmq), name_(std::move(name)) {}
  ~JupyterKernel() override { stop(); }

  Result<> start(const KernelLaunch& launch) override {
    stop();
    BRIG_TRY_ASSIGN(spec, load_spec(name_));
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
    key_ = random_hex(32);
    session_ = random_hex(16);
    message_interrupt_ = spec.message_interrupt;
    const std::string conn_file = launch.dir + "/kernel-" + launch.context_id + ".json";
    log_path_ = launch.dir + "/kernel-" + launch.context_id + ".log";
    json cf = {{"shell_port", ports[0]}, {"iopub_port", ports[1]}, {"stdin_port", ports[2]},
               {"control_port", ports[3]}, {"hb_port", ports[4]}, {"ip", "127.0.0.1"}, {"key", key_},
               {"transport", "tcp"}, {"signature_scheme", "hmac-sha256"}, {"kernel_name", name_}};
    BRIG_TRY(write_private_file(conn_file, cf.dump()));

    auto env = launch.env;
    for (auto& [k, v] : spec.env) env[k] = v;
    for (auto& [k, v] : kernel_env_overrides(name_)) env[k] = v;
    for (auto& a : spec.argv)
      if (auto p = a.find("{connection_file}"); p != std::string::npos) a.replace(p, 17, conn_file);
    if (spec.argv[0].find('/') == std::string::npos)
      if (auto found = find_executable(spec.argv[0], env["PATH"]); !found.empty()) spec.argv[0] = found;
    (void)::unlink(log_path_.c_str());
    Fd log(::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    Fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!log || !null) return Error::from_errno(errno, "open the kernel's log");
    BRIG_TRY_ASSIGN(pid, spawn_kernel(spec.argv, env, launch.cwd, {{0, null.get()}, {1, log.get()}, {2, log.get()}}));
    pid_ = pid;
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
      shell_ = make(zmq::socket_type::dealer, ports[0]);
      iopub_ = make(zmq::socket_type::sub, ports[1]);
      control_ = make(zmq::socket_type::dealer, ports[3]);
    } catch (const zmq::error_t& e) {
      stop();
      return Error::make(errc::protocol, std::string("connect to the kernel: ") + e.what());
    }
    send_info();
    return ok();
  }

  pid_t pid() const override { return pid_; }
  bool ready() const override { return ready_; }

  void poll_items(std::vector<zmq_pollitem_t>& items) override {
    polled_ = shell_ && iopub_ && control_;  // all three, or none (not started)
    if (!polled_) return;
    for (auto* s : {shell_.get(), iopub_.get(), control_.get()}) items.push_back({s->handle(), 0, ZMQ_POLLIN, 0});
  }

  void on_poll(const zmq_pollitem_t* items, StepSink* sink) override {
    if (!polled_) return;
    zmq::socket_t* socks[] = {shell_.get(), iopub_.get(), control_.get()};
    for (int i = 0; i < 3; ++i)
      if (items[i].revents && socks[i]) drain(*socks[i], sink);
  }

  bool tick(KernelClock::time_point now, StepSink* sink) override {
    if (!running()) return false;
    if (!ready_) {
      if (got_info_ && got_iopub_) {
        ready_ = true;
      } else if (now - last_info_ > 100ms && !got_iopub_) {
        // Until the subscription is up, iopub messages are lost: ask again until one arrives.
        send_info();
      }
      return false;
    }
    if (msg_id_.empty() || !got_reply_ || !got_idle_) return false;
    if (name_ == "deno" && main_) {
      // Deno's kernel may publish a cell's result after its idle status: give late output a
      // moment (any message for the cell restarts the wait) before the cell is over.
      if (!settle_until_) settle_until_ = now + kDenoSettle;
      if (now < *settle_until_) return true;
    }
    msg_id_.clear();
    if (sink) sink->done();
    return false;
  }

  void begin(const std::string& code, bool main, StepSink&) override {
    // stop_on_error would make ipykernel abort whatever arrives just after a failing cell (the
    // next cell, or the step restoring its env_vars); cells run one at a time anyway.
    json content = {{"code", code}, {"silent", !main}, {"store_history", main},
                    {"user_expressions", json::object()}, {"allow_stdin", false}, {"stop_on_error", false}};
    auto m = jupyter::make_request(session_, "execute_request", std::move(content));
    msg_id_ = m.msg_id();
    main_ = main;
    got_reply_ = got_idle_ = saw_error_ = false;
    settle_until_.reset();
    send(*shell_, m);
  }

  void interrupt() override {
    if (message_interrupt_ && control_)
      send(*control_, jupyter::make_request(session_, "interrupt_request", json::object()));
    else if (pid_ > 0)
      ::kill(pid_, SIGINT);
  }

  bool exited(int, StepSink*) override {
    pid_ = -1;  // reaped already
    close();
    return false;
  }

  void stop() override {
    kill_kernel(pid_);
    close();
  }

  std::string start_log() const override {
    if (log_path_.empty()) return "";
    // Non-blocking, no links, a regular file, its end only: the user can put anything there.
    Fd fd(::open(log_path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    struct stat st;
    if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) return "";
    constexpr off_t kTail = 2000;
    const off_t from = st.st_size > kTail ? st.st_size - kTail : 0;
    std::string t(static_cast<size_t>(st.st_size - from), '\0');
    ssize_t n = ::pread(fd.get(), t.data(), t.size(), from);
    if (n <= 0) return "";
    t.resize(static_cast<size_t>(n));
    return from > 0 ? "..." + t : t;
  }

 private:
  void close() {
    shell_.reset();
    iopub_.reset();
    control_.reset();
    ready_ = got_info_ = got_iopub_ = false;
    msg_id_.clear();
  }

  void send_info() {
    send(*shell_, jupyter::make_request(session_, "kernel_info_request", json::object()));
    last_info_ = KernelClock::now();
  }

  void send(zmq::socket_t& s, const jupyter::Message& m) {
    auto frames = jupyter::serialize(m, key_);
    try {
      for (size_t i = 0; i < frames.size(); ++i)
        s.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore | zmq::send_flags::dontwait
                                                              : zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  }

  void drain(zmq::socket_t& s, StepSink* sink) {
    for (int budget = 0; budget < 256 && running(); ++budget) {
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
      auto m = jupyter::parse(frames, key_);
      if (!m) continue;  // not from our kernel, or malformed: dropped
      try {
        if (&s == iopub_.get()) on_iopub(*m, sink);
        else if (&s == shell_.get()) on_shell(*m, sink);
      } catch (const nlohmann::json::exception&) {
        // A signed but ill-typed message (user code can sign with the kernel's key): dropped.
      }
    }
  }

  bool for_step(const jupyter::Message& m) const { return !msg_id_.empty() && m.parent_id() == msg_id_; }

  void on_shell(const jupyter::Message& m, StepSink* sink) {
    if (m.msg_type() == "kernel_info_reply") {
      got_info_ = true;
      return;
    }
    if (!for_step(m) || m.msg_type() != "execute_reply") return;
    got_reply_ = true;
    if (!sink) return;
    const std::string status = m.content.value("status", "");
    if (status == "error" && !saw_error_) sink->line(jupyter::error_line(m.content));
    if (status == "aborted")
      sink->line({{"type", "error"}, {"name", "ExecutionAborted"},
                  {"value", "the kernel aborted the cell without running it"}, {"traceback", ""}});
  }

  void on_iopub(const jupyter::Message& m, StepSink* sink) {
    got_iopub_ = true;
    if (!for_step(m)) return;
    if (settle_until_) settle_until_ = KernelClock::now() + kDenoSettle;
    const std::string type = m.msg_type();
    if (type == "status") {
      if (m.content.value("execution_state", "") == "idle") got_idle_ = true;
      return;
    }
    if (!sink) return;
    if (type == "stream") {
      sink->stream(m.content.value("name", "stdout") == "stderr", m.content.value("text", ""));
    } else if (type == "execute_input") {
      if (m.content.contains("execution_count") && m.content["execution_count"].is_number_integer())
        sink->line({{"type", "number_of_executions"}, {"execution_count", m.content["execution_count"]}});
    } else if (type == "execute_result" || type == "display_data") {
      sink->line(jupyter::result_line(m.content.value("data", json::object()), type == "execute_result"));
    } else if (type == "error") {
      saw_error_ = true;
      sink->line(jupyter::error_line(m.content));
    }
  }

  zmq::context_t& zmq_;
  const std::string name_;
  pid_t pid_ = -1;
  std::string key_, session_, log_path_;
  std::unique_ptr<zmq::socket_t> shell_, iopub_, control_;
  bool message_interrupt_ = false, polled_ = false;
  bool ready_ = false, got_info_ = false, got_iopub_ = false;
  KernelClock::time_point last_info_;
  // The step in flight.
  std::string msg_id_;
  bool main_ = false, got_reply_ = false, got_idle_ = false, saw_error_ = false;
  std::optional<KernelClock::time_point> settle_until_;
};

}  // namespace

std::unique_ptr<Kernel> make_jupyter_kernel(zmq::context_t& zmq, const std::string& name) {
  return std::make_unique<JupyterKernel>(zmq, name);
}

}  // namespace brig::init
