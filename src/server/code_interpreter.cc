#include "server/code_interpreter.h"

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "base/util.h"


namespace brig::server::code_interpreter {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxLineBytes = 64 << 20;  // one NDJSON line from the kernel host (a big PNG)
constexpr size_t kMaxEnvVars = 256;
constexpr size_t kMaxEnvValue = 128 << 10;
constexpr auto kKeepalive = std::chrono::seconds(5);
constexpr auto kReplyTimeout = std::chrono::seconds(30);


bool valid_context_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-')) return false;
  return true;
}

Response text(int status, const std::string& body) {
  Response r;
  r.status = status;
  r.headers = {{"Content-Type", "text/plain; charset=utf-8"}};
  r.body = body;
  return r;
}

// One request to the kernel host: a JSON line out, lines back until it closes.
class HostCall {
 public:
  static Result<HostCall> open(Live& live, const json& request) {
    BRIG_TRY_ASSIGN(fd, live.sandbox->open_kernels());
    std::string line = request.dump() + "\n";
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
    return HostCall(std::move(fd));
  }

  // The next line; nullopt when none arrived within `wait`; errc::not_found at the end.
  Result<std::optional<std::string>> next(std::chrono::milliseconds wait) {
    auto deadline = Clock::now() + wait;
    for (;;) {
      if (auto nl = buf_.find('\n', scanned_); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        scanned_ = 0;
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

  // The first line: {"status":N,"body":…}.
  Result<json> status() {
    BRIG_TRY_ASSIGN(line, next(std::chrono::duration_cast<std::chrono::milliseconds>(kReplyTimeout)));
    if (!line) return Error::make(errc::timed_out, "the kernel host did not answer within 30 s");
    json j = json_depth_within(*line, kMaxJsonDepth) ? json::parse(*line, nullptr, false) : json();
    if (!j.is_object() || !j.contains("status") || !j["status"].is_number_integer())
      return Error::make(errc::protocol, "malformed reply from the kernel host");
    return j;
  }

 private:
  explicit HostCall(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;
  std::string buf_;
  size_t scanned_ = 0;
};

// A unary call (the /contexts routes): the kernel host's status and body become the response.
Response unary(Live& live, const json& request) {
  auto call = HostCall::open(live, request);
  if (!call) return text(502, "the code interpreter is not available: " + call.error().message());
  auto reply = call->status();
  if (!reply) return text(502, "the code interpreter failed: " + reply.error().message());
  int status = (*reply)["status"];
  if (status < 200 || status > 599) status = 502;
  const json& body = (*reply).contains("body") ? (*reply)["body"] : json(nullptr);
  if (status >= 300) return text(status, body.is_string() ? body.get<std::string>() : body.dump());
  return Response::json(status, body.dump());
}

void execute(Live& live, Request& req, Stream& s) {
  auto request = execute_request(req.body);
  if (!request) {
    s.begin(400, {{"Content-Type", "text/plain; charset=utf-8"}});
    s.write(request.error().message());
    return;
  }
  auto call = HostCall::open(live, *request);
  auto reply = call ? call->status() : Result<json>(call.error());
  if (!reply) {
    s.begin(502, {{"Content-Type", "text/plain; charset=utf-8"}});
    s.write("the code interpreter is not available: " + reply.error().message());
    return;
  }
  int status = (*reply)["status"];
  if (status != 200) {
    const json& body = (*reply).contains("body") ? (*reply)["body"] : json("");
    s.begin(status >= 400 && status <= 599 ? status : 502, {{"Content-Type", "text/plain; charset=utf-8"}});
    s.write(body.is_string() ? body.get<std::string>() : body.dump());
    return;
  }
  if (!s.begin(200, {{"Content-Type", "application/x-ndjson"}, {"Cache-Control", "no-store"}})) return;
  auto last_write = Clock::now();
  bool ended = false;
  for (;;) {
    // Returning closes the connection to the kernel host, which interrupts a running cell:
    // that is what a client that went away (or timed out) gets.
    auto line = call->next(std::chrono::seconds(1));
    if (!line) break;
    if (!*line) {
      if (s.peer_gone() || !live.sandbox->alive()) return;
      if (Clock::now() - last_write >= kKeepalive) {
        if (!s.write("{\"type\":\"keepalive\"}\n")) return;
        last_write = Clock::now();
      }
      continue;
    }
    if ((*line)->empty()) continue;  // the SDK would JSON.parse an empty line
    ended = (*line)->starts_with("{\"type\":\"end_of_execution\"");
    if (!s.write(**line + "\n")) return;
    last_write = Clock::now();
    if (ended) return;
  }
  // The kernel host went away mid-cell (the sandbox ended, or its user killed the host).
  json err = {{"type", "error"}, {"name", "UnexpectedEndOfExecution"},
              {"value", live.sandbox->alive() ? "the kernel host stopped before the cell finished"
                                              : "the sandbox ended before the cell finished"},
              {"traceback", ""}};
  s.write(err.dump() + "\n{\"type\":\"end_of_execution\"}\n");
}

}  // namespace

Result<json> execute_request(std::string_view body) {
  json in = json::parse(body, nullptr, false);
  if (!in.is_object()) return Error::make(errc::invalid_argument, "the body must be a JSON object");
  json out = {{"op", "execute"}};
  if (!in.contains("code") || !in["code"].is_string()) return Error::make(errc::invalid_argument, "code must be a string");
  if (in["code"].get_ref<const std::string&>().size() > kMaxCodeBytes)
    return Error::make(errc::invalid_argument, "code is larger than 4 MiB");
  out["code"] = in["code"];
  bool has_ctx = in.contains("context_id") && !in["context_id"].is_null();
  bool has_lang = in.contains("language") && !in["language"].is_null();
  if (has_ctx && has_lang)
    return Error::make(errc::invalid_argument, "You can provide context_id or language, but not both at the same time.");
  if (has_ctx) {
    if (!in["context_id"].is_string() || !valid_context_id(in["context_id"]))
      return Error::make(errc::invalid_argument, "context_id must be a context id");
    out["context_id"] = in["context_id"];
  }
  if (has_lang) {
    if (!in["language"].is_string() || in["language"].get_ref<const std::string&>().size() > 64)
      return Error::make(errc::invalid_argument, "language must be a short string");
    out["language"] = in["language"];
  }
  if (in.contains("env_vars") && !in["env_vars"].is_null()) {
    const json& env = in["env_vars"];
    if (!env.is_object() || env.size() > kMaxEnvVars)
      return Error::make(errc::invalid_argument, "env_vars must be an object of at most 256 variables");
    for (auto& [k, v] : env.items()) {
      if (!valid_env_name(k)) return Error::make(errc::invalid_argument, "env_vars: '" + k.substr(0, 64) + "' is not a variable name");
      if (!v.is_string() || v.get_ref<const std::string&>().size() > kMaxEnvValue)
        return Error::make(errc::invalid_argument, "env_vars: the value of " + k + " must be a string of at most 128 KiB");
    }
    out["env_vars"] = env;
  }
  if (in.contains("timeout_ms") && !in["timeout_ms"].is_null()) {
    if (!in["timeout_ms"].is_number_integer() || in["timeout_ms"].get<int64_t>() < 1 ||
        in["timeout_ms"].get<int64_t>() > 86'400'000)
      return Error::make(errc::invalid_argument, "timeout_ms must be an integer from 1 to 86400000");
    out["timeout_ms"] = in["timeout_ms"];
  }
  return out;
}

Route route(std::shared_ptr<Live> live, const Request& head) {
  Route r;
  const std::string& path = head.path;
  const std::string& m = head.method;
  if (path == "/execute" && m == "POST") {
    r.body_limit = kMaxCodeBytes + (1 << 20);
    r.stream = [live](Request& req, Stream& s) { execute(*live, req, s); };
    return r;
  }
  if (path == "/contexts" && m == "GET") {
    r.respond = [live](Request&) { return unary(*live, {{"op", "list_contexts"}}); };
    return r;
  }
  if (path == "/contexts" && m == "POST") {
    r.body_limit = 64 << 10;
    r.respond = [live](Request& req) {
      json in = req.body.empty() ? json::object() : json::parse(req.body, nullptr, false);
      if (!in.is_object()) return text(400, "the body must be a JSON object");
      json out = {{"op", "create_context"}};
      for (const char* k : {"language", "cwd"}) {
        if (!in.contains(k) || in[k].is_null()) continue;
        if (!in[k].is_string() || in[k].get_ref<const std::string&>().size() > 4096)
          return text(400, std::string(k) + " must be a string");
        out[k] = in[k];
      }
      return unary(*live, out);
    };
    return r;
  }
  if (path.starts_with("/contexts/")) {
    std::string rest = path.substr(10);
    bool restart = rest.ends_with("/restart");
    std::string id = restart ? rest.substr(0, rest.size() - 8) : rest;
    if (valid_context_id(id) && ((restart && m == "POST") || (!restart && m == "DELETE"))) {
      r.respond = [live, id, restart](Request&) {
        return unary(*live, {{"op", restart ? "restart_context" : "remove_context"}, {"id", id}});
      };
      return r;
    }
    if (!valid_context_id(id)) {
      r.respond = [id](Request&) { return text(404, "Context " + id.substr(0, 64) + " not found"); };
      return r;
    }
  }
  r.respond = [](Request& req) { return text(404, "no route for " + req.method + " " + req.path.substr(0, 128)); };
  return r;
}

}  // namespace brig::server::code_interpreter
