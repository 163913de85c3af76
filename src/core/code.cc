#include "core/code.h"

#include <poll.h>
#include <sys/socket.h>

#include "base/util.h"

namespace brig::core {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxLineBytes = 64 << 20;  // one NDJSON line from the kernel host (a big PNG)
constexpr auto kReplyTimeout = std::chrono::seconds(30);

}  // namespace

bool valid_context_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-')) return false;
  return true;
}

Result<json> kernel_request(const RunCode& cmd, const config::Limits& limits) {
  if (cmd.code.size() > limits.code_bytes)
    return Error::make(errc::invalid_argument, "code is larger than " + format_size(limits.code_bytes) + " (limits.code_bytes)");
  if (cmd.context_id && cmd.language)
    return Error::make(errc::invalid_argument, "You can provide context_id or language, but not both at the same time.");
  json out = {{"op", "execute"}, {"code", cmd.code}};
  if (cmd.context_id) {
    if (!valid_context_id(*cmd.context_id)) return Error::make(errc::invalid_argument, "context_id must be a context id");
    out["context_id"] = *cmd.context_id;
  }
  if (cmd.language) {
    if (cmd.language->size() > 64) return Error::make(errc::invalid_argument, "language must be a short string");
    out["language"] = *cmd.language;
  }
  if (!cmd.env.empty()) {
    if (cmd.env.size() > limits.env_entries)
      return Error::make(errc::invalid_argument,
                         "env_vars must be an object of at most " + std::to_string(limits.env_entries) + " variables (limits.env_entries)");
    for (auto& [k, v] : cmd.env) {
      if (!valid_env_name(k)) return Error::make(errc::invalid_argument, "env_vars: '" + k.substr(0, 64) + "' is not a variable name");
      if (v.size() > limits.env_value_bytes)
        return Error::make(errc::invalid_argument, "env_vars: the value of " + k.substr(0, 64) + " must be a string of at most " +
                                                       format_size(limits.env_value_bytes) + " (limits.env_value_bytes)");
    }
    out["env_vars"] = cmd.env;
  }
  if (cmd.timeout_ms) {
    if (*cmd.timeout_ms < 1 || *cmd.timeout_ms > kMaxCellTimeoutMs)
      return Error::make(errc::invalid_argument, "timeout_ms must be an integer from 1 to 86400000");
    out["timeout_ms"] = *cmd.timeout_ms;
  }
  return out;
}

Result<KernelCall> KernelCall::open(Live& live, const json& request) {
  BRIG_TRY_ASSIGN(fd, live.sandbox->open_kernels());
  std::string line = request.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  size_t off = 0;
  // The kernel host runs as the sandbox user, who can stop it: bounded waits only.
  auto deadline = Clock::now() + kReplyTimeout;
  while (off < line.size()) {
    struct pollfd p = {fd.get(), POLLOUT, 0};
    int ready = ::poll(&p, 1, 1000);
    if (ready < 0 && errno != EINTR) return Error::from_errno(errno, "poll");
    if (ready <= 0) {
      if (Clock::now() > deadline) return Error::make(errc::timed_out, "the kernel host is not reading");
      continue;
    }
    ssize_t n = ::send(fd.get(), line.data() + off, line.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return Error::from_errno(errno, "send to the kernel host");
    off += static_cast<size_t>(n);
  }
  KernelCall call(std::move(fd));
  if (live.secrets) call.redact_ = live.secrets->redaction();
  return call;
}

Result<std::optional<std::string>> KernelCall::next(std::chrono::milliseconds wait) {
  auto deadline = Clock::now() + wait;
  for (;;) {
    if (auto nl = buf_.find('\n', scanned_); nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      scanned_ = 0;
      if (redact_) redact_->redact(line);
      return std::optional<std::string>(std::move(line));
    }
    scanned_ = buf_.size();
    if (buf_.size() > kMaxLineBytes) return Error::make(errc::limit_exceeded, "a line from the kernel host is over 64 MiB");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return std::optional<std::string>();
    struct pollfd p = {fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno != EINTR) return Error::from_errno(errno, "poll");
    if (r <= 0) continue;
    char chunk[1 << 16];
    ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error::make(errc::not_found, "the kernel host closed the connection");
    buf_.append(chunk, static_cast<size_t>(n));
  }
}

Result<json> KernelCall::status() {
  BRIG_TRY_ASSIGN(line, next(std::chrono::duration_cast<std::chrono::milliseconds>(kReplyTimeout)));
  if (!line) return Error::make(errc::timed_out, "the kernel host did not answer within 30 s");
  json j = json_depth_within(*line, kMaxJsonDepth) ? json::parse(*line, nullptr, false) : json();
  if (!j.is_object() || !j.contains("status") || !j["status"].is_number_integer())
    return Error::make(errc::protocol, "malformed reply from the kernel host");
  return j;
}

}  // namespace brig::core
