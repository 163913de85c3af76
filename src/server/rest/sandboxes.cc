// /sandboxes: create, list, get, kill, timeout and refreshes, connect, pause, metrics.
#include <boost/url/decode_view.hpp>
#include <boost/url/pct_string_view.hpp>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>

#include "base/util.h"
#include "server/rest/rest.h"

namespace brig::server::rest {
namespace {

using nlohmann::json;
constexpr size_t kMaxMetricsIds = 100;  // sandbox_ids per /sandboxes/metrics request (E2B's bound)


// What create and connect return (E2B's Sandbox).
json sandbox_json(const Context& ctx, const core::Live& l) {
  return json{{"sandboxID", l.id},      {"templateID", l.tpl.id},        {"alias", l.tpl.name},
              {"clientID", "brig"},     {"envdVersion", kEnvdVersion},   {"envdAccessToken", l.access_token},
              {"trafficAccessToken", l.traffic_token()}, {"domain", ctx.domain.empty() ? json(nullptr) : json(ctx.domain)}};
}

// E2B's SandboxNetworkConfig: the ingress rules, then the egress lists (empty ones left out).
json network_json(core::Live& l) {
  json out = {{"allowPublicTraffic", l.ingress.allow_public_traffic}};
  if (!l.ingress.mask_request_host.empty()) out["maskRequestHost"] = l.ingress.mask_request_host;
  if (!l.ingress.https_ports.empty()) out["httpsPorts"] = l.ingress.https_ports;
  std::lock_guard lock(l.mu);
  if (auto egress = core::network_json(l.network); !egress.is_null()) out.update(egress);
  return out;
}

// What get and list return (E2B's SandboxDetail / ListedSandbox).
json detail_json(const Context& ctx, const sandbox::SandboxInfo& s) {
  json out = {{"sandboxID", s.id},
          {"templateID", ctx.core.template_id(s.template_name)},
          {"alias", s.template_name},
          {"clientID", "brig"},
          {"startedAt", rfc3339(s.started_at_ms)},
          {"endAt", rfc3339(s.end_at_ms)},
          {"state", s.state == "paused" ? "paused" : "running"},
          {"cpuCount", std::max<uint32_t>(1, s.cpu_millis / 1000)},
          {"memoryMB", s.memory_bytes >> 20},
          {"diskSizeMB", s.disk_bytes >> 20},
          {"envdVersion", kEnvdVersion},
          {"metadata", s.metadata},
          {"domain", ctx.domain.empty() ? json(nullptr) : json(ctx.domain)}};
  if (auto l = ctx.core.live(s.id)) {
    out["network"] = network_json(*l);
    std::lock_guard lock(l->mu);
    out["allowInternetAccess"] = l->network.allow_internet_access;
  }
  return out;
}

json metric_json(const core::Metric& m) {
  return {{"timestamp", rfc3339(m.timestamp_ms)}, {"timestampUnix", m.timestamp_ms / 1000}, {"cpuCount", m.cpu_count},
          {"cpuUsedPct", m.cpu_used_pct},         {"memUsed", m.mem_used},                  {"memTotal", m.mem_total},
          {"memCache", m.mem_cache},              {"diskUsed", m.disk_used},                {"diskTotal", m.disk_total}};
}

// The E2B `metadata` list filter: decoded once by the URL parser already; then the whole
// string, then each key and value (upstream's three layers).
std::map<std::string, std::string> parse_metadata_filter(const std::string& raw) {
  std::map<std::string, std::string> out;
  auto decode = [](std::string_view s) {
    auto pct = boost::urls::make_pct_string_view(s);
    if (!pct) return std::string(s);  // not valid percent-encoding: take it literally
    boost::urls::decode_view dv = **pct;
    return std::string(dv.begin(), dv.end());
  };
  std::string whole = decode(raw);
  for (auto& pair : split(whole, '&')) {
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    out[decode(pair.substr(0, eq))] = eq == std::string::npos ? "" : decode(pair.substr(eq + 1));
  }
  return out;
}

// E2B's network lists: absent or null is empty; otherwise an array of strings (each checked by
// the core). The body cap (limits.request_body_bytes) bounds their size.
Result<std::vector<std::string>> parse_list_field(const json& network, const char* field) {
  std::vector<std::string> out;
  auto it = network.find(field);
  if (it == network.end() || it->is_null()) return out;
  if (!it->is_array()) return bad(std::string("network.") + field + " must be an array of strings");
  for (auto& e : *it) {
    if (!e.is_string()) return bad(std::string("network.") + field + " must be an array of strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

// E2B's network.rules: {domain: [{"transform": {"headers": {name: value}}}]}, at most one rule
// per domain, domains lower-cased (the core checks the rest).
Result<core::HeaderRules> parse_rules(const json& network) {
  core::HeaderRules out;
  auto it = network.find("rules");
  if (it == network.end() || it->is_null()) return out;
  if (!it->is_object()) return bad("network.rules must be an object of domain: [rule]");
  for (const auto& [key, list] : it->items()) {
    std::string domain = key;
    for (char& c : domain) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!list.is_array()) return bad("network.rules[" + key.substr(0, 64) + "] must be an array of rules");
    if (list.size() > 1) return bad("network.rules[" + key.substr(0, 64) + "] holds " + std::to_string(list.size()) +
                                    " rules; at most 1 transform per domain");
    if (out.count(domain)) return bad("network.rules names " + domain.substr(0, 64) + " twice");
    auto& headers = out[domain];
    for (const auto& rule : list) {
      if (!rule.is_object()) return bad("network.rules[" + key.substr(0, 64) + "] holds a rule that is not an object");
      auto t = rule.find("transform");
      if (t == rule.end() || t->is_null()) continue;
      auto h = t->is_object() ? t->find("headers") : t->end();
      if (!t->is_object() || (h != t->end() && !h->is_null() && !h->is_object()))
        return bad("network.rules[" + key.substr(0, 64) + "]: transform must be {\"headers\": {name: value}}");
      if (h == t->end() || h->is_null()) continue;
      for (const auto& [name, value] : h->items()) {
        if (!value.is_string()) return bad("network.rules[" + key.substr(0, 64) + "]: header values are strings");
        headers.emplace_back(name, value.get<std::string>());
      }
    }
  }
  return out;
}

// The egress part of E2B's SandboxNetworkConfig (create) or SandboxNetworkUpdateConfig (PUT).
// An upstream SOCKS proxy is refused rather than ignored. The ingress fields
// (allowPublicTraffic, maskRequestHost, httpsPorts) are parse_ingress's.
Result<core::NetworkConfig> parse_network(const json& network) {
  if (!network.is_object()) return bad("network must be an object");
  if (auto it = network.find("egressProxy"); it != network.end() && !it->is_null())
    return bad("network.egressProxy is not supported by brig");
  core::NetworkConfig c;
  BRIG_TRY_ASSIGN(allow, parse_list_field(network, "allowOut"));
  BRIG_TRY_ASSIGN(deny, parse_list_field(network, "denyOut"));
  c.allow_out = std::move(allow);
  c.deny_out = std::move(deny);
  BRIG_TRY_ASSIGN(rules, parse_rules(network));
  c.rules = std::move(rules);
  return c;
}

// The ingress part of E2B's SandboxNetworkConfig (create only: fixed for the sandbox's life).
Result<core::Ingress> parse_ingress(const json& net) {
  core::Ingress ingress;
  if (net.contains("allowPublicTraffic") && !net["allowPublicTraffic"].is_null()) {
    if (!net["allowPublicTraffic"].is_boolean()) return bad("network.allowPublicTraffic must be a boolean");
    ingress.allow_public_traffic = net["allowPublicTraffic"].get<bool>();
  }
  if (net.contains("maskRequestHost") && !net["maskRequestHost"].is_null()) {
    if (!net["maskRequestHost"].is_string()) return bad("network.maskRequestHost must be a string");
    ingress.mask_request_host = net["maskRequestHost"].get<std::string>();
  }
  if (auto it = net.find("httpsPorts"); it != net.end() && !it->is_null()) {
    if (!it->is_array()) return bad("network.httpsPorts must be an array of ports");
    for (const json& p : *it) {
      if (!p.is_number_integer() || p.get<int64_t>() < 1 || p.get<int64_t>() > 65535)
        return bad("network.httpsPorts must be an array of ports (1 to 65535)");
      ingress.https_ports.push_back(static_cast<uint16_t>(p.get<int64_t>()));
    }
    std::sort(ingress.https_ports.begin(), ingress.https_ports.end());
    ingress.https_ports.erase(std::unique(ingress.https_ports.begin(), ingress.https_ports.end()),
                              ingress.https_ports.end());
  }
  return ingress;
}

Result<std::optional<bool>> parse_internet_access(const json& body) {
  auto it = body.find("allow_internet_access");
  if (it == body.end() || it->is_null()) return std::optional<bool>();
  if (!it->is_boolean()) return bad("allow_internet_access must be a boolean");
  return std::optional<bool>(it->get<bool>());
}

Result<core::CreateSandbox> parse_create(const std::string& raw) {
  auto body = json::parse(raw.empty() ? "{}" : raw, nullptr, false);
  if (!body.is_object()) return bad("the body must be a JSON object");
  core::CreateSandbox cmd;
  if (body.contains("templateID") && body["templateID"].is_string()) cmd.template_ref = body["templateID"];
  if (body.contains("timeout")) {
    if (!body["timeout"].is_number_integer()) return bad("timeout must be an integer (seconds)");
    // Its bounds are the core's (sandbox.max_lifetime_s); a huge number is refused here.
    int64_t t = body["timeout"].get<int64_t>();
    if (t < 1 || t > int64_t{config::bounds::sandbox_max_lifetime_s.max}) return bad("timeout must be between 1 and " + std::to_string(config::bounds::sandbox_max_lifetime_s.max) + " seconds");
    cmd.timeout = std::chrono::seconds(t);
  }
  for (auto [field, target] : {std::pair{"metadata", &cmd.metadata}, std::pair{"envVars", &cmd.env}}) {
    if (!body.contains(field) || body[field].is_null()) continue;
    if (!body[field].is_object()) return bad(std::string(field) + " must be an object of strings");
    for (auto& [k, v] : body[field].items()) {
      if (!v.is_string()) return bad(std::string(field) + " values must be strings");
      (*target)[k] = v.get<std::string>();
    }
  }
  // E2B's lifecycle fields (the SDK's lifecycle: {onTimeout, autoResume}). What a timeout does is
  // never silently changed: a pause on timeout and a resume by traffic are not built yet, so a
  // create that asks for them is refused rather than killed at its timeout.
  auto flag = [&](const char* name) -> Result<std::optional<bool>> {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) return std::optional<bool>();
    if (!it->is_boolean()) return bad(std::string(name) + " must be a boolean");
    return std::optional<bool>(it->get<bool>());
  };
  BRIG_TRY_ASSIGN(auto_pause, flag("autoPause"));
  BRIG_TRY_ASSIGN(auto_pause_memory, flag("autoPauseMemory"));
  if (auto_pause_memory == false && auto_pause != true)
    return bad("autoPauseMemory=false only applies when autoPause is true");
  bool auto_resume = false;
  if (auto it = body.find("autoResume"); it != body.end() && !it->is_null()) {
    if (!it->is_object() || (it->contains("enabled") && !(*it)["enabled"].is_boolean()))
      return bad("autoResume must be an object {enabled: boolean}");
    auto_resume = it->value("enabled", false);
  }
  if (auto_pause == true || auto_resume)
    return Error::make(errc::unsupported, "lifecycle onTimeout: 'pause' (autoPause) and autoResume are not built in brig "
                                          "yet; create the sandbox without them, and pause it with sbx.pause() "
                                          "(memory kept, or keepMemory: false for its disk only)");
  BRIG_TRY_ASSIGN(internet, parse_internet_access(body));
  cmd.allow_internet_access = internet;
  if (auto it = body.find("network"); it != body.end() && !it->is_null()) {
    BRIG_TRY_ASSIGN(network, parse_network(*it));
    cmd.network = std::move(network);
    BRIG_TRY_ASSIGN(ingress, parse_ingress(*it));
    cmd.ingress = std::move(ingress);
  }
  return cmd;
}

// PUT /sandboxes/{id}/network: the whole configuration; what is omitted is cleared.
Result<core::NetworkConfig> parse_network_update(const std::string& raw) {
  auto body = json::parse(raw.empty() ? "{}" : raw, nullptr, false);
  if (!body.is_object()) return bad("the body must be a JSON object");
  BRIG_TRY_ASSIGN(network, parse_network(body));
  BRIG_TRY_ASSIGN(internet, parse_internet_access(body));
  network.allow_internet_access = internet.value_or(true);
  return network;
}

Result<core::ListSandboxes> parse_list(const Request& req) {
  core::ListSandboxes q;
  q.metadata = parse_metadata_filter(req.param("metadata"));
  q.template_name = req.param("template");
  if (std::string sa = req.param("startedAfter"); !sa.empty()) {
    struct tm tm = {};
    if (!strptime(sa.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return bad("startedAfter must be an RFC 3339 time");
    q.started_after_ms = static_cast<int64_t>(timegm(&tm)) * 1000;
  }
  BRIG_TRY_ASSIGN(page, parse_page(req, q.limit));
  q.limit = page.limit;
  q.offset = page.offset;
  q.ascending = req.param("order") == "asc";
  return q;
}

// `field` of a JSON body, in seconds (the core checks it against sandbox.max_lifetime_s);
// nullopt when absent and there is no default.
Result<std::optional<std::chrono::seconds>> parse_seconds(const Request& req, const char* field, std::optional<int64_t> dflt,
                                                         bool required) {
  auto body = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
  if (!body.is_object()) return bad("the body must be a JSON object");
  if (!body.contains(field) || body[field].is_null()) {
    if (dflt) return std::optional(std::chrono::seconds(*dflt));
    if (!required) return std::optional<std::chrono::seconds>();
    return bad(std::string(field) + " is required");
  }
  if (!body[field].is_number_integer()) return bad(std::string(field) + " must be an integer");
  int64_t v = body[field].get<int64_t>();
  if (v < 1 || v > int64_t{config::bounds::sandbox_max_lifetime_s.max})
    return bad(std::string(field) + " must be between 1 and " + std::to_string(config::bounds::sandbox_max_lifetime_s.max));
  return std::optional(std::chrono::seconds(v));
}

// The optional "memory" of a pause, resume or connect body (E2B: absent or true = keep it).
Result<bool> parse_memory(const Request& req) {
  auto body = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
  if (!body.is_object()) return bad("the body must be a JSON object");
  auto it = body.find("memory");
  if (it == body.end() || it->is_null()) return true;
  if (!it->is_boolean()) return bad("memory must be a boolean");
  return it->get<bool>();
}

}  // namespace

Route sandboxes(const Context& ctx, const Request& head, const std::vector<std::string>& parts) {
  const std::string& method = head.method;
  auto& core = ctx.core;
  if (parts.size() == 1 && method == "POST")
    return respond([ctx](Request& req) {
      auto cmd = parse_create(req.body);
      if (!cmd) return error(cmd.error(), "create sandbox");
      auto l = ctx.core.create(*cmd);
      if (!l) return error(l.error(), "create sandbox");
      return Response::json(201, dump(sandbox_json(ctx, **l)));
    });
  if (parts.size() == 1 && method == "GET")
    return respond([ctx](Request& req) {
      auto q = parse_list(req);
      if (!q) return error(q.error(), "list sandboxes");
      if (std::string state = req.param("state"); !state.empty()) {
        q->running = q->paused = false;
        for (auto& s : split(state, ',')) {
          if (s != "running" && s != "paused") return Response::error(400, "state must be running and/or paused");
          (s == "running" ? q->running : q->paused) = true;
        }
      }
      auto page = ctx.core.list(*q);
      json out = json::array();
      for (auto& s : page.rows) out.push_back(detail_json(ctx, s));
      Response res = Response::json(200, dump(out));
      if (page.next_offset) res.headers.emplace_back("X-Next-Token", std::to_string(*page.next_offset));
      res.headers.emplace_back("Access-Control-Expose-Headers", "X-Next-Token");
      return res;
    });
  // GET /sandboxes/metrics?sandbox_ids=a,b: the latest metric of each (at most 100) live sandbox.
  if (parts.size() == 2 && parts[1] == "metrics" && method == "GET")
    return respond([&core](Request& req) {
      auto ids = split(req.param("sandbox_ids"), ',');
      std::erase(ids, "");
      if (ids.empty()) return Response::error(400, "sandbox_ids is required (comma-separated sandbox ids)");
      if (ids.size() > kMaxMetricsIds) return Response::error(400, "at most 100 sandbox_ids per request");
      json out = json::object();
      for (auto& id : ids)
        if (auto l = core.live(id)) out[id] = metric_json(core.metric(*l));
      return Response::json(200, dump({{"sandboxes", out}}));
    });
  auto no_route = [](Request& req) { return Response::error(404, "no route for " + req.method + " " + req.path.substr(0, 128)); };
  if (parts.size() == 1) return respond(no_route);
  const std::string id = parts[1];
  const std::string action = parts.size() >= 3 ? parts[2] : "";
  auto not_found = [id] { return Response::error(404, "sandbox '" + id.substr(0, 64) + "' not found"); };
  if (parts.size() > 3 || !is_valid_sandbox_id(id)) return respond([not_found](Request&) { return not_found(); });
  if (action.empty() && method == "GET")
    return respond([ctx, id](Request&) {
      auto info = ctx.core.info(id);
      if (!info) return error(info.error(), "get sandbox");
      auto j = detail_json(ctx, *info);
      if (auto l = ctx.core.live(id)) j["envdAccessToken"] = l->access_token;
      j["domain"] = ctx.domain.empty() ? json(nullptr) : json(ctx.domain);
      j["lifecycle"] = {{"onTimeout", "kill"}, {"autoResume", false}};
      return Response::json(200, dump(j));
    });
  if (action.empty() && method == "DELETE")
    return respond([&core, id](Request&) {
      if (auto k = core.kill(id); !k) return error(k.error(), "kill sandbox");
      return Response::empty(204);
    });
  if ((action == "timeout" || action == "refreshes") && method == "POST")
    return respond([&core, id, action](Request& req) {
      if (auto l = core.find(id); !l) return error(l.error(), "set timeout");
      auto secs = parse_seconds(req, action == "timeout" ? "timeout" : "duration",
                                action == "refreshes" ? std::optional<int64_t>(60) : std::nullopt, true);
      if (!secs) return error(secs.error(), "set timeout");
      if (auto set = core.set_timeout(id, **secs); !set) return error(set.error(), "set timeout");
      return Response::empty(204);
    });
  if (action == "connect" && method == "POST")
    return respond([ctx, id](Request& req) {
      if (auto l = ctx.core.find(id); !l) return error(l.error(), "connect");
      auto secs = parse_seconds(req, "timeout", std::nullopt, false);
      if (!secs) return error(secs.error(), "connect");
      // memory: false (onResume: 'reboot'): a paused sandbox boots again on its disk.
      auto memory = parse_memory(req);
      if (!memory) return error(memory.error(), "connect");
      auto c = ctx.core.connect(id, *secs, *memory);
      if (!c) return error(c.error(), "connect");
      return Response::json(c->resumed ? 201 : 200, dump(sandbox_json(ctx, *c->live)));
    });
  if (action == "logs" && method == "GET") return sandbox_logs(ctx, id, head.path.starts_with("/v2/"));
  if (action == "network" && method == "PUT")
    return respond([&core, id](Request& req) {
      if (auto l = core.find(id); !l) return error(l.error(), "update network");
      auto network = parse_network_update(req.body);
      if (!network) return error(network.error(), "update network");
      if (auto r = core.update_network(id, *network); !r) return error(r.error(), "update network");
      return Response::empty(204);
    });
  if (action == "pause" && method == "POST")
    return respond([&core, id](Request& req) {
      if (auto l = core.find(id); !l) return error(l.error(), "pause");
      auto memory = parse_memory(req);
      if (!memory) return error(memory.error(), "pause");
      if (auto r = core.pause(id, *memory); !r) return error(r.error(), "pause");
      return Response::empty(204);
    });
  // E2B's ResumedSandbox {timeout?, autoPause?, memory?}: 201 and the Sandbox. Without a
  // timeout the sandbox gets the lifetime it had left when it was paused.
  if (action == "resume" && method == "POST")
    return respond([ctx, id](Request& req) {
      if (auto l = ctx.core.find(id); !l) return error(l.error(), "resume");
      auto secs = parse_seconds(req, "timeout", std::nullopt, false);
      if (!secs) return error(secs.error(), "resume");
      auto memory = parse_memory(req);
      if (!memory) return error(memory.error(), "resume");
      auto l = ctx.core.resume(id, *secs, *memory);
      if (!l) return error(l.error(), "resume");
      return Response::json(201, dump(sandbox_json(ctx, **l)));
    });
  if (action == "metrics" && method == "GET")
    return respond([&core, id](Request&) {
      auto l = core.find(id);
      if (!l) return error(l.error(), "metrics");
      return Response::json(200, dump(json::array({metric_json(core.metric(**l))})));
    });
  return respond(no_route);
}

}  // namespace brig::server::rest
