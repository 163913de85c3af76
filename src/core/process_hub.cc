#include "core/process_hub.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

namespace brig::core {

ProcessHub::ProcessHub(std::shared_ptr<sandbox::Sandbox> sandbox, sandbox::SpawnedProcess process,
                       sandbox::ProcessSpec spec, uint64_t oom_kills_before)
    : sandbox_(std::move(sandbox)), pid_(process.pid), spec_(std::move(spec)), oom_kills_before_(oom_kills_before),
      stdin_(std::move(process.stdin_fd)),
      stdout_(std::move(process.stdout_fd)), stderr_(std::move(process.stderr_fd)) {
  for (int fd : {stdout_.get(), stderr_.get()})
    if (fd >= 0) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  thread_ = std::thread([this] { pump(); });
}

ProcessHub::~ProcessHub() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t ProcessHub::subscribe(bool from_start) {
  std::lock_guard lock(mu_);
  uint64_t id = next_cursor_++;
  cursors_[id] = from_start ? base_seq_ : base_seq_ + events_.size();
  return id;
}

void ProcessHub::unsubscribe(uint64_t id) {
  {
    std::lock_guard lock(mu_);
    cursors_.erase(id);
  }
  cv_.notify_all();
}

size_t ProcessHub::pending_for_slowest_locked() const {
  if (cursors_.empty()) return 0;
  uint64_t slowest = UINT64_MAX;
  for (auto& [id, seq] : cursors_) slowest = std::min(slowest, seq);
  size_t bytes = 0;
  for (uint64_t s = std::max(slowest, base_seq_); s < base_seq_ + events_.size(); ++s)
    bytes += events_[static_cast<size_t>(s - base_seq_)].data.size();
  return bytes;
}

std::vector<ProcessEvent> ProcessHub::next(uint64_t id, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  auto ready = [&] {
    auto it = cursors_.find(id);
    return it == cursors_.end() || it->second < base_seq_ + events_.size();
  };
  cv_.wait_for(lock, timeout, ready);
  std::vector<ProcessEvent> out;
  auto it = cursors_.find(id);
  if (it == cursors_.end()) return out;
  uint64_t& seq = it->second;
  if (seq < base_seq_) seq = base_seq_;  // dropped while unobserved
  size_t bytes = 0;
  while (seq < base_seq_ + events_.size() && bytes < (1 << 20)) {
    out.push_back(events_[static_cast<size_t>(seq - base_seq_)]);
    bytes += out.back().data.size();
    ++seq;
  }
  // Trim what every subscriber has seen (keep a little for late Connects).
  uint64_t min_seq = base_seq_ + events_.size();
  for (auto& [cid, s] : cursors_) min_seq = std::min(min_seq, s);
  while (base_seq_ < min_seq && !events_.empty() && events_.front().kind != ProcessEvent::end) {
    backlog_bytes_ -= events_.front().data.size();
    events_.pop_front();
    ++base_seq_;
  }
  lock.unlock();
  cv_.notify_all();
  return out;
}

bool ProcessHub::finished() {
  std::lock_guard lock(mu_);
  return finished_;
}

std::optional<sandbox::ExitStatus> ProcessHub::exit_status() {
  std::lock_guard lock(mu_);
  return status_;
}

Result<> ProcessHub::write_stdin(std::string_view data) {
  // The write goes to a duplicate taken under the lock: a concurrent close_stdin cannot close
  // the fd (and its number be reused by another open) under this write, nor wait for it.
  Fd dup;
  {
    std::lock_guard stdin_lock(stdin_mu_);
    int raw = spec_.pty ? stdout_.get() : stdin_.get();
    if (raw < 0) return Error::make(errc::invalid_argument, "the process has no stdin (started without stdin, or closed)");
    dup = Fd(::fcntl(raw, F_DUPFD_CLOEXEC, 3));
    if (!dup) return Error::from_errno(errno, "dup stdin");
  }
  const int fd = dup.get();
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd p = {fd, POLLOUT, 0};
      ::poll(&p, 1, 1000);
      continue;
    }
    if (n < 0) return Error::from_errno(errno, "write stdin");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return ok();
}

