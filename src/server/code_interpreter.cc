#include "server/code_interpreter.h"

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include <spdlog/spdlog.h>

#include "base/util.h"
#include "core/code.h"


namespace brig::server::code_interpreter {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr auto kKeepalive = std::chrono::seconds(5);

Response text(int status, const std::string& body) {
  Response r;
  r.status = status;
  r.headers = {{"Content-Type", "text/plain; charset=utf-8"}};
  r.body = body;
  return r;
}

// The kernel host could not be reached or failed: a 502, as E2B's proxy answers for a sandbox
// service that is down; logged once here (it is never the client's fault).
Response unavailable(const Error& e, const std::string& prefix) {
  spdlog::error("code interpreter: {}{}", prefix, e.message());
  return text(502, prefix + e.message());
}

// A unary call (the /contexts routes): the kernel host's status and body become the response.
Response unary(core::Live& live, const json& request) {
  auto call = core::KernelCall::open(live, request);
  if (!call) return unavailable(call.error(), "the code interpreter is not available: ");
  auto reply = call->status();
  if (!reply) return unavailable(reply.error(), "the code interpreter failed: ");
  int status = (*reply)["status"];
  if (status < 200 || status > 599) status = 502;
  const json& body = (*reply).contains("body") ? (*reply)["body"] : json(nullptr);
  if (status >= 300) return text(status, body.is_string() ? body.get<std::string>() : body.dump());
  return Response::json(status, body.dump());
}

void execute(core::Live& live, Request& req, Stream& s) {
  auto request = execute_request(req.body);
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

Result<json> execute_request(std::string_view body) {
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
    if (!env.is_object() || env.size() > core::kMaxCodeEnvVars)
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
  return core::kernel_request(cmd);
}

Route route(std::shared_ptr<core::Live> live, const Request& head) {
  Route r;
  const std::string& path = head.path;
  const std::string& m = head.method;
  if (path == "/execute" && m == "POST") {
    r.body_limit = core::kMaxCodeBytes + (1 << 20);
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
    if (core::valid_context_id(id) && ((restart && m == "POST") || (!restart && m == "DELETE"))) {
      r.respond = [live, id, restart](Request&) {
        return unary(*live, {{"op", restart ? "restart_context" : "remove_context"}, {"id", id}});
      };
      return r;
    }
    if (!core::valid_context_id(id)) {
      r.respond = [id](Request&) { return text(404, "Context " + id.substr(0, 64) + " not found"); };
      return r;
    }
  }
  r.respond = [](Request& req) { return text(404, "no route for " + req.method + " " + req.path.substr(0, 128)); };
  return r;
}

}  // namespace brig::server::code_interpreter
