#include "client/api_client.h"

#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "base/util.h"

namespace brig::client {
namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;

Result<ApiClient> ApiClient::connect(const std::string& url, const std::string& key) {
  ApiClient c;
  c.url_ = url;
  std::string rest = c.url_;
  if (!rest.starts_with("http://"))
    return Error::make(errc::invalid_argument, "client.url (BRIG_URL) must be http://HOST:PORT");
  rest = rest.substr(7);
  if (auto slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
  auto colon = rest.rfind(':');
  c.host_ = colon == std::string::npos ? rest : rest.substr(0, colon);
  c.port_ = colon == std::string::npos ? "80" : rest.substr(colon + 1);
  c.key_ = key;
  return c;
}

Result<ApiClient> ApiClient::to(const std::string& host_port, const std::string& key) {
  ApiClient c;
  auto colon = host_port.rfind(':');
  if (colon == std::string::npos) return Error::make(errc::invalid_argument, "want HOST:PORT");
  c.host_ = host_port.substr(0, colon);
  c.port_ = host_port.substr(colon + 1);
  c.url_ = "http://" + host_port;
  c.key_ = key;
  return c;
}

namespace {
Result<tcp::socket> connect_to(net::io_context& io, const std::string& host, const std::string& port, const std::string& url) {
  tcp::resolver resolver(io);
  boost::system::error_code ec;
  auto endpoints = resolver.resolve(host, port, ec);
  tcp::socket socket(io);
  if (!ec) net::connect(socket, endpoints, ec);
  if (ec)
    return Error::make(errc::unsupported, "cannot reach brig at " + url + " (" + ec.message() +
                                              "); start one with `brig serve`, or set BRIG_URL");
  return socket;
}
}  // namespace

Result<HttpResult> ApiClient::call(const std::string& method, const std::string& target, const std::string& body,
                                   std::map<std::string, std::string> headers, size_t max_body) {
  HttpResult out;
  bool over = false;
  BRIG_TRY_ASSIGN(status, stream(
                              method, target, body, std::move(headers),
                              [&](std::string_view d) {
                                over = out.body.size() + d.size() > max_body;
                                if (!over) out.body.append(d);
                                return !over;
                              },
                              nullptr, &out.headers));
  if (over) return Error::make(errc::limit_exceeded, "the response is larger than " + format_size(max_body));
  out.status = status;
  return out;
}

void CancelToken::cancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

bool CancelToken::cancelled() {
  std::lock_guard lock(mu_);
  return cancelled_;
}

void CancelToken::attach(int fd) {
  std::lock_guard lock(mu_);
  fd_ = fd;
  if (cancelled_) ::shutdown(fd_, SHUT_RDWR);
}

void CancelToken::detach() {
  std::lock_guard lock(mu_);
  fd_ = -1;
}

Result<int> ApiClient::stream(const std::string& method, const std::string& target, const std::string& body,
                              std::map<std::string, std::string> headers,
                              const std::function<bool(std::string_view)>& on_data, CancelToken* cancel,
                              std::map<std::string, std::string>* response_headers) {
  net::io_context io;
  BRIG_TRY_ASSIGN(socket, connect_to(io, host_, port_, url_));
  struct Attach {
    CancelToken* token;
    ~Attach() {
      if (token) token->detach();
    }
  } attached{cancel};
  if (cancel) cancel->attach(socket.native_handle());
  auto cancelled = [&] { return cancel && cancel->cancelled(); };
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, host_ + ":" + port_);
  req.set(http::field::user_agent, "brig-cli");
  if (!key_.empty() && !headers.count("E2b-Sandbox-Id")) req.set("X-API-KEY", key_);
  if (!body.empty() && !headers.count("Content-Type")) req.set(http::field::content_type, "application/json");
  for (auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  boost::system::error_code ec;
  http::write(socket, req, ec);
  if (cancelled()) return Error::make(errc::conflict, "cancelled");
  if (ec) return Error::make(errc::protocol, "send request: " + ec.message());
  boost::beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  http::read_header(socket, buffer, parser, ec);
  if (cancelled()) return Error::make(errc::conflict, "cancelled");
  if (ec) return Error::make(errc::protocol, "read response: " + ec.message());
  if (response_headers)
    for (auto& f : parser.get()) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      (*response_headers)[name] = std::string(f.value());
    }
  char chunk[65536];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    // read_some, not read: deliver each chunk as it arrives (live output, progress), instead
    // of waiting until the buffer is full or the body ends.
    http::read_some(socket, buffer, parser, ec);
    if (cancelled()) return Error::make(errc::conflict, "cancelled");
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return Error::make(errc::protocol, "read response: " + ec.message());
    size_t got = sizeof chunk - parser.get().body().size;
    if (got && !on_data(std::string_view(chunk, got))) break;
  }
  return static_cast<int>(parser.get().result_int());
}

Result<std::map<std::string, std::string>> ApiClient::envd_headers(const std::string& id) {
  BRIG_TRY_ASSIGN(r, call("GET", "/sandboxes/" + id));
  if (r.status != 200) return Error::make(r.status == 404 ? errc::not_found : errc::protocol, api_error(r));
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  std::map<std::string, std::string> h = {{"E2b-Sandbox-Id", id}, {"E2b-Sandbox-Port", "49983"}};
  if (j.is_object() && j.contains("envdAccessToken") && j["envdAccessToken"].is_string())
    h["X-Access-Token"] = j["envdAccessToken"].get<std::string>();
  return h;
}

