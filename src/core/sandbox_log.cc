#include "core/sandbox_log.h"

#include <algorithm>
#include <cctype>

#include "base/util.h"

namespace brig::core {

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
  }
  return "info";
}

Result<LogLevel> parse_level(std::string_view s) {
  for (LogLevel l : {LogLevel::debug, LogLevel::info, LogLevel::warn, LogLevel::error})
    if (s == level_name(l)) return l;
  return Error::make(errc::invalid_argument, "level must be one of debug, info, warn, error");
}

void SandboxLog::add(LogLevel level, std::string message, std::map<std::string, std::string> fields) {
  std::lock_guard lock(mu_);
  // The wall clock may step back; the log's order is its timestamps' order.
  int64_t now = now_unix_ms();
  if (!entries_.empty()) now = std::max(now, entries_.back().timestamp_ms);
  if (entries_.size() >= capacity_) {
    entries_.pop_front();
    ++dropped_;
  }
  entries_.push_back({now, level, std::move(message), std::move(fields)});
}

uint64_t SandboxLog::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

namespace {

bool contains_folded(std::string_view hay, std::string_view needle) {
  auto eq = [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  };
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), eq) != hay.end();
}

}  // namespace

std::vector<LogEntry> SandboxLog::query(const LogQuery& q) const {
  std::vector<LogEntry> out;
  const size_t limit = std::min(q.limit, kMaxLogQueryLimit);
  auto wanted = [&](const LogEntry& e) {
    return e.level >= q.min_level && (q.search.empty() || contains_folded(e.message, q.search));
  };
  std::lock_guard lock(mu_);
  if (q.forward) {
    auto it = q.cursor_ms ? std::lower_bound(entries_.begin(), entries_.end(), *q.cursor_ms,
                                             [](const LogEntry& e, int64_t t) { return e.timestamp_ms < t; })
                          : entries_.begin();
    for (; it != entries_.end() && out.size() < limit; ++it)
      if (wanted(*it)) out.push_back(*it);
  } else {
    auto end = q.cursor_ms ? std::upper_bound(entries_.begin(), entries_.end(), *q.cursor_ms,
                                              [](int64_t t, const LogEntry& e) { return t < e.timestamp_ms; })
                           : entries_.end();
    for (auto it = std::make_reverse_iterator(end); it != entries_.rend() && out.size() < limit; ++it)
      if (wanted(*it)) out.push_back(*it);
  }
  return out;
}

}  // namespace brig::core
