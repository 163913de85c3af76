#include "server/daemon.h"

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/util.h"
#include "core/status.h"
#include "server/interpreter/interpreter.h"
#include "server/envd/router.h"
#include "server/rest/rest.h"
#include "server/tls_bridge.h"

namespace brig::server {
namespace {

using nlohmann::json;


// "name:port" or "[v6]:port" -> the name.
std::string host_name(const std::string& host_header) {
  if (host_header.starts_with("[")) return host_header.substr(1, host_header.find(']') - 1);
  return host_header.substr(0, host_header.find(':'));
}

bool loopback_host(const std::string& host_header) {
  std::string host = host_name(host_header);
  return host == "localhost" || host == "127.0.0.1" || host == "::1";
}

Route answer(Response res) {
  Route r;
  r.respond = [res = std::move(res)](Request&) { return res; };
  return r;
}

}  // namespace

std::string api_key_of(const Request& req) {
  std::string key = req.header("x-api-key");
  if (key.empty() && req.header("authorization").starts_with("Bearer ")) key = req.header("authorization").substr(7);
  return key;
}

Result<std::unique_ptr<Daemon>> Daemon::start(const DaemonOptions& options, sandbox::Engine& engine,
                                              store::TemplateStore& store, core::KeyStore& keys) {
  std::unique_ptr<Daemon> d(new Daemon(options));
  BRIG_TRY_ASSIGN(core, core::Service::open({options.pool_size, options.config, options.egress_exe}, engine, store, keys));
  d->core_ = std::move(core);
  auto* self = d.get();
  // One handler per connection at most, so the pool never makes a request wait for another.
  if (options.loop) {
    d->loop_ = options.loop;
  } else {
    d->own_loop_ = std::make_unique<EventLoop>(EventLoop::Options{.max_blocking_threads = options.http.max_connections});
    d->loop_ = d->own_loop_.get();
  }
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
  d->mcp_host_ = std::make_shared<McpHost>(*d->core_, [self](const Request& r) { return self->route(r); },
                                           d->options_.domain);
  return d;
}

Daemon::~Daemon() {
  stop();
  server_.reset();
  core_.reset();
}

void Daemon::run() { server_->run(); }

void Daemon::stop() {
  if (stopping_.exchange(true)) return;
  if (mcp_host_) mcp_host_->close();  // MCP streams end; MCP calls into the core finish first
  if (server_) server_->stop(std::chrono::seconds(5));
}

void Daemon::log(const Request& req, int status, double ms) {
  // Never the key or token: method, path (no query: it may carry a signature), status, time.
  spdlog::info("request id={} {} {} status={} ms={:.1f} remote={}", req.request_id, req.method, req.path, status, ms,
               req.remote);
  if (status >= 400) core_->count_http_error(req.method + " " + (req.path.size() > 64 ? req.path.substr(0, 64) : req.path));
}

Route Daemon::route(const Request& req) {
  Route r = pick_route(req);
  // A route that did not choose its own body bound (uploads, cells do) gets the configured one.
  if (r.body_limit == Route{}.body_limit) r.body_limit = core_->config().limits.request_body_bytes;
  return r;
}

Route Daemon::pick_route(const Request& req) {
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
  if (!host_ok || !origin_ok) return answer(Response::error(403, "forbidden Host or Origin"));
  // Data plane: by headers, or by a <port>-<id>.<domain> Host.
  std::string sid = req.header("e2b-sandbox-id"), sport = req.header("e2b-sandbox-port");
  if (!sid.empty() || !sport.empty()) {
    if (sid.empty()) return answer(Response::error(400, "Missing header: E2b-Sandbox-Id"));
    if (sport.empty()) return answer(Response::error(400, "Missing header: E2b-Sandbox-Port"));
    return data_plane(req, sid, sport, true);
  }
  if (std::string name = host_name(host); name.ends_with("." + domain_name_)) {
    std::string label = name.substr(0, name.find('.'));
    auto dash = label.find('-');
    if (dash != std::string::npos) return data_plane(req, label.substr(dash + 1), label.substr(0, dash), false);
  }
  return control_plane(req);
}

namespace {

// The data plane's refusals, in E2B's proxy's shape.
Route proxy_error(int status, const std::string& id, const std::string& message, json extra = json::object()) {
  extra["sandboxId"] = id.substr(0, 64);
  extra["message"] = message;
  extra["code"] = status;
  return answer(Response::json(status, dump(extra)));
}

// A port the daemon could not open, said as E2B's proxy says it (with the cause when it is not
// just a closed port).
Response port_refusal(const core::Live& l, uint16_t port, const Error& e) {
  core::Status s = core::classify(e);
  auto body = [&](int status, const std::string& message, json extra = json::object()) {
    extra["sandboxId"] = l.id;
    extra["message"] = message;
    extra["code"] = status;
    return Response::json(status, dump(extra));
  };
  if (s == core::Status::bad_gateway)
    return body(502, "The sandbox is running but port " + std::to_string(port) + " is not open", {{"port", port}});
  if (s == core::Status::permission_denied || s == core::Status::invalid_argument ||
      s == core::Status::deadline_exceeded)
    return body(core::http_status(s), e.message(), {{"port", port}});
  if (!l.sandbox->alive()) return body(502, "The sandbox was not found");
  core::report(e, "open sandbox port");
  return body(502, "could not reach port " + std::to_string(port) + " of the sandbox: " + e.message(), {{"port", port}});
}

}  // namespace

Route Daemon::data_plane(const Request& head, const std::string& id, const std::string& sport, bool by_headers) {
  // A port is 1..65535 in decimal (E2B: 400 "Invalid sandbox port").
  int port = sport.size() <= 5 && !sport.empty() && sport.find_first_not_of("0123456789") == std::string::npos
                 ? std::stoi(sport) : 0;
  if (port < 1 || port > 65535) return proxy_error(400, id, "Invalid sandbox port");
  auto l = core_->live(id);
  if (!l) return proxy_error(502, id, "The sandbox was not found");
  if (port == core::kEnvdPort) return envd::route(*core_, l, head);  // which refuses a paused one itself
  // Its processes are frozen: nothing there would answer. (E2B's proxy resumes a paused sandbox
  // on traffic when it was created with autoResume, which brig does not take yet.)
  if (l->paused.load()) return proxy_error(502, id, "The sandbox is paused: resume it first (Sandbox.connect)");
  if (port == core::kInterpreterPort) {
    if (head.path == "/health") return answer(Response::empty(204));
    // The code-interpreter SDK sends the envd token on /execute only; its /contexts calls carry
    // the traffic token that create returns, so either one is accepted here.
    if (!envd::same_secret(head.header("x-access-token"), l->access_token) &&
        !envd::same_secret(head.header(core::kTrafficTokenHeader), l->traffic_token()))
      return answer(Response::error(401, "unauthorized access, please provide a valid access token"));
    return interpreter::route(l, head, core_->config().limits);
  }
  // Any other port: a byte tunnel to it, opened inside the sandbox.
  Route r;
  r.tunnel = [this, core = core_.get(), l, port, by_headers](Request& req) {
    Tunnel t;
    auto conn = core->open_port(*l, {static_cast<uint16_t>(port), req.header(core::kTrafficTokenHeader)});
    if (!conn) {
      t.refusal = port_refusal(*l, static_cast<uint16_t>(port), conn.error());
      return t;
    }
    if (conn->tls) {  // httpsPorts: the tunnel relays the plaintext end of a TLS bridge
      TlsBridgeOptions o{.handshake_timeout = std::chrono::milliseconds(core->config().server.port_connect_timeout_ms),
                         .idle_timeout = options_.http.tunnel_idle_timeout};
      auto bridged = open_tls_bridge(*loop_, tls_bridge_ctx_, std::move(conn->socket), o);
      if (!bridged) {
        t.refusal = Response::json(502, dump(json{{"sandboxId", l->id}, {"port", port}, {"code", 502},
                                                  {"message", "port " + std::to_string(port) +
                                                                  " is in httpsPorts but its TLS handshake failed: " +
                                                                  bridged.error().message()}}));
        return t;
      }
      conn->socket = std::move(*bridged);
    }
    t.upstream = std::move(conn->socket);
    t.host = std::move(conn->host);
    // A server that closes the connection it just accepted (it was going away: a listener that
    // was closing) has not answered: the client hears what a closed port says.
    t.unanswered = port_refusal(*l, static_cast<uint16_t>(port), Error::from_errno(ECONNREFUSED, "closed"));
    // Routed by headers, every request on a client's connection may be meant for another
    // sandbox or the control plane: one exchange per connection. A masked Host is set on the
    // first request only, so those tunnels carry one exchange too.
    t.one_exchange = by_headers || t.host.has_value();
    return t;
  };
  return r;
}

Route Daemon::control_plane(const Request& head) {
  const std::string& path = head.path;
  if (path == "/mcp") return mcp_route(*core_, head, mcp::Mode::tools, mcp_host_, mcp_cancels_);
  if (path == "/mcp/code") return mcp_route(*core_, head, mcp::Mode::code, mcp_host_, mcp_cancels_);
  rest::Context ctx{*core_, options_.domain};
  if (auto r = rest::service_info(ctx, head)) return *r;
  // Everything else needs an API key (X-API-KEY, or Authorization: Bearer for non-E2B clients).
  if (!core_->keys().valid(api_key_of(head))) return answer(Response::error(401, "missing or invalid API key (X-API-KEY)"));
  auto parts = split(path, '/');  // "", "v2"?, "sandboxes", id, action
  if (!parts.empty()) parts.erase(parts.begin());
  if (!parts.empty() && parts[0] == "v2") parts.erase(parts.begin());
  if (!parts.empty() && parts[0] == "sandboxes") return rest::sandboxes(ctx, head, parts);
  if (!parts.empty() && parts[0] == "secrets" && parts.size() <= 2) return rest::secrets(ctx, head, parts);
  if (parts.size() == 1 && parts[0] == "templates" && head.method == "GET") return rest::templates(ctx, head);
  return answer(Response::error(404, "no route for " + head.method + " " + path.substr(0, 128)));
}

}  // namespace brig::server
