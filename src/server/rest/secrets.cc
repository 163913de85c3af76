// /secrets: E2B's secrets (e2b-next.md 2.4) over core::SecretStore. A value goes in (create,
// update) and never comes out: every answer is the metadata, marked no-store.
#include <nlohmann/json.hpp>

#include "server/rest/rest.h"

namespace brig::server::rest {
namespace {

using nlohmann::json;
constexpr size_t kDefaultPage = 100;

json secret_json(const core::SecretInfo& s) {
  return {{"secretID", s.id},           {"name", s.name},
          {"currentVersion", s.version}, {"metadata", s.metadata},
          {"createdAt", rfc3339(s.created_ms)}, {"updatedAt", rfc3339(s.updated_ms)}};
}

Response no_store(Response r) {
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

Response answer(int status, const json& j) {
  return no_store(Response::json(status, j.dump(-1, ' ', false, json::error_handler_t::replace)));
}

Response fail(const Error& e, std::string_view what) { return no_store(error(e, what)); }

// The body of a create or an update: `value` (a string, required), `metadata` (an object of
// strings, optional), and for a create `name`.
struct Body {
  std::string name, value;
  std::optional<std::map<std::string, std::string>> metadata;
};

Result<Body> parse_body(const std::string& raw, bool create) {
  auto j = json::parse(raw.empty() ? "{}" : raw, nullptr, false);
  if (!j.is_object()) return bad("the body must be a JSON object");
  Body b;
  if (create) {
    if (!j.contains("name") || !j["name"].is_string()) return bad("name is required (a string)");
    b.name = j["name"];
  }
  if (!j.contains("value") || !j["value"].is_string()) return bad("value is required (a string)");
  b.value = j["value"];
  if (auto it = j.find("metadata"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return bad("metadata must be an object of strings");
    b.metadata.emplace();
    for (auto& [k, v] : it->items()) {
      if (!v.is_string()) return bad("metadata values must be strings");
      (*b.metadata)[k] = v.get<std::string>();
    }
  }
  return b;
}

}  // namespace

Route secrets(const Context& ctx, const Request& head, const std::vector<std::string>& parts) {
  auto& store = ctx.core.secrets();
  const std::string& method = head.method;
  if (parts.size() == 1 && method == "GET")
    return respond([&store](Request& req) {
      auto q = parse_page(req, kDefaultPage);
      if (!q) return fail(q.error(), "list secrets");
      auto page = store.list(q->offset, q->limit);
      json out = json::array();
      for (auto& s : page.rows) out.push_back(secret_json(s));
      Response res = answer(200, out);
      if (page.next_offset) res.headers.emplace_back("X-Next-Token", std::to_string(*page.next_offset));
      res.headers.emplace_back("Access-Control-Expose-Headers", "X-Next-Token");
      return res;
    });
  if (parts.size() == 1 && method == "POST")
    return respond([&store](Request& req) {
      auto body = parse_body(req.body, true);
      if (!body) return fail(body.error(), "create secret");
      auto s = store.create(body->name, body->value, body->metadata.value_or(std::map<std::string, std::string>{}));
      if (!s) return fail(s.error(), "create secret");
      return answer(201, secret_json(*s));
    });
  if (parts.size() == 2) {
    const std::string id = parts[1];
    if (method == "GET")
      return respond([&store, id](Request&) {
        auto s = store.get(id);
        if (!s) return fail(s.error(), "get secret");
        return answer(200, secret_json(*s));
      });
    if (method == "POST")
      return respond([&store, id](Request& req) {
        auto body = parse_body(req.body, false);
        if (!body) return fail(body.error(), "update secret");
        auto s = store.update(id, body->value, body->metadata);
        if (!s) return fail(s.error(), "update secret");
        return answer(200, secret_json(*s));
      });
    if (method == "DELETE")
      return respond([&store, id](Request&) {
        if (auto r = store.remove(id); !r) return fail(r.error(), "delete secret");
        return no_store(Response::empty(204));
      });
  }
  return respond([](Request& req) { return Response::error(404, "no route for " + req.method + " " + req.path.substr(0, 128)); });
}

}  // namespace brig::server::rest
