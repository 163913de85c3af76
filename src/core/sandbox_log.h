// A sandbox's log (E2B's GET /sandboxes/{id}/logs and /v2/sandboxes/{id}/logs): what brig did
// with it and what it did, one structured entry per event: created, adopted by a restarted
// daemon, timeout and network changes, processes started and ended, each egress decision brig
// egress reports, killed or ended. Never a process's output, a header, a payload or a secret:
// a field that could hold one (a command line) is redacted as output is.
//
// Kept in memory, bounded: limits.sandbox_log_entries per sandbox (the oldest go first, and
// the log says how many went), and the logs of the limits.ended_sandbox_logs most recently
// ended sandboxes. A restart of the daemon starts every log afresh.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace brig::core {

enum class LogLevel { debug, info, warn, error };
const char* level_name(LogLevel l);
// "debug" | "info" | "warn" | "error" (E2B's LogLevel); errc::invalid_argument otherwise.
Result<LogLevel> parse_level(std::string_view s);

struct LogEntry {
  int64_t timestamp_ms = 0;  // unix
  LogLevel level = LogLevel::info;
  std::string message;
  std::map<std::string, std::string> fields;
};

struct LogQuery {
  // forward: entries at or after cursor_ms, oldest first; backward: at or before it, newest
  // first (nullopt: from the first, or from the last).
  std::optional<int64_t> cursor_ms;
  bool forward = true;
  size_t limit = 1000;
  LogLevel min_level = LogLevel::debug;
  std::string search;  // "" = any; else a case-insensitive substring of the message
};
inline constexpr size_t kMaxLogQueryLimit = 1000;  // E2B's bound on `limit`
inline constexpr size_t kMaxLogSearchBytes = 256;

class SandboxLog {
 public:
  explicit SandboxLog(size_t capacity) : capacity_(capacity) {}
  void add(LogLevel level, std::string message, std::map<std::string, std::string> fields = {});
  std::vector<LogEntry> query(const LogQuery& q) const;
  uint64_t dropped() const;  // entries that went for newer ones

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::deque<LogEntry> entries_;  // oldest first; timestamps never decrease
  uint64_t dropped_ = 0;
};

}  // namespace brig::core
