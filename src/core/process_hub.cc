#include "core/process_hub.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "base/event_loop.h"

namespace brig::core {

namespace {
// Reads of one stream per turn of the loop before it lets other handlers run.
constexpr int kReadsPerTurn = 16;
// Data handed out by one next() call, about.
constexpr size_t kMaxPerNext = 1 << 20;
// What an event costs beyond its bytes (the chunk's control block, the deque entry): counted
// in the backlog, so a flood of one-byte writes is bounded in memory too.
constexpr size_t kEventCost = 64;
size_t cost(const ProcessEvent& e) { return e.kind == ProcessEvent::end ? 0 : e.size() + kEventCost; }
}  // namespace

struct ProcessHub::Io {
  explicit Io(boost::asio::io_context& io) : timer(io) {}
  Fd fds[2];  // stdout (or the PTY master) and stderr, until begin() hands them to `streams`
  std::unique_ptr<boost::asio::posix::stream_descriptor> streams[2];
  boost::asio::steady_timer timer;

  // Cancels what is pending (handlers then see operation_aborted) and closes the fds,
  // deregistering them from the reactor first.
  void close() {
    for (auto& s : streams) {
      if (!s) continue;
      boost::system::error_code ec;
      s->close(ec);
      s.reset();
    }
    for (auto& fd : fds) fd.reset();
    timer.cancel();
  }
};

Result<std::shared_ptr<ProcessHub>> ProcessHub::start(std::shared_ptr<sandbox::Sandbox> sandbox,
                                                      sandbox::SpawnedProcess process, sandbox::ProcessSpec spec,
                                                      uint64_t oom_kills_before,
                                                      std::shared_ptr<SecretStore> secrets) {
  EventLoop* loop = sandbox->event_loop();
  if (!loop) return Error::make(errc::unsupported, "process streams need the engine's event loop");
  std::shared_ptr<ProcessHub> hub(
      new ProcessHub(*loop, std::move(sandbox), std::move(process), std::move(spec), oom_kills_before));
  hub->secrets_ = std::move(secrets);
  std::weak_ptr<ProcessHub> weak = hub;
  loop->post([weak] {
    if (auto h = weak.lock()) h->begin();
  });
  // The exit is pushed when brig-init reports it (posted at once if it already has).
  BRIG_TRY(hub->sandbox_->on_exit(hub->pid_, [weak](std::optional<sandbox::ExitStatus> status) {
    if (auto h = weak.lock()) h->on_exited(status);
  }));
  return hub;
}

ProcessHub::ProcessHub(EventLoop& loop, std::shared_ptr<sandbox::Sandbox> sandbox, sandbox::SpawnedProcess process,
                       sandbox::ProcessSpec spec, uint64_t oom_kills_before)
    : loop_(loop), sandbox_(std::move(sandbox)), pid_(process.pid), spec_(std::move(spec)),
      oom_kills_before_(oom_kills_before), pty_fd_(spec_.pty ? process.stdout_fd.get() : -1),
      stdin_(std::move(process.stdin_fd)), io_(std::make_shared<Io>(loop.io())) {
  io_->fds[0] = std::move(process.stdout_fd);
  io_->fds[1] = std::move(process.stderr_fd);
  for (auto& fd : io_->fds)
    if (fd) ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
}

ProcessHub::~ProcessHub() {
  // Handlers still pending hold only a weak reference to the hub; they find it gone. The fds
  // close on the loop, after the reactor lets go of them (at the io_context's end if the loop
  // has already stopped).
  loop_.post([io = io_] { io->close(); });
}

// ---- on the loop thread --------------------------------------------------------------------

void ProcessHub::begin() {
  begun_ = true;
  // Every stream is marked as being read before any is read: when the exit is already known,
  // the first stream's drain calls try_finish(), which must not take the second, not begun yet,
  // for finished (that lost a short stderr after stdout).
  for (int i = 0; i < 2; ++i) {
    if (!io_->fds[i]) continue;
    io_->streams[i] = std::make_unique<boost::asio::posix::stream_descriptor>(loop_.io(), io_->fds[i].release());
    reading_[i] = Reading::active;
  }
  for (int i = 0; i < 2; ++i)
    if (io_->streams[i]) on_readable(i);  // output may already be waiting
  try_finish();  // a process without pipes ends with its exit alone
  bool deadline;
  {
    std::lock_guard lock(mu_);
    deadline = deadline_.has_value();
  }
  if (deadline) arm_deadline();
}

void ProcessHub::arm(int i) {
  reading_[i] = Reading::waiting;
  std::weak_ptr<ProcessHub> weak = weak_from_this();
  io_->streams[i]->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                              [weak, i](const boost::system::error_code& ec) {
                                if (ec) return;  // cancelled: the hub is going away
                                auto h = weak.lock();
                                if (!h || h->reading_[i] != Reading::waiting) return;
                                h->reading_[i] = Reading::active;
                                h->on_readable(i);
                              });
}

