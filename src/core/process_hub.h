// ProcessHub: the daemon's side of one process in a sandbox. A pump thread reads its output
// as it is produced (so the process never blocks on a full pipe while nobody listens), keeps
// a bounded backlog, and hands events to any number of subscribers (the Start stream, later
// Connect streams). The process outlives every subscriber; only its exit ends the hub.
//
// Backpressure: while a subscriber is attached and more than kMaxBacklog bytes wait for it,
// the pump stops reading (the process blocks in write, as on a terminal). With no subscriber
// the backlog keeps only the newest output.
//
// Thread safety: all methods are thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "sandbox/sandbox.h"

namespace brig::core {

struct ProcessEvent {
  enum Kind { stdout_data, stderr_data, pty_data, end } kind;
  std::string data;
  sandbox::ExitStatus status;  // for end
  bool killed_by_deadline = false;
  // sandbox::killed_for_memory (as `brig run` tells them apart), not by its deadline.
  bool oom_killed = false;
};

class ProcessHub {
 public:
  static constexpr size_t kMaxBacklog = 4 << 20;

  // `oom_kills_before`: sandbox::oom_kills read before the process was spawned.
  ProcessHub(std::shared_ptr<sandbox::Sandbox> sandbox, sandbox::SpawnedProcess process, sandbox::ProcessSpec spec,
             uint64_t oom_kills_before);
  ~ProcessHub();

  int pid() const { return pid_; }
  const sandbox::ProcessSpec& spec() const { return spec_; }
  bool pty() const { return spec_.pty; }

  // A subscription starts at the live end of the output (a Connect: earlier output is not
  // replayed), or, for the Start stream, at the process's very first byte.
  uint64_t subscribe(bool from_start = false);
  void unsubscribe(uint64_t cursor_id);
  // Waits up to `timeout` for events after the subscriber's cursor; returns them (may be empty).
  std::vector<ProcessEvent> next(uint64_t cursor_id, std::chrono::milliseconds timeout);
  bool finished();
  std::optional<sandbox::ExitStatus> exit_status();

  Result<> write_stdin(std::string_view data);
  Result<> close_stdin();
  Result<> resize(uint16_t rows, uint16_t cols);
  // Kills the process group at `deadline` unless it has exited (Connect-Timeout-Ms).
  void set_deadline(std::chrono::steady_clock::time_point deadline);

 private:
  void pump();
  size_t pending_for_slowest_locked() const;

  std::shared_ptr<sandbox::Sandbox> sandbox_;
  int pid_;
  sandbox::ProcessSpec spec_;
  uint64_t oom_kills_before_;
  Fd stdin_, stdout_, stderr_;
  std::mutex stdin_mu_;  // guards stdin_ (write_stdin against close_stdin)
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ProcessEvent> events_;  // events_[0] has sequence number base_seq_
  uint64_t base_seq_ = 0;
  size_t backlog_bytes_ = 0;
  std::map<uint64_t, uint64_t> cursors_;  // subscriber id -> next sequence number
  uint64_t next_cursor_ = 1;
  bool finished_ = false;
  bool stop_ = false;
  std::optional<sandbox::ExitStatus> status_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::thread thread_;
};

}  // namespace brig::core
