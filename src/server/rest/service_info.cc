// /health, /metrics (Prometheus text) and /openapi.json: what the daemon says about itself.
#include "mcp/code_mode.h"
#include "server/rest/rest.h"

namespace brig::server::rest {

std::optional<Route> service_info(const Context& ctx, const Request& head) {
  Route r;
  if (head.path == "/openapi.json" && head.method == "GET") {
    r.respond = [](Request&) { return Response::json(200, mcp::code_mode::openapi_text()); };
    return r;
  }
  if (head.path == "/health") {
    r.respond = [](Request&) { return Response::json(200, "{\"status\":\"ok\"}"); };
    return r;
  }
  if (head.path != "/metrics" || head.method != "GET") return std::nullopt;
  r.respond = [&core = ctx.core](Request&) {
    core::Counters c = core.counters();
    std::string out;
    out += "# TYPE brig_sandboxes gauge\nbrig_sandboxes{state=\"running\"} " + std::to_string(c.running) + "\n";
    out += "brig_sandboxes{state=\"pooled\"} " + std::to_string(c.pooled) + "\n";
    out += "# TYPE brig_sandbox_creates_total counter\nbrig_sandbox_creates_total " + std::to_string(c.creates) + "\n";
    out += "brig_sandbox_create_errors_total " + std::to_string(c.create_errors) + "\n";
    out += "# TYPE brig_execs_total counter\nbrig_execs_total " + std::to_string(c.execs) + "\n";
    out += "# TYPE brig_stream_bytes_total counter\nbrig_stream_bytes_total " + std::to_string(c.bytes_streamed) + "\n";
    out += "# TYPE brig_sandbox_create_duration_ms histogram\n";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < c.create_ms_buckets.size(); ++i) {
      cumulative += c.create_ms_counts[i];
      out += "brig_sandbox_create_duration_ms_bucket{le=\"" + std::to_string(static_cast<int>(c.create_ms_buckets[i])) +
             "\"} " + std::to_string(cumulative) + "\n";
    }
    cumulative += c.create_ms_counts.back();
    out += "brig_sandbox_create_duration_ms_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
    out += "brig_sandbox_create_duration_ms_sum " + std::to_string(c.create_ms_sum) + "\n";
    out += "brig_sandbox_create_duration_ms_count " + std::to_string(cumulative) + "\n";
    out += "# TYPE brig_http_errors_total counter\n";
    for (auto& [route, n] : c.errors_by_route) {
      std::string label;
      for (char ch : route) label += (ch == '"' || ch == '\\') ? '_' : ch;
      out += "brig_http_errors_total{route=\"" + label + "\"} " + std::to_string(n) + "\n";
    }
    Response res;
    res.headers.emplace_back("Content-Type", "text/plain; version=0.0.4");
    res.body = std::move(out);
    return res;
  };
  return r;
}

}  // namespace brig::server::rest
