#include "init/line_kernel.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>

#include "base/fd.h"
#include "base/util.h"
#include "init/jupyter.h"
#include "init/kernel.h"

extern const char* const brig_node_kernel_cjs;  // src/init/node_kernel.cjs, embedded by cmake

namespace brig::init {

// ---- pure parts -----------------------------------------------------------------------------

Result<KernelChoice> choose_kernel(const std::string& language, const Installed& in) {
  auto missing = [&](const char* what) -> Result<KernelChoice> {
    return Error::make(errc::not_found, "this sandbox has no " + language + " kernel: " + what +
                                            " is not installed in its template; use the code-interpreter-v1 "
                                            "template (python, javascript, typescript, r and bash)");
  };
  if (language == "python") return in.python3 ? Result<KernelChoice>(KernelChoice{KernelFamily::jupyter, "python3"})
                                              : missing("Python with ipykernel");
  if (language == "javascript") {
    if (in.deno) return KernelChoice{KernelFamily::jupyter, "deno"};
    if (!in.node.empty()) return KernelChoice{KernelFamily::node, "node"};
    return missing("Node.js or Deno");
  }
  if (language == "typescript")
    return in.deno ? Result<KernelChoice>(KernelChoice{KernelFamily::jupyter, "deno"}) : missing("Deno");
  if (language == "r")
    return in.ir ? Result<KernelChoice>(KernelChoice{KernelFamily::jupyter, "ir"}) : missing("R with IRkernel");
  if (language == "bash")
    return !in.bash.empty() ? Result<KernelChoice>(KernelChoice{KernelFamily::bash, "bash"}) : missing("bash");
  return Error::make(errc::invalid_argument,
                     "unsupported language '" + language + "' (python, javascript, typescript, bash, r)");
}

namespace {

// The length of `s` without an incomplete UTF-8 sequence at its end.
size_t whole_chars(std::string_view s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return back < len ? n - back : n;
  }
  return n;
}

std::string shell_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

std::string OutputBuffer::add(std::string_view data) {
  held_.append(data);
  std::string out;
  if (auto nl = held_.rfind('\n'); nl != std::string::npos) {
    out = held_.substr(0, nl + 1);
    held_.erase(0, nl + 1);
  }
  if (held_.size() >= limit_) out += take(true);
  return out;
}

std::string OutputBuffer::take(bool whole) {
  size_t n = whole ? whole_chars(held_) : held_.size();
  std::string out = held_.substr(0, n);
  held_.erase(0, n);
  return out;
}

namespace bash {

// Words are written so that aliases the user defines cannot change them (a quoted first
// character is never alias-expanded).
std::string init_line(std::string_view token) {
  return "PS1= PS2= PS0=; \\unset HISTFILE PROMPT_COMMAND; \\set +o history +H; \\builtin printf '%s 0 0\\n' " +
         std::string(token) + " >&3\n";
}

std::string step_line(std::string_view path, std::string_view token, uint64_t seq) {
  return "{ \\. " + shell_quote(path) + "; } </dev/null 3>&-; \\builtin printf '%s %s %d\\n' " + std::string(token) +
         " " + std::to_string(seq) + " \"$?\" >&3\n";
}

std::string sync_line(std::string_view token, uint64_t seq) {
  return "\\builtin printf '%s %s 130\\n' " + std::string(token) + " " + std::to_string(seq) + " >&3\n";
}

std::optional<Marker> parse_marker(std::string_view line, std::string_view token) {
  if (token.empty() || line.size() <= token.size() + 1 || line.substr(0, token.size()) != token ||
      line[token.size()] != ' ')
    return std::nullopt;
  line.remove_prefix(token.size() + 1);
  auto sp = line.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  Marker m{};
  auto a = line.substr(0, sp), b = line.substr(sp + 1);
  auto r1 = std::from_chars(a.data(), a.data() + a.size(), m.seq);
  auto r2 = std::from_chars(b.data(), b.data() + b.size(), m.status);
  if (a.empty() || b.empty() || r1.ec != std::errc() || r1.ptr != a.data() + a.size() || r2.ec != std::errc() ||
      r2.ptr != b.data() + b.size())
    return std::nullopt;
  return m;
}

json step_error(int status, bool interrupted) {
  if (interrupted) return {{"ename", "KeyboardInterrupt"}, {"evalue", "interrupted"}, {"traceback", json::array()}};
  if (status == 0) return nullptr;
  return {{"ename", "ExitCode"},
          {"evalue", std::to_string(status)},
          {"traceback", {"the cell's last command exited with status " + std::to_string(status)}}};
}

}  // namespace bash

namespace node {

std::string step_message(const std::string& code, bool main) {
  return json({{"code", code}, {"silent", !main}}).dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

json output_line(const json& msg) {
  if (!msg.is_object() || !msg.contains("type") || !msg["type"].is_string()) return nullptr;
  const std::string type = msg["type"];
  if (type == "result" && msg.contains("data") && msg["data"].is_object()) return jupyter::result_line(msg["data"], true);
  if (type == "error") return jupyter::error_line(msg);
  return nullptr;
}

}  // namespace node

// ---- the kernels ----------------------------------------------------------------------------

namespace {

using namespace std::chrono_literals;

constexpr size_t kReadBudget = 256 << 10;   // per fd and poll round: one busy kernel cannot starve others
constexpr size_t kDrainBudget = 1 << 20;    // output read when a step ends (a pipe holds 64 KiB)
constexpr size_t kStartLog = 4000;          // what a kernel said before it was ready, kept for errors
constexpr auto kPartialLine = 100ms;        // a partial line is sent after waiting this long
constexpr auto kEscalate = 1s;              // node: SIGINT to its whole process group after this

Result<std::pair<Fd, Fd>> make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Error::from_errno(errno, "create a pipe for a kernel");
  return std::make_pair(Fd(p[0]), Fd(p[1]));
}

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Pipes and a channel, shared by bash and node.
class LineKernel : public Kernel {
 public:
  ~LineKernel() override { stop(); }

