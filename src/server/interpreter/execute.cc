// POST /execute: one cell, its results streamed as NDJSON as the kernel produces them.
#include "server/interpreter/interpreter.h"

namespace brig::server::interpreter {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr auto kKeepalive = std::chrono::seconds(5);

void run_cell(core::Live& live, const config::Limits& limits, Request& req, Stream& s) {
  auto request = execute_request(req.body, limits);
  if (!request) {
    s.begin(400, {{"Content-Type", "text/plain; charset=utf-8"}});
    s.write(request.error().message());
    return;
  }
  auto call = core::KernelCall::open(live, *request);
  auto reply = call ? call->status() : Result<json>(call.error());
  if (!reply) {
    Response res = unavailable(reply.error(), "the code interpreter is not available: ");
    s.begin(res.status, res.headers);
    s.write(res.body);
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

Result<json> execute_request(std::string_view body, const config::Limits& limits) {
  json in = json::parse(body, nullptr, false);
  if (!in.is_object()) return Error::make(errc::invalid_argument, "the body must be a JSON object");
  core::RunCode cmd;
  if (!in.contains("code") || !in["code"].is_string()) return Error::make(errc::invalid_argument, "code must be a string");
  cmd.code = in["code"];
  if (in.contains("context_id") && !in["context_id"].is_null()) {
    if (!in["context_id"].is_string()) return Error::make(errc::invalid_argument, "context_id must be a context id");
    cmd.context_id = in["context_id"].get<std::string>();
  }
  if (in.contains("language") && !in["language"].is_null()) {
    if (!in["language"].is_string()) return Error::make(errc::invalid_argument, "language must be a short string");
    cmd.language = in["language"].get<std::string>();
  }
  if (in.contains("env_vars") && !in["env_vars"].is_null()) {
    const json& env = in["env_vars"];
    if (!env.is_object() || env.size() > limits.env_entries)
      return Error::make(errc::invalid_argument, "env_vars must be an object of at most 256 variables");
    for (auto& [k, v] : env.items()) {
      if (!v.is_string()) return Error::make(errc::invalid_argument, "env_vars: the value of " + k.substr(0, 64) + " must be a string of at most 128 KiB");
      cmd.env[k] = v.get<std::string>();
    }
  }
  if (in.contains("timeout_ms") && !in["timeout_ms"].is_null()) {
    if (!in["timeout_ms"].is_number_integer()) return Error::make(errc::invalid_argument, "timeout_ms must be an integer from 1 to 86400000");
    cmd.timeout_ms = in["timeout_ms"].get<int64_t>();
  }
  return core::kernel_request(cmd, limits);
}

Route execute(std::shared_ptr<core::Live> live, const config::Limits& limits) {
  Route r;
  r.body_limit = limits.code_bytes + (1 << 20);  // the code and its JSON around it
  r.stream = [live, limits](Request& req, Stream& s) { run_cell(*live, limits, req, s); };
  return r;
}

}  // namespace brig::server::interpreter
