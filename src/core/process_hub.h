// ProcessHub: the daemon's side of one process in a sandbox. Its output pipes (or PTY) are
// read on the event loop as output is produced (so the process never blocks on a full pipe
// while nobody listens), each read landing in one immutable chunk that every subscriber shares
// (the bytes are copied once, from the pipe); the exit is pushed by brig-init's channel
// (Sandbox::on_exit), never polled. No thread of its own. A bounded backlog feeds any number of
// subscribers (the Start stream, later Connect streams). The process outlives every
// subscriber; only its exit ends the hub.
//
// Backpressure: while a subscriber is attached and kMaxBacklog bytes or more wait for the
// slowest one, the loop stops reading (the process blocks in write, as on a terminal) until
// that subscriber catches up or leaves. With no subscriber the backlog keeps only the newest
// output.
//
// Thread safety: all methods are thread-safe. The hub may be destroyed on any thread, reads
// pending or not: its fds are closed on the loop afterwards. The event loop must outlive it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/secrets.h"
#include "sandbox/sandbox.h"

namespace brig {
class EventLoop;
}

namespace brig::core {

// Bytes as one read() returned them, shared read-only by every subscriber.
using Chunk = std::shared_ptr<const std::string>;

struct ProcessEvent {
  enum Kind { stdout_data, stderr_data, pty_data, end } kind;
  Chunk data;                  // data events: never null; end: null
  sandbox::ExitStatus status;  // for end
  bool killed_by_deadline = false;
  // sandbox::killed_for_memory (as `brig run` tells them apart), not by its deadline.
  bool oom_killed = false;

  std::string_view bytes() const { return data ? std::string_view(*data) : std::string_view(); }
  size_t size() const { return data ? data->size() : 0; }
};

class ProcessHub : public std::enable_shared_from_this<ProcessHub> {
 public:
  static constexpr size_t kMaxBacklog = 4 << 20;
  static constexpr size_t kMaxChunk = 256 << 10;  // at most one read per chunk

  // Starts following a spawned process on the sandbox's event loop (errc::unsupported if the
  // engine has none). `oom_kills_before`: sandbox::oom_kills read before the process was spawned.
  // `secrets`: whose values are redacted from the output (none: nothing is).
  static Result<std::shared_ptr<ProcessHub>> start(std::shared_ptr<sandbox::Sandbox> sandbox,
                                                   sandbox::SpawnedProcess process, sandbox::ProcessSpec spec,
                                                   uint64_t oom_kills_before,
                                                   std::shared_ptr<SecretStore> secrets = nullptr);
  ~ProcessHub();
  ProcessHub(const ProcessHub&) = delete;
  ProcessHub& operator=(const ProcessHub&) = delete;

  int pid() const { return pid_; }
  const sandbox::ProcessSpec& spec() const { return spec_; }
  bool pty() const { return spec_.pty; }

  // A subscription starts at the live end of the output (a Connect: earlier output is not
  // replayed), or, for the Start stream, at the oldest output still kept (the process's very
  // first byte unless more than kMaxBacklog came before anyone subscribed).
  uint64_t subscribe(bool from_start = false);
  void unsubscribe(uint64_t cursor_id);
  // Waits up to `timeout` for events after the subscriber's cursor; returns them (may be
  // empty; at most about 1 MiB of data per call). The chunks are shared, not copied.
  std::vector<ProcessEvent> next(uint64_t cursor_id, std::chrono::milliseconds timeout);
  // Calls `ready` (once, on whichever thread makes it so, or this one) when next() has
  // something for the subscriber: at once if it has now. For a reader on the event loop, which
  // must not wait in next(): it asks next() with no timeout, and this when that was empty.
  void when_ready(uint64_t cursor_id, std::function<void()> ready);
  bool finished();
  std::optional<sandbox::ExitStatus> exit_status();
  // Calls `fn` once with the end event, when the process has ended and its output is all read,
  // before any subscriber sees the end, with the hub's lock held (so `fn` must not call the
  // hub); at once, on this thread, if it has ended already. A second call replaces the first.
  void on_end(std::function<void(const ProcessEvent&)> fn);