Result<ExecResult> exec(ApiClient& api, const ExecRequest& req,
                        const std::function<void(bool is_stderr, std::string_view)>& on_output, CancelToken* cancel) {
  using nlohmann::json;
  std::map<std::string, std::string> headers;
  if (!req.access_token.empty()) {
    headers = {{"E2b-Sandbox-Id", req.sandbox_id}, {"E2b-Sandbox-Port", "49983"}, {"X-Access-Token", req.access_token}};
  } else {
    BRIG_TRY_ASSIGN(h, api.envd_headers(req.sandbox_id));
    headers = std::move(h);
  }
  headers["Content-Type"] = "application/connect+json";
  headers["Connect-Protocol-Version"] = "1";
  if (req.timeout_ms > 0) headers["Connect-Timeout-Ms"] = std::to_string(req.timeout_ms);
  if (!req.user.empty()) headers["Authorization"] = "Basic " + base64_encode(req.user + ":");
  json proc = {{"cmd", req.cmd}, {"args", req.args}};
  if (!req.cwd.empty()) proc["cwd"] = req.cwd;
  if (!req.env.empty()) proc["envs"] = req.env;
  std::string msg = json{{"process", proc}, {"stdin", req.stdin}}.dump();
  // One Connect envelope: flags 0, big-endian length, the JSON message.
  std::string body(5, '\0');
  for (int i = 0; i < 4; ++i) body[static_cast<size_t>(1 + i)] = static_cast<char>(msg.size() >> (24 - 8 * i));
  body += msg;
  ExecResult result;
  std::string pending;
  int pid = 0;
  auto on_data = [&](std::string_view d) {
    pending.append(d);
    while (pending.size() >= 5) {
      uint32_t n = 0;
      for (size_t i = 1; i <= 4; ++i) n = (n << 8) | static_cast<uint8_t>(pending[i]);
      if (pending.size() < 5 + static_cast<size_t>(n)) break;
      bool end_stream = pending[0] & 2;
      auto j = json::parse(pending.substr(5, n), nullptr, false);
      pending.erase(0, 5 + static_cast<size_t>(n));
      if (!j.is_object()) continue;
      if (end_stream) {
        if (j.contains("error") && j["error"].is_object()) {
          result.error = j["error"].value("message", "error");
          result.error_code = j["error"].value("code", "");
        }
        continue;
      }
      if (!j.contains("event") || !j["event"].is_object()) continue;
      auto& ev = j["event"];
      if (ev.contains("start") && ev["start"].is_object()) {
        pid = ev["start"].value("pid", 0);
        if (req.on_start) req.on_start(pid);
      }
      if (ev.contains("data") && ev["data"].is_object()) {
        for (const char* stream : {"stdout", "stderr"})
          if (ev["data"].contains(stream) && ev["data"][stream].is_string())
            if (auto bytes = base64_decode(ev["data"][stream].get<std::string>()))
              on_output(std::string_view(stream) == "stderr", *bytes);
      } else if (ev.contains("end") && ev["end"].is_object()) {
        result.exited = ev["end"].value("exited", false);
        result.exit_code = result.exited ? ev["end"].value("exitCode", 0) : -1;
        result.status = ev["end"].value("status", "");
        result.oom_killed = ev["end"].value("error", "") == wire::kOutOfMemoryError;
      }
    }
    return true;
  };
  auto status = api.stream("POST", "/process.Process/Start", body, headers, on_data, cancel);
  if (!status && status.error().is(errc::conflict) && pid > 0) {
    // Cancelled: a process outlives its stream (E2B semantics), so it is killed explicitly.
    auto kill_headers = headers;
    kill_headers["Content-Type"] = "application/json";
    kill_headers.erase("Connect-Timeout-Ms");
    (void)api.call("POST", "/process.Process/SendSignal",
                   json{{"process", {{"pid", pid}}}, {"signal", "SIGNAL_SIGKILL"}}.dump(), kill_headers);
  }
  if (!status) return status.error();
  if (*status != 200) return Error::make(errc::protocol, "exec failed (HTTP " + std::to_string(*status) + ")");
  return result;
}

Result<nlohmann::json> list_sandboxes(ApiClient& api, const std::string& query) {
  using nlohmann::json;
  BRIG_TRY_ASSIGN(r, api.call("GET", "/v2/sandboxes?limit=1000" + (query.empty() ? "" : "&" + query)));
  if (r.status != 200) return Error::make(errc::protocol, api_error(r));
  json rows = json::parse(r.body, nullptr, false);
  if (!rows.is_array()) return Error::make(errc::protocol, "the sandbox list is not a JSON array");
  constexpr size_t kPerRequest = 100;  // the metrics endpoint's bound
  for (size_t first = 0; first < rows.size(); first += kPerRequest) {
    std::string ids;
    for (size_t i = first; i < std::min(rows.size(), first + kPerRequest); ++i) {
      rows[i]["usage"] = nullptr;
      ids += (ids.empty() ? "" : ",") + rows[i].value("sandboxID", "");
    }
    auto m = api.call("GET", "/sandboxes/metrics?sandbox_ids=" + percent_encode(ids, ","));
    if (!m || m->status != 200) continue;  // usage is extra: the list stands without it
    json got = json::parse(m->body, nullptr, false);
    if (!got.is_object() || !got.contains("sandboxes") || !got["sandboxes"].is_object()) continue;
    for (size_t i = first; i < std::min(rows.size(), first + kPerRequest); ++i)
      if (auto it = got["sandboxes"].find(rows[i].value("sandboxID", "")); it != got["sandboxes"].end()) rows[i]["usage"] = *it;
  }
  return rows;
}

std::string api_error(const HttpResult& r) {
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  std::string msg = j.is_object() && j.contains("message") && j["message"].is_string() ? j["message"].get<std::string>()
                                                                                        : r.body.substr(0, 200);
  return msg + " (HTTP " + std::to_string(r.status) + ")";
}

}  // namespace brig::client
