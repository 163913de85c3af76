// Code cells: the typed command the code interpreter's port and MCP's run_code send, and a
// call to the sandbox's kernel host (init/kernel_host.h) that carries it. The kernel host runs
// as the sandbox user: everything it sends back is untrusted and bounded here.
//
// Thread safety: a KernelCall belongs to one thread at a time.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/result.h"
#include "config/config.h"
#include "core/live.h"

namespace brig::core {

inline constexpr int64_t kMaxCellTimeoutMs = 86'400'000;

struct RunCode {
  std::string code;
  std::optional<std::string> context_id;  // either a context...
  std::optional<std::string> language;    // ...or a language (its default context), not both
  std::map<std::string, std::string> env;
  std::optional<int64_t> timeout_ms;      // interrupts the cell when it runs longer (a brig extension)
};

bool valid_context_id(const std::string& id);

// The kernel host's request for `cmd`, checked against `limits` (code_bytes, env_entries,
// env_value_bytes); errc::invalid_argument says what is wrong.
Result<nlohmann::json> kernel_request(const RunCode& cmd, const config::Limits& limits);

// One request to the kernel host: a JSON line out, lines back until it closes. Closing the
// call (destroying it) interrupts a running cell.
class KernelCall {
 public:
  static Result<KernelCall> open(Live& live, const nlohmann::json& request);
  // The first line: {"status":N,"body":…}.
  Result<nlohmann::json> status();
  // The next line, with the values of secrets redacted; nullopt when none arrived within
  // `wait`; errc::not_found at the end.
  Result<std::optional<std::string>> next(std::chrono::milliseconds wait);

 private:
  explicit KernelCall(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;
  std::shared_ptr<const RedactionSet> redact_;
  std::string buf_;
  size_t scanned_ = 0;
};

}  // namespace brig::core