void ProcessHub::on_readable(int i) {
  for (int n = 0; n < kReadsPerTurn; ++n) {
    {
      std::lock_guard lock(mu_);
      if (over_backlog_locked()) {
        // Stop reading: the pipe fills and the process blocks in write until the slowest
        // subscriber catches up (next() then posts resume()).
        reading_[i] = Reading::paused;
        paused_ = true;
        return;
      }
    }
    switch (read_chunk(i)) {
      case Read::data: continue;
      case Read::again:
        if (exit_) {
          // Drained what the process wrote before it exited; a background child still holding
          // the pipe does not keep the stream open.
          end_stream(i);
          return try_finish();
        }
        // Called for a stream whose wait is still pending only once the exit is known.
        if (reading_[i] != Reading::waiting) arm(i);
        return;
      case Read::eof:
        end_stream(i);
        return try_finish();
    }
  }
  // More may be waiting: let the loop's other handlers run first.
  reading_[i] = Reading::posted;
  std::weak_ptr<ProcessHub> weak = weak_from_this();
  loop_.post([weak, i] {
    auto h = weak.lock();
    if (!h || h->reading_[i] != Reading::posted) return;
    h->reading_[i] = Reading::active;
    h->on_readable(i);
  });
}

ProcessHub::Read ProcessHub::read_chunk(int i) {
  const int fd = io_->streams[i]->native_handle();
  // Exactly what is queued, so the chunk is allocated once at its size and never copied again.
  int queued = 0;
  if (::ioctl(fd, FIONREAD, &queued) != 0 || queued < 0) queued = 0;
  auto chunk = std::make_shared<std::string>();
  chunk->resize(queued > 0 ? std::min(static_cast<size_t>(queued), kMaxChunk) : 4096);
  ssize_t n;
  do n = ::read(fd, chunk->data(), chunk->size());
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Read::again;
  if (n <= 0) return Read::eof;  // EOF, or EIO from a PTY whose last writer is gone
  const bool spare = static_cast<size_t>(n) * 2 < chunk->size();
  chunk->resize(static_cast<size_t>(n));
  if (spare) chunk->shrink_to_fit();  // the 4 KiB guess of a pipe that would not say (small)
  // A secret's value never leaves in output (core/secrets.h): a tail that may start one waits
  // for the next read, or for the end of the stream.
  if (secrets_ && (secrets_->redacting() || redactors_[i].holding())) {
    std::string out = redactors_[i].feed(*secrets_->redaction(), *chunk);
    if (out.empty()) return Read::data;
    chunk = std::make_shared<std::string>(std::move(out));
  }
  push_data(i, std::move(chunk));
  return Read::data;
}

void ProcessHub::end_stream(int i) {
  reading_[i] = Reading::done;
  if (redactors_[i].holding()) push_data(i, std::make_shared<std::string>(redactors_[i].flush()));
}

void ProcessHub::push_data(int i, std::shared_ptr<std::string> chunk) {
  const auto kind = i == 1 ? ProcessEvent::stderr_data : spec_.pty ? ProcessEvent::pty_data : ProcessEvent::stdout_data;
  std::vector<std::function<void()>> woken;
  {
    std::lock_guard lock(mu_);
    events_.push_back({ProcessEvent{kind, std::move(chunk), {}, false, false}, pushed_});
    pushed_ += cost(events_.back().event);
    backlog_ += cost(events_.back().event);
    // Nobody listening: keep only the newest output.
    while (cursors_.empty() && backlog_ > kMaxBacklog && events_.size() > 1) {
      backlog_ -= cost(events_.front().event);
      events_.pop_front();
      ++base_seq_;
    }
    woken = take_waiters_locked();
  }
  cv_.notify_all();
  call_all(std::move(woken));
}

void ProcessHub::resume() {
  for (int i = 0; i < 2; ++i)
    if (reading_[i] == Reading::paused) on_readable(i);
}

void ProcessHub::on_exited(std::optional<sandbox::ExitStatus> status) {
  if (exit_) return;
  // nullopt: the sandbox went away, and the process with it.
  exit_ = status ? *status : sandbox::ExitStatus{pid_, -1, SIGKILL};
  // Not begun yet (the exit came through the channel first): begin() drains and finishes.
  if (!begun_) return;
  // Output written just before the exit may still be in the pipes: read it now (a stream
  // stopped for backpressure continues when its subscriber catches up).
  for (int i = 0; i < 2; ++i)
    if (reading_[i] == Reading::waiting) on_readable(i);
  try_finish();
}