  Result<> write_stdin(std::string_view data);
  Result<> close_stdin();
  Result<> resize(uint16_t rows, uint16_t cols);
  // Kills the process group at `deadline` unless it has exited (Connect-Timeout-Ms); the
  // earliest deadline set wins. A timer on the loop, not a thread.
  void set_deadline(std::chrono::steady_clock::time_point deadline);

 private:
  struct Io;  // the asio objects, used on the loop thread only
  enum class Read { data, again, eof };
  // Where one output stream is, as the loop sees it.
  enum class Reading { none, active, waiting, paused, posted, done };

  ProcessHub(EventLoop& loop, std::shared_ptr<sandbox::Sandbox> sandbox, sandbox::SpawnedProcess process,
             sandbox::ProcessSpec spec, uint64_t oom_kills_before);

  // On the loop thread.
  void begin();
  void arm(int i);
  void on_readable(int i);
  Read read_chunk(int i);
  void push_data(int i, std::shared_ptr<std::string> chunk);
  // Stream i has ended: what its redactor held back goes out.
  void end_stream(int i);
  void resume();
  void on_exited(std::optional<sandbox::ExitStatus> status);
  void try_finish();
  void arm_deadline();
  void on_deadline();

  // Bytes pushed but not yet read by the slowest subscriber, past the limit (mu_ held).
  bool over_backlog_locked() const;
  // After a subscriber read or left: restarts reading if it had stopped for it (mu_ held).
  void resume_if_room_locked();

  EventLoop& loop_;
  std::shared_ptr<sandbox::Sandbox> sandbox_;
  const int pid_;
  const sandbox::ProcessSpec spec_;
  const uint64_t oom_kills_before_;
  // The PTY master (stdin in PTY mode, and TIOCSWINSZ): owned by io_, closed after the hub.
  const int pty_fd_;
  Fd stdin_;
  std::mutex stdin_mu_;  // guards stdin_ (write_stdin against close_stdin)
  std::shared_ptr<Io> io_;

  // Loop-thread state.
  bool begun_ = false;
  Reading reading_[2] = {Reading::none, Reading::none};
  std::optional<sandbox::ExitStatus> exit_;
  bool killed_by_deadline_ = false;
  std::shared_ptr<SecretStore> secrets_;  // set before begin(), then read only
  StreamRedactor redactors_[2];

  std::mutex mu_;
  std::condition_variable cv_;
  // The backlog is counted in bytes plus a fixed cost per event (kMaxBacklog bounds memory,
  // not only payload).
  struct Entry {
    ProcessEvent event;
    uint64_t offset;  // the cost of every event pushed before this one
  };
  std::deque<Entry> events_;  // events_[0] has sequence number base_seq_
  uint64_t base_seq_ = 0;
  uint64_t pushed_ = 0;   // cost of every event ever pushed
  size_t backlog_ = 0;    // cost of the events kept
  std::map<uint64_t, uint64_t> cursors_;  // subscriber id -> next sequence number
  std::map<uint64_t, std::function<void()>> waiters_;  // subscriber id -> its when_ready call
  // The waiters, taken (mu_ held) to be called once mu_ is let go of.
  std::vector<std::function<void()>> take_waiters_locked();
  static void call_all(std::vector<std::function<void()>> fns);
  uint64_t next_cursor_ = 1;
  bool paused_ = false;  // the loop stopped reading for a slow subscriber
  bool finished_ = false;
  std::optional<sandbox::ExitStatus> status_;
  std::optional<ProcessEvent> end_;  // once finished
  std::function<void(const ProcessEvent&)> on_end_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
};

}  // namespace brig::core
