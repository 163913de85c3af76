#include "egress/control.h"

#include <nlohmann/json.hpp>

#include "base/util.h"

namespace brig::egress {

using json = nlohmann::json;

namespace {

Error bad(std::string why) { return Error::make(errc::protocol, "control message: " + why); }

Result<json> parse_line(std::string_view line) {
  if (line.size() > kMaxControlLine) return bad("longer than 1 MiB");
  if (!json_depth_within(line, 8)) return bad("nested too deep");
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  if (!j.contains("op") || !j["op"].is_string()) return bad("no \"op\"");
  return j;
}

Result<std::string> str(const json& j, const char* key, bool required = true) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return bad(std::string("no \"") + key + "\"");
    return std::string();
  }
  if (!it->is_string()) return bad(std::string("\"") + key + "\" is not a string");
  return it->get<std::string>();
}

Result<std::vector<std::string>> strings(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) return bad(std::string("\"") + key + "\" is not an array");
  for (const auto& e : *it) {
    if (!e.is_string()) return bad(std::string("\"") + key + "\" holds a non-string");
    out.push_back(e.get<std::string>());
  }
  return out;
}

// "rules": [{"domain", "headers": [[name, value], ...], "broken"}]; bounds as E2B's (checked by
// the daemon before it sends them): a wrong shape is a protocol error.
Result<std::vector<HeaderRule>> header_rules(const json& j) {
  std::vector<HeaderRule> out;
  auto it = j.find("rules");
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array() || it->size() > 256) return bad("\"rules\" is not an array of at most 256");
  for (const auto& r : *it) {
    if (!r.is_object()) return bad("a rule is not an object");
    HeaderRule rule;
    BRIG_TRY_ASSIGN(domain, str(r, "domain"));
    BRIG_TRY_ASSIGN(broken, str(r, "broken", false));
    rule.domain = std::move(domain);
    rule.broken = std::move(broken);
    auto h = r.find("headers");
    if (h == r.end() || !h->is_array() || h->size() > 64) return bad("a rule's \"headers\" is not an array of at most 64");
    for (const auto& pair : *h) {
      if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() || !pair[1].is_string())
        return bad("a rule's header is not [name, value]");
      rule.headers.emplace_back(pair[0].get<std::string>(), pair[1].get<std::string>());
    }
    out.push_back(std::move(rule));
  }
  return out;
}

uint64_t id_of(const json& j) {
  auto it = j.find("id");
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

}  // namespace

std::string encode_request(const ControlRequest& r) {
  json j;
  if (const auto* s = std::get_if<SetPolicy>(&r.op)) {
    j = {{"op", "set"}, {"source", s->source}, {"sandbox", s->sandbox}, {"allowOut", s->allow_out},
         {"denyOut", s->deny_out}};
    if (!s->rules.empty()) {
      json rules = json::array();
      for (const auto& r : s->rules) rules.push_back({{"domain", r.domain}, {"headers", r.headers}, {"broken", r.broken}});
      j["rules"] = std::move(rules);
    }
  } else {
    j = {{"op", "remove"}, {"source", std::get<RemovePolicy>(r.op).source}};
  }
  if (r.id) j["id"] = r.id;
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<ControlRequest> parse_request(std::string_view line) {
  BRIG_TRY_ASSIGN(j, parse_line(line));
  ControlRequest r;
  r.id = id_of(j);
  std::string op = j["op"].get<std::string>();
  if (op == "set") {
    SetPolicy s;
    BRIG_TRY_ASSIGN(source, str(j, "source"));
    BRIG_TRY_ASSIGN(sandbox, str(j, "sandbox"));
    BRIG_TRY_ASSIGN(allow, strings(j, "allowOut"));
    BRIG_TRY_ASSIGN(deny, strings(j, "denyOut"));
    s.source = std::move(source);
    s.sandbox = std::move(sandbox);
    s.allow_out = std::move(allow);
    s.deny_out = std::move(deny);
    BRIG_TRY_ASSIGN(rules, header_rules(j));
    s.rules = std::move(rules);
    r.op = std::move(s);
  } else if (op == "remove") {
    BRIG_TRY_ASSIGN(source, str(j, "source"));
    r.op = RemovePolicy{std::move(source)};
  } else {
    return bad("unknown op \"" + op.substr(0, 32) + "\"");
  }
  return r;
}

uint64_t request_id(std::string_view line) {
  auto j = parse_line(line);
  return j ? id_of(*j) : 0;
}

std::string encode_event(const ControlEvent& e) {
  json j;
  if (const auto* r = std::get_if<Ready>(&e)) {
    j = {{"op", "ready"}, {"listen", r->listen}, {"dns", r->dns}};
  } else if (const auto* a = std::get_if<Ack>(&e)) {
    j = a->error.empty() ? json{{"op", "ack"}, {"id", a->id}}
                         : json{{"op", "error"}, {"id", a->id}, {"message", a->error}};
  } else if (const auto* d = std::get_if<Decision>(&e)) {
    j = {{"op", "decision"}, {"sandbox", d->sandbox}, {"source", d->source}, {"kind", d->kind},
         {"protocol", d->protocol}, {"name", d->name}, {"dest", d->dest},
         {"verdict", d->allow ? "allow" : "deny"}, {"reason", d->reason}, {"time_ms", d->time_ms}};
  } else {
    j = {{"op", "dropped"}, {"count", std::get<Dropped>(e).count}};
  }
  // Names come from hostile bytes only after normalization, but never let one break the line.
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<ControlEvent> parse_event(std::string_view line) {
  BRIG_TRY_ASSIGN(j, parse_line(line));
  std::string op = j["op"].get<std::string>();
  if (op == "ready") {
    BRIG_TRY_ASSIGN(listen, str(j, "listen", false));
    BRIG_TRY_ASSIGN(dns, str(j, "dns", false));
    return ControlEvent(Ready{std::move(listen), std::move(dns)});
  }
  if (op == "ack") return ControlEvent(Ack{id_of(j), {}});
  if (op == "error") {
    BRIG_TRY_ASSIGN(message, str(j, "message"));
    return ControlEvent(Ack{id_of(j), message.empty() ? "error" : message});
  }
  if (op == "dropped") {
    auto it = j.find("count");
    return ControlEvent(Dropped{it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0});
  }
  if (op == "decision") {
    Decision d;
    BRIG_TRY_ASSIGN(sandbox, str(j, "sandbox", false));
    BRIG_TRY_ASSIGN(source, str(j, "source", false));
    BRIG_TRY_ASSIGN(kind, str(j, "kind"));
    BRIG_TRY_ASSIGN(protocol, str(j, "protocol", false));
    BRIG_TRY_ASSIGN(name, str(j, "name", false));
    BRIG_TRY_ASSIGN(dest, str(j, "dest", false));
    BRIG_TRY_ASSIGN(verdict, str(j, "verdict"));
    BRIG_TRY_ASSIGN(reason, str(j, "reason", false));
    if (verdict != "allow" && verdict != "deny") return bad("verdict is neither allow nor deny");
    d.sandbox = std::move(sandbox);
    d.source = std::move(source);
    d.kind = std::move(kind);
    d.protocol = std::move(protocol);
    d.name = std::move(name);
    d.dest = std::move(dest);
    d.allow = verdict == "allow";
    d.reason = std::move(reason);
    auto t = j.find("time_ms");
    d.time_ms = t != j.end() && t->is_number_integer() ? t->get<int64_t>() : 0;
    return ControlEvent(std::move(d));
  }
  return bad("unknown op \"" + op.substr(0, 32) + "\"");
}

}  // namespace brig::egress