  pid_t pid() const override { return pid_; }
  bool ready() const override { return ready_; }

  void poll_items(std::vector<zmq_pollitem_t>& items) override {
    polled_.clear();
    auto add = [&](const Fd& fd, short events, Role role) {
      if (!fd) return;
      items.push_back({nullptr, fd.get(), events, 0});
      polled_.push_back(role);
    };
    add(out_, ZMQ_POLLIN, Role::out);
    add(err_, ZMQ_POLLIN, Role::err);
    add(from_, ZMQ_POLLIN, Role::from);
    if (!to_send_.empty()) add(to_, ZMQ_POLLOUT, Role::to);
  }

  void on_poll(const zmq_pollitem_t* items, StepSink* sink) override {
    short seen[4] = {};
    for (size_t i = 0; i < polled_.size(); ++i) seen[static_cast<int>(polled_[i])] = items[i].revents;
    if (seen[static_cast<int>(Role::to)]) write_pending();
    // Output first: what a step printed is in its pipes before its end is on the channel.
    if (seen[static_cast<int>(Role::out)]) read_output(out_, out_buf_, false, sink, kReadBudget);
    if (seen[static_cast<int>(Role::err)]) read_output(err_, err_buf_, true, sink, kReadBudget);
    if (seen[static_cast<int>(Role::from)]) read_channel(sink);
  }

  bool tick(KernelClock::time_point now, StepSink* sink) override {
    if (in_flight_ && sink && held_since_ && now - *held_since_ > kPartialLine) {
      if (!out_buf_.empty()) send_text(sink, false, out_buf_.take(true));
      if (!err_buf_.empty()) send_text(sink, true, err_buf_.take(true));
      held_since_.reset();
    }
    return false;
  }

  void begin(const std::string& code, bool main, StepSink& sink) override {
    in_flight_ = true;
    interrupted_ = false;
    out_buf_.clear();  // a partial line printed between steps belongs to none
    held_since_.reset();
    err_buf_.clear();
    if (main) sink.line({{"type", "number_of_executions"}, {"execution_count", ++executions_}});
    send_step(code, main, sink);
  }

