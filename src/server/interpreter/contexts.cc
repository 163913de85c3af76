// /contexts: list, create, restart and remove code contexts (each a kernel in the sandbox).
#include "server/interpreter/interpreter.h"

namespace brig::server::interpreter {
namespace {

using json = nlohmann::json;

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

}  // namespace

Route contexts(std::shared_ptr<core::Live> live, const Request& head) {
  Route r;
  const std::string& path = head.path;
  const std::string& m = head.method;
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

}  // namespace brig::server::interpreter
