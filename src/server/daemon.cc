#include "server/daemon.h"

#include <boost/url/decode_view.hpp>
#include <boost/url/pct_string_view.hpp>
#include <openssl/crypto.h>

#include <cmath>
#include <ctime>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/util.h"
#include "client/api_client.h"
#include "mcp/server.h"
#include "mcp/code_mode.h"
#include "server/code_interpreter.h"
#include "server/envd.h"
#include "store/builtin.h"

namespace brig::server {
namespace {

using nlohmann::json;
constexpr const char* kEnvdVersion = "0.6.13";
constexpr int kDefaultTimeoutS = 300;
constexpr int kMaxTimeoutS = 30 * 24 * 3600;
constexpr size_t kMaxMetricsIds = 100;   // sandbox_ids per /sandboxes/metrics request (E2B's bound)
constexpr int64_t kCpuWindowMs = 250;    // shortest interval a CPU percentage is measured over

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string rfc3339(int64_t ms) {
  std::time_t t = ms / 1000;
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Template defaults for a sandbox, and the shape the warm pool keys on.
sandbox::SandboxSpec spec_for(const store::TemplateStore& store, const store::TemplateInfo& t) {
  sandbox::SandboxSpec spec;
  spec.layers = store.layer_paths(t);
  spec.template_name = t.name;
  spec.env = t.config.env;
  spec.kernels = t.config.kernels;
  if (t.config.memory_bytes) spec.memory_bytes = t.config.memory_bytes;
  if (t.config.cpus > 0) spec.cpu_millis = static_cast<uint32_t>(t.config.cpus * 1000);
  spec.shm_bytes = std::min<uint64_t>(64ull << 20, spec.memory_bytes / 2);
  spec.persistent = true;  // survives a daemon restart; the next daemon re-adopts it
  return spec;
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

// The caller's API key: X-API-KEY (E2B clients), else Authorization: Bearer (everyone else).
std::string api_key_of(const Request& req) {
  std::string key = req.header("x-api-key");
  if (key.empty() && req.header("authorization").starts_with("Bearer ")) key = req.header("authorization").substr(7);
  return key;
}

// "name:port" or "[v6]:port" -> the name.
std::string host_name(const std::string& host_header) {
  if (host_header.starts_with("[")) return host_header.substr(1, host_header.find(']') - 1);
  return host_header.substr(0, host_header.find(':'));
}

bool loopback_host(const std::string& host_header) {
  std::string host = host_name(host_header);
  return host == "localhost" || host == "127.0.0.1" || host == "::1";
}

}  // namespace

Result<std::unique_ptr<Daemon>> Daemon::start(const DaemonOptions& options, sandbox::Engine& engine,
                                              store::TemplateStore& store, KeyStore& keys) {
  std::unique_ptr<Daemon> d(new Daemon(options, engine, store, keys));
  auto* self = d.get();
  // One handler per connection at most, so the pool never makes a request wait for another.
  d->loop_ = std::make_unique<EventLoop>(EventLoop::Options{.max_blocking_threads = options.http.max_connections});
  BRIG_TRY_ASSIGN(server, HttpServer::listen(
                              *d->loop_, options.http, [self](const Request& r) { return self->route(r); },
                              [self](const Request& r, int status, double ms) { self->log(r, status, ms); }));
  d->server_ = std::move(server);
  // Without --domain, getHost(port) gives <port>-<id>.localhost:<port>: names under localhost
  // are loopback (RFC 6761), so browsers and curl reach this daemon without any DNS.
  if (d->options_.domain.empty()) {
    const std::string& a = d->server_->address();
    d->options_.domain = "localhost" + a.substr(a.rfind(':'));
  }
  d->domain_name_ = host_name(d->options_.domain);
  BRIG_TRY_ASSIGN(state, DaemonState::open(engine.state_dir()));
  d->state_ = std::move(state);
  d->adopt();
  // Warm sandboxes for the templates already built, so creates are hand-overs.
  if (options.pool_size)
    if (auto all = store.list())
      for (auto& t : *all)
        if (store::builtin_templates().count(t.name)) engine.set_pool(spec_for(store, t), options.pool_size);
  d->reaper_ = std::thread([self] { self->reap_loop(); });
  return d;
}

Daemon::Daemon(DaemonOptions options, sandbox::Engine& engine, store::TemplateStore& store, KeyStore& keys)
    : options_(std::move(options)), engine_(engine), store_(store), keys_(keys) {}

Daemon::~Daemon() {
  stop();
  if (reaper_.joinable()) reaper_.join();
}

void Daemon::run() { server_->run(); }

void Daemon::stop() {
  if (stopping_.exchange(true)) return;
  if (server_) server_->stop(std::chrono::seconds(5));
}

void Daemon::log(const Request& req, int status, double ms) {
  // Never the key or token: method, path (no query: it may carry a signature), status, time.
  spdlog::info("request id={} {} {} status={} ms={:.1f} remote={}", req.request_id, req.method, req.path, status, ms,
               req.remote);
  if (status >= 400) {
    std::lock_guard lock(metrics_.mu);
    std::string key = req.method + " " + (req.path.size() > 64 ? req.path.substr(0, 64) : req.path);
    if (metrics_.errors_by_route.size() < 1000 || metrics_.errors_by_route.count(key)) ++metrics_.errors_by_route[key];
  }
}

void Daemon::reap_loop() {
  while (!stopping_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    std::vector<std::string> dead;
    {
      std::lock_guard lock(mu_);
      for (auto& [id, l] : live_)
        if (!l->sandbox->alive()) dead.push_back(id);
      for (auto& id : dead) live_.erase(id);
    }
    for (auto& id : dead) state_->forget(id);
    if (!dead.empty()) engine_.reap();
  }
}

void Daemon::adopt() {
  for (auto& id : engine_.adopt_orphans()) {
    auto sb = engine_.get(id);
    auto info = engine_.info(id);
    if (!sb || !info) continue;
    auto l = std::make_shared<Live>();
    l->sandbox = *sb;
    l->id = id;
    auto saved = state_->load(id);
    l->access_token = saved ? saved->first : new_sandbox_id() + new_sandbox_id();
    auto tpl = store_.find(saved ? saved->second : info->template_name);
    if (tpl && *tpl) l->tpl = **tpl;
    else l->tpl.name = info->template_name;
    l->env = l->tpl.config.env;
    add_live(l);
    spdlog::info("re-adopted sandbox {} ({})", id, l->tpl.name);
  }
}

void Daemon::add_live(std::shared_ptr<Live> l) {
  // The first CPU window starts when the daemon hands the sandbox out, not when it was made
  // (a pooled sandbox used CPU before: its kernel's start, for one).
  if (auto u = l->sandbox->usage()) l->cpu = {steady_ms(), u->cpu_usage_ns, 0};
  state_->save(l->id, l->access_token, l->tpl.name);
  std::lock_guard lock(mu_);
  live_[l->id] = std::move(l);
}

void Daemon::forget(const std::string& id) {
  {
    std::lock_guard lock(mu_);
    live_.erase(id);
  }
  state_->forget(id);
}

std::shared_ptr<Live> Daemon::live(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = live_.find(id);
  if (it == live_.end() || !it->second->sandbox->alive()) return nullptr;
  return it->second;
}

json Daemon::metric(Live& l) {
  auto info = engine_.info(l.id);
  auto u = l.sandbox->usage();
  int64_t now = now_unix_ms();
  uint32_t cpus = info ? std::max<uint32_t>(1, (info->cpu_millis + 999) / 1000) : 1;
  double capacity = info && info->cpu_millis ? info->cpu_millis / 1000.0 : 1.0;
  double pct = 0;
  if (u) {
    std::lock_guard lock(l.mu);
    auto& c = l.cpu;
    const int64_t at = steady_ms();
    if (u->cpu_usage_ns < c.used_ns) {
      c = {at, u->cpu_usage_ns, 0};  // a counter that went back (a new cgroup): start again
    } else if (at - c.at_ms >= kCpuWindowMs) {
      // Readings closer than kCpuWindowMs apart repeat the last figure rather than divide noise.
      double wall_ns = static_cast<double>(at - c.at_ms) * 1e6;
      c.pct = std::clamp(100.0 * static_cast<double>(u->cpu_usage_ns - c.used_ns) / (wall_ns * capacity), 0.0, 100.0);
      c.at_ms = at;
      c.used_ns = u->cpu_usage_ns;
    }
    pct = c.pct;
  }
  return {{"timestamp", rfc3339(now)},
          {"timestampUnix", now / 1000},
          {"cpuCount", cpus},
          {"cpuUsedPct", std::round(pct * 100) / 100},
          {"memUsed", u ? u->memory_bytes : 0},
          {"memTotal", info ? info->memory_bytes : 0},
          {"memCache", 0},
          {"diskUsed", 0},
          {"diskTotal", info ? info->disk_bytes : 0}};
}

Route Daemon::route(const Request& req) {
  // DNS rebinding: a loopback daemon answers only to loopback names (and its own domain).
  // Names compare without their ports.
  std::string host = req.header("host");
  auto in_domain = [this](const std::string& name) { return name == domain_name_ || name.ends_with("." + domain_name_); };
  bool host_ok = loopback_host(host) || in_domain(host_name(host));
  std::string origin = req.header("origin");
  bool origin_ok = true;
  if (!origin.empty()) {
    // The Origin's host must be loopback, the domain, or under it.
    auto scheme = origin.find("://");
    std::string ohost = scheme == std::string::npos ? "" : origin.substr(scheme + 3);
    origin_ok = loopback_host(ohost) || in_domain(host_name(ohost));
  }
  if (!host_ok || !origin_ok) {
    Route r;
    r.respond = [](Request&) { return Response::error(403, "forbidden Host or Origin"); };
    return r;
  }
  // Data plane: by headers, or by a <port>-<id>.<domain> Host.
  std::string sid = req.header("e2b-sandbox-id"), sport = req.header("e2b-sandbox-port");
  if (std::string name = host_name(host); sid.empty() && name.ends_with("." + domain_name_)) {
    std::string label = name.substr(0, name.find('.'));
    auto dash = label.find('-');
    if (dash != std::string::npos) {
      sport = label.substr(0, dash);
      sid = label.substr(dash + 1);
    }
  }
  if (!sid.empty() || !sport.empty()) {
    int port = sport.size() <= 5 && !sport.empty() && sport.find_first_not_of("0123456789") == std::string::npos
                   ? std::stoi(sport) : -1;
    return data_plane(req, sid, port);
  }
  return control_plane(req);
}

Route Daemon::data_plane(const Request& head, const std::string& id, int port) {
  Route r;
  auto bad_gateway = [id](const std::string& why) {
    return [id, why](Request&) {
      return Response::json(502, dump({{"sandboxId", id}, {"message", why}, {"code", 502}}));
    };
  };
  auto l = is_valid_sandbox_id(id) ? live(id) : nullptr;
  if (!l) {
    r.respond = bad_gateway("The sandbox was not found");
    return r;
  }
  if (port != 49983 && port != 49999) {
    r.respond = bad_gateway("port " + std::to_string(port) + " is not open in the sandbox");
    return r;
  }
  const std::string& path = head.path;
  if (path == "/health") {
    r.respond = [](Request&) { return Response::empty(204); };
    return r;
  }
  if (port == 49999) {
    // The code-interpreter SDK sends the envd token on /execute only; its /contexts calls carry
    // the traffic token that create returns, so either one is accepted here.
    auto same = [](const std::string& a, const std::string& b) {
      return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
    };
    if (!same(head.header("x-access-token"), l->access_token) &&
        !same(head.header("e2b-traffic-access-token"), l->traffic_token())) {
      r.respond = [](Request&) { return Response::error(401, "unauthorized access, please provide a valid access token"); };
      return r;
    }
    return code_interpreter::route(l, head);
  }
  // Every route but /health and /files (which check signatures themselves) needs the token.
  const std::string token = head.header("x-access-token");
  if (path != "/files" &&
      (token.size() != l->access_token.size() ||
       CRYPTO_memcmp(token.data(), l->access_token.data(), token.size()) != 0)) {
    r.respond = [](Request&) { return Response::error(401, "unauthorized access, please provide a valid access token"); };
    return r;
  }
  if (path == "/envs" && head.method == "GET") {
    r.respond = [l](Request&) { return Response::json(200, dump(json(l->env))); };
    return r;
  }
  if (path == "/metrics" && head.method == "GET") {
    // envd's own shape (snake_case) of the control plane's SandboxMetric: one reading, one owner.
    r.respond = [this, l](Request&) {
      json m = metric(*l);
      uint64_t mem_used = m["memUsed"], mem_total = m["memTotal"];
      json j = {{"ts", m["timestampUnix"]},   {"cpu_count", m["cpuCount"]},   {"cpu_used_pct", m["cpuUsedPct"]},
                {"mem_used", mem_used},       {"mem_total", mem_total},       {"mem_used_mib", mem_used >> 20},
                {"mem_total_mib", mem_total >> 20}, {"mem_cache", m["memCache"]}, {"disk_used", m["diskUsed"]},
                {"disk_total", m["diskTotal"]}};
      return Response::json(200, dump(j));
    };
    return r;
  }
  auto user = envd::user_of(head, *l);
  if (!user) {
    bool rpc = path.find('.') != std::string::npos;
    r.respond = [rpc, msg = user.error().message()](Request&) {
      return rpc ? Response::json(401, dump({{"code", "unauthenticated"}, {"message", msg}})) : Response::error(401, msg);
    };
    return r;
  }
  if (auto found = envd::route(l, head, *user, metrics_)) return *found;
  r.respond = [](Request& req) {
    if (req.path.find('.') != std::string::npos)
      return Response::json(404, dump({{"code", "unimplemented"}, {"message", "no such method " + req.path}}));
    return Response::error(404, "not found");
  };
  return r;
}

// MCP over Streamable HTTP, stateless: each POST carries one JSON-RPC message; the tools call
// this daemon's own API as the caller (their key), so nothing bypasses authorisation.
Route Daemon::mcp_route(const Request& head, mcp::Mode mode) {
  Route r;
  r.body_limit = 1 << 20;
  auto rpc_error = [](int status, int code, const std::string& message) {
    return Response::json(status, dump({{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", {{"code", code}, {"message", message}}}}));
  };
  if (head.method != "POST") {
    r.respond = [rpc_error](Request&) {
      auto res = rpc_error(405, -32000, "Method not allowed: this MCP endpoint is stateless (POST only).");
      res.headers.emplace_back("Allow", "POST");
      return res;
    };
    return r;
  }
  const std::string key = api_key_of(head);
  if (!keys_.valid(key)) {
    r.respond = [rpc_error](Request&) {
      auto res = rpc_error(401, -32000, "missing or invalid API key (Authorization: Bearer <key>)");
      res.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\", error_description=\"missing or invalid API key\"");
      return res;
    };
    return r;
  }
  std::string accept = head.header("accept");
  if (accept.find("application/json") == std::string::npos || accept.find("text/event-stream") == std::string::npos) {
    r.respond = [rpc_error](Request&) {
      return rpc_error(406, -32000, "Accept must list application/json and text/event-stream");
    };
    return r;
  }
  if (!head.header("content-type").starts_with("application/json")) {
    r.respond = [rpc_error](Request&) { return rpc_error(415, -32000, "Content-Type must be application/json"); };
    return r;
  }
  if (auto v = head.header("mcp-protocol-version"); !v.empty() && !mcp::supported_protocol_version(v)) {
    r.respond = [rpc_error, v](Request&) { return rpc_error(400, -32000, "unsupported MCP-Protocol-Version " + v.substr(0, 32)); };
    return r;
  }
  r.stream = [this, key, rpc_error, mode](Request& req, Stream& s) {
    auto msg = json::parse(req.body, nullptr, false);
    auto reply = [&](const Response& res) {
      s.begin(res.status, res.headers);
      s.write(res.body);
    };
    if (msg.is_discarded()) return reply(rpc_error(400, -32700, "parse error"));
    if (msg.is_array()) return reply(rpc_error(400, -32600, "batches are not supported"));
    if (!msg.is_object() || (msg.contains("id") && msg["id"].is_null()))
      return reply(rpc_error(400, -32600, "invalid JSON-RPC message"));
    // A caller's requests are known by its key (hashed) and request id, so its cancellation
    // reaches a tools/call running on another connection.
    const std::string scope = sha256_hex(key) + "|";
    if (!msg.contains("id") || !msg.contains("method")) {  // a notification or a response
      if (msg.value("method", "") == "notifications/cancelled" && msg.contains("params") && msg["params"].is_object() &&
          msg["params"].contains("requestId"))
        mcp_cancels_->cancel(scope + msg["params"]["requestId"].dump());
      return reply(Response::empty(202));
    }
    auto api = client::ApiClient::to(server_->address(), key);
    if (!api) return reply(rpc_error(500, -32603, api.error().message()));
    bool sse = msg.contains("params") && msg["params"].is_object() && msg["params"].contains("_meta") &&
               msg["params"]["_meta"].is_object() && msg["params"]["_meta"].contains("progressToken");
    auto event = [](const json& j) { return "event: message\ndata: " + dump(j) + "\n\n"; };
    if (sse) s.begin(200, {{"Content-Type", "text/event-stream"}, {"Cache-Control", "no-cache"}});
    mcp::Server server(
        std::move(*api), /*stateless=*/true, [&](const json& note) {
          if (sse) s.write(event(note));
        },
        mcp_cancels_, scope, mode);
    json response = server.handle(msg);
    if (response.is_null()) {  // cancelled: nobody is waiting for an answer
      if (!sse) reply(Response::empty(202));
      return;
    }
    if (sse) s.write(event(response));
    else reply(Response::json(200, dump(response)));
  };
  return r;
}

Route Daemon::control_plane(const Request& head) {
  Route r;
  const std::string method = head.method;
  const std::string path = head.path;
  if (path == "/mcp") return mcp_route(head, mcp::Mode::tools);
  if (path == "/mcp/code") return mcp_route(head, mcp::Mode::code);
  if (path == "/openapi.json" && method == "GET") {
    r.respond = [](Request&) { return Response::json(200, mcp::code_mode::openapi_text()); };
    return r;
  }
  if (path == "/health") {
    r.respond = [](Request&) { return Response::json(200, "{\"status\":\"ok\"}"); };
    return r;
  }
  if (path == "/metrics" && method == "GET") {
    r.respond = [this](Request&) {
      std::string out;
      size_t running = 0;
      for (auto& s : engine_.list()) running += s.state == "running";
      out += "# TYPE brig_sandboxes gauge\nbrig_sandboxes{state=\"running\"} " + std::to_string(running) + "\n";
      out += "brig_sandboxes{state=\"pooled\"} " + std::to_string(engine_.pool_stats().ready) + "\n";
      out += "# TYPE brig_sandbox_creates_total counter\nbrig_sandbox_creates_total " + std::to_string(metrics_.creates) + "\n";
      out += "brig_sandbox_create_errors_total " + std::to_string(metrics_.create_errors) + "\n";
      out += "# TYPE brig_execs_total counter\nbrig_execs_total " + std::to_string(metrics_.execs) + "\n";
      out += "# TYPE brig_stream_bytes_total counter\nbrig_stream_bytes_total " + std::to_string(metrics_.bytes_streamed) + "\n";
      std::lock_guard lock(metrics_.mu);
      out += "# TYPE brig_sandbox_create_duration_ms histogram\n";
      uint64_t cumulative = 0;
      for (size_t i = 0; i < metrics_.create_ms_buckets.size(); ++i) {
        cumulative += metrics_.create_ms_counts[i];
        out += "brig_sandbox_create_duration_ms_bucket{le=\"" + std::to_string(static_cast<int>(metrics_.create_ms_buckets[i])) +
               "\"} " + std::to_string(cumulative) + "\n";
      }
      cumulative += metrics_.create_ms_counts.back();
      out += "brig_sandbox_create_duration_ms_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
      out += "brig_sandbox_create_duration_ms_sum " + std::to_string(metrics_.create_ms_sum) + "\n";
      out += "brig_sandbox_create_duration_ms_count " + std::to_string(cumulative) + "\n";
      out += "# TYPE brig_http_errors_total counter\n";
      for (auto& [route, n] : metrics_.errors_by_route) {
        std::string label;
        for (char c : route) label += (c == '"' || c == '\\') ? '_' : c;
        out += "brig_http_errors_total{route=\"" + label + "\"} " + std::to_string(n) + "\n";
      }
      Response res;
      res.headers.emplace_back("Content-Type", "text/plain; version=0.0.4");
      res.body = std::move(out);
      return res;
    };
    return r;
  }
  // Everything else needs an API key (X-API-KEY, or Authorization: Bearer for non-E2B clients).
  if (!keys_.valid(api_key_of(head))) {
    r.respond = [](Request&) { return Response::error(401, "missing or invalid API key (X-API-KEY)"); };
    return r;
  }
  auto parts = split(path, '/');  // "", "v2"?, "sandboxes", id, action
  if (!parts.empty()) parts.erase(parts.begin());
  bool v2 = !parts.empty() && parts[0] == "v2";
  if (v2) parts.erase(parts.begin());

  auto sandbox_json = [this](const std::string& id, const std::shared_ptr<Live>& l) {
    return json{{"sandboxID", id},       {"templateID", l->tpl.id},  {"alias", l->tpl.name},
                {"clientID", "brig"},    {"envdVersion", kEnvdVersion}, {"envdAccessToken", l->access_token},
                {"trafficAccessToken", l->traffic_token()}, {"domain", options_.domain.empty() ? json(nullptr) : json(options_.domain)}};
  };
  auto detail_json = [this](const sandbox::SandboxInfo& s) {
    auto t = store_.find(s.template_name);
    std::string tid = t && *t ? (*t)->id : s.template_name;
    json j = {{"sandboxID", s.id},
              {"templateID", tid},
              {"alias", s.template_name},
              {"clientID", "brig"},
              {"startedAt", rfc3339(s.started_at_ms)},
              {"endAt", rfc3339(s.end_at_ms)},
              {"state", "running"},
              {"cpuCount", std::max<uint32_t>(1, s.cpu_millis / 1000)},
              {"memoryMB", s.memory_bytes >> 20},
              {"diskSizeMB", s.disk_bytes >> 20},
              {"envdVersion", kEnvdVersion},
              {"metadata", s.metadata}};
    return j;
  };
  auto not_found = [](const std::string& id) { return Response::error(404, "sandbox '" + id + "' not found"); };

  // POST /sandboxes, POST /v2/sandboxes
  if (parts.size() == 1 && parts[0] == "sandboxes" && method == "POST") {
    r.respond = [this, sandbox_json](Request& req) -> Response {
      auto started = std::chrono::steady_clock::now();
      auto body = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
      if (!body.is_object()) return Response::error(400, "the body must be a JSON object");
      auto tpl_ref = body.value("templateID", std::string("base"));
      if (!body.contains("templateID") || !body["templateID"].is_string()) tpl_ref = "base";
      if (auto slash = tpl_ref.find('/'); slash != std::string::npos) tpl_ref = tpl_ref.substr(slash + 1);
      int timeout = kDefaultTimeoutS;
      if (body.contains("timeout")) {
        if (!body["timeout"].is_number_integer()) return Response::error(400, "timeout must be an integer (seconds)");
        timeout = body["timeout"].get<int>();
      }
      if (timeout < 1 || timeout > kMaxTimeoutS) return Response::error(400, "timeout must be between 1 and 2592000 seconds");
      std::map<std::string, std::string> metadata, env;
      for (auto [field, target] : {std::pair{"metadata", &metadata}, std::pair{"envVars", &env}}) {
        if (!body.contains(field) || body[field].is_null()) continue;
        if (!body[field].is_object()) return Response::error(400, std::string(field) + " must be an object of strings");
        for (auto& [k, v] : body[field].items()) {
          if (!v.is_string()) return Response::error(400, std::string(field) + " values must be strings");
          (*target)[k] = v.get<std::string>();
        }
      }
      class Quiet final : public store::BuildProgress {
        void step_started(int i, int n, const std::string& t) override { spdlog::info("template build [{}/{}] {}", i, n, t); }
        void step_output(std::string_view) override {}
        void step_finished(int, int, bool, double) override {}
      } progress;
      auto tpl = store::resolve_template(engine_, store_, tpl_ref, progress);
      if (!tpl) {
        ++metrics_.create_errors;
        return tpl.error().is(errc::not_found) ? Response::error(404, tpl.error().message())
                                                : Response::error(500, tpl.error().message());
      }
      auto spec = spec_for(store_, *tpl);
      for (auto& [k, v] : env) spec.env[k] = v;
      spec.metadata = metadata;
      spec.lifetime = std::chrono::seconds(timeout);
      auto sb = engine_.create(spec);
      if (!sb) {
        ++metrics_.create_errors;
        int status = sb.error().is(errc::invalid_argument) ? 400 : sb.error().is(errc::limit_exceeded) ? 429 : 500;
        return Response::error(status, sb.error().message());
      }
      if (auto s = store::start_template_services(**sb, *tpl); !s) {
        (void)engine_.kill((*sb)->id());
        return Response::error(500, s.error().message());
      }
      auto l = std::make_shared<Live>();
      l->sandbox = *sb;
      l->id = (*sb)->id();
      l->access_token = new_sandbox_id() + new_sandbox_id();
      l->tpl = *tpl;
      l->env = spec.env;
      add_live(l);
      ++metrics_.creates;
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
      {
        std::lock_guard lock(metrics_.mu);
        size_t b = 0;
        while (b < metrics_.create_ms_buckets.size() && ms > metrics_.create_ms_buckets[b]) ++b;
        ++metrics_.create_ms_counts[b];
        metrics_.create_ms_sum += ms;
      }
      return Response::json(201, dump(sandbox_json(l->id, l)));
    };
    return r;
  }
  // GET /v2/sandboxes (and GET /sandboxes, the v1 list)
  if (parts.size() == 1 && parts[0] == "sandboxes" && method == "GET") {
    r.respond = [this, detail_json](Request& req) -> Response {
      std::string state = req.param("state");
      if (!state.empty()) {
        bool wants_running = false;
        for (auto& s : split(state, ',')) {
          if (s != "running" && s != "paused") return Response::error(400, "state must be running and/or paused");
          wants_running |= s == "running";
        }
        if (!wants_running) return Response::json(200, "[]");
      }
      auto filter = parse_metadata_filter(req.param("metadata"));
      std::string tpl = req.param("template");
      int64_t started_after = 0;
      if (std::string sa = req.param("startedAfter"); !sa.empty()) {
        struct tm tm = {};
        if (!strptime(sa.c_str(), "%Y-%m-%dT%H:%M:%S", &tm))
          return Response::error(400, "startedAfter must be an RFC 3339 time");
        started_after = static_cast<int64_t>(timegm(&tm)) * 1000;
      }
      int limit = 100;
      if (req.has_param("limit")) {
        std::string l = req.param("limit");
        if (l.empty() || l.size() > 5 || l.find_first_not_of("0123456789") != std::string::npos)
          return Response::error(400, "limit must be an integer");
        limit = std::clamp(std::stoi(l), 1, 1000);
      }
      size_t offset = 0;
      if (std::string t = req.param("nextToken"); !t.empty()) {
        if (t.size() > 10 || t.find_first_not_of("0123456789") != std::string::npos)
          return Response::error(400, "invalid nextToken");
        offset = std::stoul(t);
      }
      std::vector<sandbox::SandboxInfo> rows;
      for (auto& s : engine_.list()) {
        if (s.state != "running" || !live(s.id)) continue;
        bool match = true;
        for (auto& [k, v] : filter) match &= s.metadata.count(k) && s.metadata.at(k) == v;
        if (!tpl.empty()) match &= s.template_name == tpl;
        match &= s.started_at_ms >= started_after;
        if (match) rows.push_back(s);
      }
      bool asc = req.param("order") == "asc";
      std::sort(rows.begin(), rows.end(), [asc](auto& a, auto& b) {
        return asc ? a.started_at_ms < b.started_at_ms : a.started_at_ms > b.started_at_ms;
      });
      json out = json::array();
      for (size_t i = offset; i < rows.size() && out.size() < static_cast<size_t>(limit); ++i) out.push_back(detail_json(rows[i]));
      Response res = Response::json(200, dump(out));
      if (offset + out.size() < rows.size()) res.headers.emplace_back("X-Next-Token", std::to_string(offset + out.size()));
      res.headers.emplace_back("Access-Control-Expose-Headers", "X-Next-Token");
      return res;
    };
    return r;
  }
  // GET /sandboxes/metrics?sandbox_ids=a,b: the latest metric of each (at most 100) live sandbox.
  if (parts.size() == 2 && parts[0] == "sandboxes" && parts[1] == "metrics" && method == "GET") {
    r.respond = [this](Request& req) {
      auto ids = split(req.param("sandbox_ids"), ',');
      std::erase(ids, "");
      if (ids.empty()) return Response::error(400, "sandbox_ids is required (comma-separated sandbox ids)");
      if (ids.size() > kMaxMetricsIds) return Response::error(400, "at most 100 sandbox_ids per request");
      json out = json::object();
      for (auto& id : ids)
        if (auto l = is_valid_sandbox_id(id) ? live(id) : nullptr) out[id] = metric(*l);
      return Response::json(200, dump({{"sandboxes", out}}));
    };
    return r;
  }
  if (parts.size() >= 2 && parts[0] == "sandboxes") {
    std::string id = parts[1];
    std::string action = parts.size() >= 3 ? parts[2] : "";
    if (!is_valid_sandbox_id(id) || parts.size() > 3) {
      r.respond = [id](Request&) { return Response::error(404, "sandbox '" + id.substr(0, 64) + "' not found"); };
      return r;
    }
    if (action.empty() && method == "GET") {
      r.respond = [this, id, detail_json, not_found](Request&) {
        auto info = engine_.info(id);
        if (!info || info->state != "running" || !live(id)) return not_found(id);
        auto j = detail_json(*info);
        if (auto l = live(id)) j["envdAccessToken"] = l->access_token;
        j["domain"] = options_.domain.empty() ? json(nullptr) : json(options_.domain);
        j["allowInternetAccess"] = false;
        j["lifecycle"] = {{"onTimeout", "kill"}, {"autoResume", false}};
        return Response::json(200, dump(j));
      };
      return r;
    }
    if (action.empty() && method == "DELETE") {
      r.respond = [this, id, not_found](Request&) {
        if (!live(id)) return not_found(id);
        forget(id);
        auto k = engine_.kill(id);
        if (!k && k.error().is(errc::not_found)) return not_found(id);
        if (!k) return Response::error(500, k.error().message());
        return Response::empty(204);
      };
      return r;
    }
    auto parse_seconds = [](const Request& req, const char* field, std::optional<int> dflt) -> Result<int> {
      auto body = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
      if (!body.is_object()) return Error::make(errc::invalid_argument, "the body must be a JSON object");
      if (!body.contains(field) || body[field].is_null()) {
        if (dflt) return *dflt;
        return Error::make(errc::invalid_argument, std::string(field) + " is required");
      }
      if (!body[field].is_number_integer()) return Error::make(errc::invalid_argument, std::string(field) + " must be an integer");
      int v = body[field].get<int>();
      if (v < 1 || v > kMaxTimeoutS) return Error::make(errc::invalid_argument, std::string(field) + " must be between 1 and 2592000");
      return v;
    };
    if ((action == "timeout" || action == "refreshes") && method == "POST") {
      r.respond = [this, id, action, parse_seconds, not_found](Request& req) {
        if (!live(id)) return not_found(id);
        auto secs = parse_seconds(req, action == "timeout" ? "timeout" : "duration",
                                  action == "refreshes" ? std::optional<int>(60) : std::nullopt);
        if (!secs) return Response::error(400, secs.error().message());
        auto set = engine_.set_timeout(id, std::chrono::seconds(*secs));
        if (!set) return Response::error(set.error().is(errc::not_found) ? 404 : 500, set.error().message());
        return Response::empty(204);
      };
      return r;
    }
    if (action == "connect" && method == "POST") {
      r.respond = [this, id, parse_seconds, sandbox_json, not_found](Request& req) {
        auto l = live(id);
        if (!l) return not_found(id);
        auto secs = parse_seconds(req, "timeout", kDefaultTimeoutS);
        if (!secs) return Response::error(400, secs.error().message());
        // Connecting extends the sandbox's life to at least now + timeout.
        auto info = engine_.info(id);
        if (info && info->end_at_ms < now_unix_ms() + int64_t{*secs} * 1000)
          (void)engine_.set_timeout(id, std::chrono::seconds(*secs));
        return Response::json(200, dump(sandbox_json(id, l)));
      };
      return r;
    }
    if (action == "pause" && method == "POST") {
      r.respond = [this, id, not_found](Request&) {
        if (!live(id)) return not_found(id);
        return Response::error(501, "pause is not supported by brig yet: the sandbox keeps running (kill it or let it expire)");
      };
      return r;
    }
    if (action == "metrics" && method == "GET") {
      r.respond = [this, id, not_found](Request&) {
        auto l = live(id);
        if (!l) return not_found(id);
        return Response::json(200, dump(json::array({metric(*l)})));
      };
      return r;
    }
  }
  if (parts.size() == 1 && parts[0] == "templates" && method == "GET") {
    r.respond = [this](Request&) {
      json out = json::array();
      if (auto all = store_.list())
        for (auto& t : *all)
          out.push_back({{"templateID", t.id},
                         {"buildID", t.layers.empty() ? "" : t.layers.front().substr(0, 20)},
                         {"aliases", json::array({t.name})},
                         {"names", json::array({t.name + ":" + t.tag})},
                         {"cpuCount", t.config.cpus > 0 ? static_cast<int>(t.config.cpus) : 1},
                         {"memoryMB", t.config.memory_bytes ? t.config.memory_bytes >> 20 : 512},
                         {"diskSizeMB", 1024},
                         {"public", false},
                         {"createdAt", rfc3339(t.created_ms)},
                         {"updatedAt", rfc3339(t.created_ms)},
                         {"createdBy", nullptr},
                         {"buildStatus", "ready"},
                         {"envdVersion", kEnvdVersion},
                         {"sizeBytes", t.size_bytes}});
      return Response::json(200, dump(out));
    };
    return r;
  }
  r.respond = [](Request& req) { return Response::error(404, "no route for " + req.method + " " + req.path.substr(0, 128)); };
  return r;
}

}  // namespace brig::server