  bool exited(int wait_status, StepSink* sink) override {
    pid_ = -1;  // reaped already
    ready_ = false;
    bool handled = false;
    if (in_flight_ && sink) {
      finish_output(sink);
      handled = step_died(wait_status, *sink);
    }
    close();
    return handled;
  }

  void stop() override {
    kill_kernel(pid_);
    close();
  }

  std::string start_log() const override { return start_log_; }

 protected:
  virtual void send_step(const std::string& code, bool main, StepSink& sink) = 0;
  virtual void on_message(std::string_view line, StepSink* sink) = 0;
  // The process died during a step whose output has been delivered: true if the kernel
  // reported it and ended the step.
  virtual bool step_died(int wait_status, StepSink& sink) = 0;

  // A fresh start: the fds of a new process.
  void reset(pid_t pid, Fd out, Fd err, Fd to, Fd from, size_t max_message) {
    pid_ = pid;
    out_ = std::move(out);
    err_ = std::move(err);
    to_ = std::move(to);
    from_ = std::move(from);
    for (auto* fd : {&out_, &err_, &to_, &from_}) set_nonblocking(fd->get());
    max_message_ = max_message;
    ready_ = in_flight_ = interrupted_ = false;
    executions_ = 0;
    start_log_.clear();
    from_buf_.clear();
    to_send_.clear();
    out_buf_.clear();
    held_since_.reset();
    err_buf_.clear();
  }

  void send(std::string bytes) {
    to_send_ += bytes;
    write_pending();
  }

  // Delivers what the step's pipes still hold, then ends the step.
  void step_over(StepSink* sink) {
    if (!in_flight_) return;
    finish_output(sink);
    in_flight_ = false;
    if (sink) sink->done();
  }

  // Reads what is in the pipes now (bounded) and hands over every partial line.
  void finish_output(StepSink* sink) {
    read_output(out_, out_buf_, false, sink, kDrainBudget);
    read_output(err_, err_buf_, true, sink, kDrainBudget);
    if (sink && in_flight_) {
      send_text(sink, false, out_buf_.take());
      send_text(sink, true, err_buf_.take());
    }
  }

  pid_t pid_ = -1;
  bool ready_ = false, in_flight_ = false, interrupted_ = false;

 private:
  void close() {
    out_.reset();
    err_.reset();
    to_.reset();
    from_.reset();
    to_send_.clear();
    from_buf_.clear();
    ready_ = in_flight_ = false;
  }

  static void send_text(StepSink* sink, bool is_stderr, const std::string& text) {
    if (!text.empty()) sink->stream(is_stderr, text);
  }

