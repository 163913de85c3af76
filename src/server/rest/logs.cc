// GET /sandboxes/{id}/logs and /v2/sandboxes/{id}/logs (e2b-next.md 2.6): a sandbox's log
// (core/sandbox_log.h), live or recently ended.
//   v1: ?start=<unix ms>&limit=N -> {"logs":[{timestamp, line}], "logEntries":[{timestamp,
//       level, message, fields}]}, oldest first, from `start`.
//   v2: ?cursor=<unix ms>&limit=N&direction=forward|backward&level=&search= -> {"logs":
//       [{timestamp, level, message, fields}]}; backward is newest first, from `cursor`; `level`
//       is the least level shown; `search` a case-insensitive part of the message.
#include <nlohmann/json.hpp>

#include "base/util.h"
#include "server/rest/rest.h"

namespace brig::server::rest {
namespace {

using json = nlohmann::json;

Result<std::optional<int64_t>> parse_ms(const Request& req, const char* name) {
  if (!req.has_param(name)) return std::optional<int64_t>();
  std::string v = req.param(name);
  if (v.empty() || v.size() > 15 || v.find_first_not_of("0123456789") != std::string::npos)
    return bad(std::string(name) + " must be a time in unix milliseconds");
  return std::optional<int64_t>(std::stoll(v));
}

json entry_json(const core::LogEntry& e) {
  return {{"timestamp", rfc3339(e.timestamp_ms)}, {"level", core::level_name(e.level)}, {"message", e.message},
          {"fields", e.fields}};
}

Result<core::LogQuery> parse_query(const Request& req, bool v2) {
  core::LogQuery q;
  BRIG_TRY_ASSIGN(page, parse_page(req, core::kMaxLogQueryLimit));
  q.limit = page.limit;
  BRIG_TRY_ASSIGN(cursor, parse_ms(req, v2 ? "cursor" : "start"));
  q.cursor_ms = cursor;
  if (!v2) return q;
  if (std::string d = req.param("direction"); !d.empty()) {
    if (d != "forward" && d != "backward") return bad("direction must be forward or backward");
    q.forward = d == "forward";
  }
  if (std::string l = req.param("level"); !l.empty()) {
    BRIG_TRY_ASSIGN(level, core::parse_level(l));
    q.min_level = level;
  }
  q.search = req.param("search");
  if (q.search.size() > core::kMaxLogSearchBytes)
    return bad("search is longer than " + std::to_string(core::kMaxLogSearchBytes) + " bytes");
  return q;
}

}  // namespace

Route sandbox_logs(const Context& ctx, const std::string& id, bool v2) {
  return respond([ctx, id, v2](Request& req) {
    auto q = parse_query(req, v2);
    if (!q) return error(q.error(), "sandbox logs");
    auto entries = ctx.core.logs(id, *q);
    if (!entries) return error(entries.error(), "sandbox logs");
    json logs = json::array();
    if (v2) {
      for (const auto& e : *entries) logs.push_back(entry_json(e));
      return Response::json(200, dump({{"logs", logs}}));
    }
    json structured = json::array();
    for (const auto& e : *entries) {
      json line = e.fields;
      line["level"] = core::level_name(e.level);
      line["message"] = e.message;
      logs.push_back({{"timestamp", rfc3339(e.timestamp_ms)}, {"line", dump(line)}});
      structured.push_back(entry_json(e));
    }
    return Response::json(200, dump({{"logs", logs}, {"logEntries", structured}}));
  });
}

}  // namespace brig::server::rest