Result<> ProcessHub::close_stdin() {
  std::lock_guard stdin_lock(stdin_mu_);
  if (spec_.pty) return Error::make(errc::invalid_argument, "a PTY has no separate stdin to close");
  stdin_.reset();
  return ok();
}

Result<> ProcessHub::resize(uint16_t rows, uint16_t cols) {
  if (!spec_.pty) return Error::make(errc::invalid_argument, "the process has no PTY");
  struct winsize ws = {};
  ws.ws_row = rows;
  ws.ws_col = cols;
  if (::ioctl(stdout_.get(), TIOCSWINSZ, &ws) != 0) return Error::from_errno(errno, "ioctl(TIOCSWINSZ)");
  return ok();
}

void ProcessHub::set_deadline(std::chrono::steady_clock::time_point deadline) {
  std::lock_guard lock(mu_);
  if (!deadline_ || deadline < *deadline_) deadline_ = deadline;
}

void ProcessHub::pump() {
  bool out_open = stdout_.valid(), err_open = stderr_.valid();
  bool killed_by_deadline = false;
  std::optional<sandbox::ExitStatus> exit;
  char buf[65536];
  auto push = [&](ProcessEvent ev) {
    std::unique_lock lock(mu_);
    // Backpressure: wait while an attached subscriber has too much unread.
    cv_.wait(lock, [&] { return stop_ || cursors_.empty() || pending_for_slowest_locked() < kMaxBacklog; });
    backlog_bytes_ += ev.data.size();
    events_.push_back(std::move(ev));
    // Nobody listening: keep only the newest output.
    while (cursors_.empty() && backlog_bytes_ > kMaxBacklog && events_.size() > 1) {
      backlog_bytes_ -= events_.front().data.size();
      events_.pop_front();
      ++base_seq_;
    }
    lock.unlock();
    cv_.notify_all();
  };
  auto drain = [&](int fd, bool& open, ProcessEvent::Kind kind) {
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) {
        open = false;  // EOF, or EIO on a PTY whose last writer is gone
        return;
      }
      push({kind, std::string(buf, static_cast<size_t>(n)), {}, false});
    }
  };
  while (!exit) {
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      if (deadline_ && std::chrono::steady_clock::now() >= *deadline_ && !killed_by_deadline) {
        killed_by_deadline = true;
        (void)sandbox_->signal(pid_, SIGKILL, true);
      }
    }
    struct pollfd p[2];
    int n = 0;
    if (out_open) p[n++] = {stdout_.get(), POLLIN, 0};
    if (err_open) p[n++] = {stderr_.get(), POLLIN, 0};
    if (n) ::poll(p, static_cast<nfds_t>(n), 100);
    const auto kind_out = spec_.pty ? ProcessEvent::pty_data : ProcessEvent::stdout_data;
    if (out_open) drain(stdout_.get(), out_open, kind_out);
    if (err_open) drain(stderr_.get(), err_open, ProcessEvent::stderr_data);
    auto ex = sandbox_->wait_exit(pid_, (out_open || err_open) ? std::chrono::milliseconds(0) : std::chrono::milliseconds(100));
    if (!ex) {  // the sandbox is gone: the process is too
      exit = sandbox::ExitStatus{pid_, -1, SIGKILL};
      break;
    }
    if (*ex) exit = **ex;
  }
  // Output written just before exit is still in the pipes.
  if (out_open) drain(stdout_.get(), out_open, spec_.pty ? ProcessEvent::pty_data : ProcessEvent::stdout_data);
  if (err_open) drain(stderr_.get(), err_open, ProcessEvent::stderr_data);
  bool oom = !killed_by_deadline && sandbox::killed_for_memory(*sandbox_, *exit, oom_kills_before_);
  push({ProcessEvent::end, "", *exit, killed_by_deadline, oom});
  std::lock_guard lock(mu_);
  status_ = exit;
  finished_ = true;
  cv_.notify_all();
}

}  // namespace brig::core