  void write_pending() {
    while (to_ && !to_send_.empty()) {
      ssize_t n = ::send(to_.get(), to_send_.data(), to_send_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno == ENOTSOCK) n = ::write(to_.get(), to_send_.data(), to_send_.size());
      if (n > 0) {
        to_send_.erase(0, static_cast<size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;  // the poll says when it can take more
      } else {
        to_send_.clear();  // the kernel is gone: the reaper says so
        return;
      }
    }
  }

  void read_output(Fd& fd, OutputBuffer& buf, bool is_stderr, StepSink* sink, size_t budget) {
    char chunk[65536];
    for (size_t got = 0; fd && got < budget;) {
      ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
      if (n == 0) {
        fd.reset();  // the kernel closed it (or exited): nothing more comes
        return;
      }
      if (n < 0) return;  // EAGAIN (or an error the reaper will explain)
      got += static_cast<size_t>(n);
      std::string_view data(chunk, static_cast<size_t>(n));
      if (!ready_) {
        if (start_log_.size() < kStartLog) start_log_.append(data.substr(0, kStartLog - start_log_.size()));
        continue;
      }
      if (!in_flight_ || !sink) continue;  // between steps: nobody's output
      send_text(sink, is_stderr, buf.add(data));
      // A partial line waits at most kPartialLine from its first byte, however steadily more
      // arrives without a newline (progress bars).
      if (out_buf_.empty() && err_buf_.empty()) held_since_.reset();
      else if (!held_since_) held_since_ = KernelClock::now();
    }
  }

  void read_channel(StepSink* sink) {
    char chunk[65536];
    for (size_t got = 0; from_ && got < kReadBudget;) {
      ssize_t n = ::read(from_.get(), chunk, sizeof chunk);
      if (n == 0) {
        from_.reset();
        return;
      }
      if (n < 0) return;
      got += static_cast<size_t>(n);
      from_buf_.append(chunk, static_cast<size_t>(n));
      // Complete lines leave the buffer before any is handled: a line that cannot be handled
      // is never seen twice.
      std::vector<std::string> lines;
      size_t start = 0;
      for (size_t nl; (nl = from_buf_.find('\n', start)) != std::string::npos; start = nl + 1)
        lines.emplace_back(from_buf_, start, nl - start);
      from_buf_.erase(0, start);
      for (auto& line : lines) {
        try {
          on_message(line, sink);
        } catch (const std::exception&) {
          // A message the kernel's own code could forge: dropped, never the end of the host.
        }
        if (!from_) return;  // the message stopped the kernel
      }
      if (from_buf_.size() > max_message_) {
        // Not the protocol: the kernel is killed, and the reaper reports the state lost.
        from_buf_.clear();
        if (pid_ > 0) ::kill(-pid_, SIGKILL);
        return;
      }
    }
  }

  enum class Role { out, err, from, to };
  std::vector<Role> polled_;  // what the items of the last poll_items were
  Fd out_, err_, to_, from_;
  std::string to_send_, from_buf_, start_log_;
  size_t max_message_ = 4096;
  OutputBuffer out_buf_, err_buf_;
  std::optional<KernelClock::time_point> held_since_;  // when the oldest held partial line began
  int64_t executions_ = 0;
};

class BashKernel final : public LineKernel {
 public:
  explicit BashKernel(std::string bash) : bash_(std::move(bash)) {}

  Result<> start(const KernelLaunch& launch) override {
    stop();
    BRIG_TRY_ASSIGN(in, make_pipe());
    BRIG_TRY_ASSIGN(out, make_pipe());
    BRIG_TRY_ASSIGN(err, make_pipe());
    BRIG_TRY_ASSIGN(mark, make_pipe());
    token_ = random_hex(16);
    seq_ = step_seq_ = 0;
    cell_path_ = launch.dir + "/bash-" + launch.context_id + ".sh";
    auto env = launch.env;
    env["TERM"] = "dumb";
    BRIG_TRY_ASSIGN(pid, spawn_kernel({bash_, "--norc", "--noprofile", "--noediting", "-i"}, env, launch.cwd,
                                      {{0, in.first.get()}, {1, out.second.get()}, {2, err.second.get()},
                                       {3, mark.second.get()}}));
    reset(pid, std::move(out.first), std::move(err.first), std::move(in.second), std::move(mark.first), 4096);
    send(bash::init_line(token_));
    return ok();
  }

  void interrupt() override {
    if (pid_ <= 0 || !in_flight_) return;
    interrupted_ = true;
    ::kill(-pid_, SIGINT);  // the foreground command and bash (background jobs ignore it)
    send(bash::sync_line(token_, ++seq_));
  }

 protected:
  void send_step(const std::string& code, bool, StepSink& sink) override {
    if (trim(code).empty()) return step_over(&sink);
    auto wrote = write_private_file(cell_path_, code.ends_with('\n') ? code : code + "\n");
    if (!wrote) {
      sink.line({{"type", "error"}, {"name", "KernelError"},
                 {"value", "could not write the cell for bash: " + wrote.error().message()}, {"traceback", ""}});
      return step_over(&sink);
    }
    step_seq_ = ++seq_;
    send(bash::step_line(cell_path_, token_, step_seq_));
  }

  void on_message(std::string_view line, StepSink* sink) override {
    auto m = bash::parse_marker(line, token_);
    if (!m) return;
    if (!ready_) {
      if (m->seq == 0) ready_ = true;
      return;
    }
    // An earlier step's marker (after an interrupt that did not stop it) is stale; a later one
    // (the line sent after an interrupt) ends the step whose own line was abandoned.
    if (!in_flight_ || m->seq < step_seq_) return;
    const int status = m->seq == step_seq_ ? m->status : 130;
    finish_output(sink);
    if (auto e = bash::step_error(status, interrupted_); !e.is_null() && sink) sink->line(jupyter::error_line(e));
    step_over(sink);
  }