void ProcessHub::try_finish() {
  if (!begun_ || !exit_) return;
  for (auto r : reading_)
    if (r != Reading::none && r != Reading::done) return;
  {
    std::lock_guard lock(mu_);
    if (finished_) return;
  }
  const bool oom = !killed_by_deadline_ && sandbox::killed_for_memory(*sandbox_, *exit_, oom_kills_before_);
  std::vector<std::function<void()>> woken;
  const ProcessEvent end{ProcessEvent::end, nullptr, *exit_, killed_by_deadline_, oom};
  {
    std::lock_guard lock(mu_);
    // Before any subscriber can see the end (the log hears of it before the client does).
    if (on_end_) std::exchange(on_end_, nullptr)(end);
    events_.push_back({end, pushed_});
    status_ = exit_;
    end_ = end;
    finished_ = true;
    woken = take_waiters_locked();
  }
  cv_.notify_all();
  call_all(std::move(woken));
  io_->timer.cancel();
}

void ProcessHub::on_end(std::function<void(const ProcessEvent&)> fn) {
  std::optional<ProcessEvent> end;
  {
    std::lock_guard lock(mu_);
    if (!finished_) {
      on_end_ = std::move(fn);
      return;
    }
    end = end_;
  }
  fn(*end);
}

void ProcessHub::arm_deadline() {
  std::chrono::steady_clock::time_point at;
  {
    std::lock_guard lock(mu_);
    if (finished_ || !deadline_) return;
    at = *deadline_;
  }
  io_->timer.expires_at(at);  // cancels an earlier wait
  std::weak_ptr<ProcessHub> weak = weak_from_this();
  io_->timer.async_wait([weak](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto h = weak.lock()) h->on_deadline();
  });
}

void ProcessHub::on_deadline() {
  if (exit_ || killed_by_deadline_) return;
  killed_by_deadline_ = true;
  // signal() waits for brig-init's reply, which this thread reads: send it from the pool.
  (void)loop_.blocking([sandbox = sandbox_, pid = pid_] { (void)sandbox->signal(pid, SIGKILL, true); });
}

// ---- any thread ----------------------------------------------------------------------------

bool ProcessHub::over_backlog_locked() const {
  if (cursors_.empty()) return false;
  uint64_t slowest = UINT64_MAX;
  for (auto& [id, seq] : cursors_) slowest = std::min(slowest, seq);
  slowest = std::max(slowest, base_seq_);
  const uint64_t end = base_seq_ + events_.size();
  const uint64_t unread_from = slowest < end ? events_[static_cast<size_t>(slowest - base_seq_)].offset : pushed_;
  return pushed_ - unread_from >= kMaxBacklog;
}

void ProcessHub::resume_if_room_locked() {
  if (!paused_ || over_backlog_locked()) return;
  paused_ = false;
  std::weak_ptr<ProcessHub> weak = weak_from_this();
  loop_.post([weak] {
    if (auto h = weak.lock()) h->resume();
  });
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
    waiters_.erase(id);
    resume_if_room_locked();
  }
  cv_.notify_all();
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
  while (seq < base_seq_ + events_.size() && bytes < kMaxPerNext) {
    out.push_back(events_[static_cast<size_t>(seq - base_seq_)].event);  // shares the chunk
    bytes += out.back().size();
    ++seq;
  }
  // Trim what every subscriber has seen (the end event stays for late Connects).
  uint64_t min_seq = base_seq_ + events_.size();
  for (auto& [cid, s] : cursors_) min_seq = std::min(min_seq, s);
  while (base_seq_ < min_seq && !events_.empty() && events_.front().event.kind != ProcessEvent::end) {
    backlog_ -= cost(events_.front().event);
    events_.pop_front();
    ++base_seq_;
  }
  resume_if_room_locked();
  return out;
}

void ProcessHub::when_ready(uint64_t id, std::function<void()> ready) {
  {
    std::lock_guard lock(mu_);
    auto it = cursors_.find(id);
    if (it != cursors_.end() && it->second >= base_seq_ + events_.size()) {
      waiters_[id] = std::move(ready);
      return;
    }
  }
  ready();  // something is there already (or the subscription is gone: next() says so)
}

std::vector<std::function<void()>> ProcessHub::take_waiters_locked() {
  std::vector<std::function<void()>> out;
  out.reserve(waiters_.size());
  for (auto& [id, fn] : waiters_) out.push_back(std::move(fn));
  waiters_.clear();
  return out;
}

void ProcessHub::call_all(std::vector<std::function<void()>> fns) {
  for (auto& fn : fns) fn();
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
    int raw = spec_.pty ? pty_fd_ : stdin_.get();
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
  if (::ioctl(pty_fd_, TIOCSWINSZ, &ws) != 0) return Error::from_errno(errno, "ioctl(TIOCSWINSZ)");
  return ok();
}

void ProcessHub::set_deadline(std::chrono::steady_clock::time_point deadline) {
  {
    std::lock_guard lock(mu_);
    if (finished_ || (deadline_ && *deadline_ <= deadline)) return;
    deadline_ = deadline;
  }
  std::weak_ptr<ProcessHub> weak = weak_from_this();
  loop_.post([weak] {
    if (auto h = weak.lock()) h->arm_deadline();
  });
}

}  // namespace brig::core