  bool step_died(int wait_status, StepSink& sink) override {
    // `exit` in a cell, or a killed shell: as with a terminal, a new shell takes its place.
    sink.stream(true, "bash exited; a new shell was started (its state is lost)\n");
    int code = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
    if (auto e = bash::step_error(code, false); !e.is_null()) sink.line(jupyter::error_line(e));
    in_flight_ = false;
    sink.done();
    return true;
  }

 private:
  std::string bash_, token_, cell_path_;
  uint64_t seq_ = 0, step_seq_ = 0;
};

class NodeKernel final : public LineKernel {
 public:
  explicit NodeKernel(std::string node) : node_(std::move(node)) {}

  Result<> start(const KernelLaunch& launch) override {
    stop();
    BRIG_TRY(write_private_file(launch.dir + "/node_kernel.cjs", brig_node_kernel_cjs));
    BRIG_TRY_ASSIGN(out, make_pipe());
    BRIG_TRY_ASSIGN(err, make_pipe());
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      return Error::from_errno(errno, "create the node kernel's channel");
    Fd ours(sv[0]), theirs(sv[1]);
    Fd reader(::fcntl(ours.get(), F_DUPFD_CLOEXEC, 0));
    Fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!reader || !null) return Error::from_errno(errno, "set up the node kernel");
    BRIG_TRY_ASSIGN(pid, spawn_kernel({node_, "--expose-internals", "--experimental-vm-modules",
                                       launch.dir + "/node_kernel.cjs"},
                                      launch.env, launch.cwd,
                                      {{0, null.get()}, {1, out.second.get()}, {2, err.second.get()}, {3, theirs.get()}}));
    reset(pid, std::move(out.first), std::move(err.first), std::move(ours), std::move(reader), kMaxMessage);
    interrupted_at_.reset();
    return ok();
  }

  void interrupt() override {
    if (pid_ <= 0 || !in_flight_) return;
    interrupted_ = true;
    interrupted_at_ = KernelClock::now();
    escalated_ = false;
    // The kernel alone first: a child process the cell started in the background lives on.
    ::kill(pid_, SIGINT);
  }

  bool tick(KernelClock::time_point now, StepSink* sink) override {
    if (in_flight_ && interrupted_at_ && !escalated_ && now - *interrupted_at_ > kEscalate && pid_ > 0) {
      // Still busy: most likely waiting for a child (execSync), which gets the SIGINT too.
      escalated_ = true;
      ::kill(-pid_, SIGINT);
    }
    return LineKernel::tick(now, sink);
  }

 protected:
  static constexpr size_t kMaxMessage = 64 << 20;

  void send_step(const std::string& code, bool main, StepSink&) override {
    interrupted_at_.reset();
    send(node::step_message(code, main));
  }

  void on_message(std::string_view line, StepSink* sink) override {
    if (!json_depth_within(line, kMaxJsonDepth)) return;  // copying or dumping it would recurse too deep
    json m = json::parse(line, nullptr, false);
    if (!m.is_object() || !m.contains("type") || !m["type"].is_string()) return;
    const std::string type = m["type"];
    if (type == "ready") {
      ready_ = true;
      return;
    }
    if (!in_flight_) return;
    if (type == "done") return step_over(sink);
    finish_output(sink);  // what the cell printed comes before its value or error
    if (auto l = node::output_line(m); !l.is_null() && sink) sink->line(std::move(l));
  }

  bool step_died(int, StepSink&) override { return false; }

 private:
  std::string node_;
  std::optional<KernelClock::time_point> interrupted_at_;
  bool escalated_ = false;
};

}  // namespace

std::unique_ptr<Kernel> make_bash_kernel(std::string bash) { return std::make_unique<BashKernel>(std::move(bash)); }

std::unique_ptr<Kernel> make_node_kernel(std::string node) { return std::make_unique<NodeKernel>(std::move(node)); }

}  // namespace brig::init
