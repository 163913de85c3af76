#include "server/envd/router.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <map>
#include <nlohmann/json.hpp>

#include "base/util.h"
#include "server/envd/rpc.h"

namespace brig::server::envd {
namespace {

using nlohmann::json;

// Every RPC by its path.
const std::map<std::string, Route (*)(const Call&), std::less<>>& rpcs() {
  static const std::map<std::string, Route (*)(const Call&), std::less<>> all = {
      {"/process.Process/Start", start},
      {"/process.Process/Connect", connect_process},
      {"/process.Process/List", list},
      {"/process.Process/SendInput", send_input},
      {"/process.Process/StreamInput", stream_input},
      {"/process.Process/CloseStdin", close_stdin},
      {"/process.Process/SendSignal", send_signal},
      {"/process.Process/Update", update},
      {"/filesystem.Filesystem/Stat", stat},
      {"/filesystem.Filesystem/ListDir", list_dir},
      {"/filesystem.Filesystem/MakeDir", make_dir},
      {"/filesystem.Filesystem/Move", move},
      {"/filesystem.Filesystem/Remove", remove},
      {"/filesystem.Filesystem/WatchDir", watch_dir},
      {"/filesystem.Filesystem/CreateWatcher", create_watcher},
      {"/filesystem.Filesystem/GetWatcherEvents", get_watcher_events},
      {"/filesystem.Filesystem/RemoveWatcher", remove_watcher},
  };
  return all;
}

Route answer(Response res) {
  Route r;
  r.respond = [res = std::move(res)](Request&) { return res; };
  return r;
}

}  // namespace

bool same_secret(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string file_signature(const std::string& path, const std::string& op, const std::string& user,
                           const std::string& token, const std::string& expiration) {
  std::string raw = path + ":" + op + ":" + user + ":" + token;
  if (!expiration.empty()) raw += ":" + expiration;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(raw.data(), raw.size(), md, &len, EVP_sha256(), nullptr);
  std::string sig = base64_encode(std::string_view(reinterpret_cast<char*>(md), len));  // SAFETY: bytes
  while (!sig.empty() && sig.back() == '=') sig.pop_back();
  return "v1_" + sig;
}

Result<sandbox::User> user_of(const Request& req, const core::Live& live) {
  std::string name = req.param("username");
  std::string auth = req.header("authorization");
  if (name.empty() && auth.starts_with("Basic ")) {
    auto header = trim(std::string_view(auth).substr(6));
    if (header.size() > 4096) return Error::make(errc::invalid_argument, "Authorization header too long");
    BRIG_TRY_ASSIGN(decoded, base64_decode(header));
    name = decoded.substr(0, decoded.find(':'));
  }
  if (name.empty()) name = live.tpl.config.user;
  return sandbox::parse_user(name);
}

Route route(core::Service& core, std::shared_ptr<core::Live> live, const Request& head) {
  const std::string& path = head.path;
  if (path == "/health") return answer(Response::empty(204));
  // Every route but /health and /files (which check signatures themselves) needs the token.
  if (path != "/files" && !same_secret(head.header("x-access-token"), live->access_token))
    return answer(Response::error(401, "unauthorized access, please provide a valid access token"));
  if (path == "/envs" && head.method == "GET") return answer(Response::json(200, dump(json(live->env))));
  if (path == "/metrics" && head.method == "GET") {
    // envd's own shape (snake_case) of the control plane's SandboxMetric: one reading, one owner.
    Route r;
    r.respond = [&core, live](Request&) {
      core::Metric m = core.metric(*live);
      json j = {{"ts", m.timestamp_ms / 1000},   {"cpu_count", m.cpu_count},         {"cpu_used_pct", m.cpu_used_pct},
                {"mem_used", m.mem_used},        {"mem_total", m.mem_total},         {"mem_used_mib", m.mem_used >> 20},
                {"mem_total_mib", m.mem_total >> 20}, {"mem_cache", m.mem_cache}, {"disk_used", m.disk_used},
                {"disk_total", m.disk_total}};
      return Response::json(200, dump(j));
    };
    return r;
  }
  const bool rpc = path.find('.') != std::string::npos;
  // A paused sandbox's brig-init is frozen: refused at once, in the shape the caller reads (a
  // stream's error is its EndStream frame; connect-es reads no body of a non-200 stream).
  if (auto running = core::Service::check_running(*live); !running) {
    if (!rpc) return answer(Response::error(409, running.error().message()));
    const connect::RpcError e = connect::rpc_error(running.error(), "envd");
    const std::string type = head.header("content-type");
    if (!type.starts_with("application/connect+")) return answer(connect::unary_error(e));
    Response r;
    r.status = 200;
    r.headers = {{"Content-Type", connect::stream_content_type(type.find("proto") != std::string::npos
                                                                    ? connect::Codec::proto : connect::Codec::json)}};
    r.body = connect::end_stream(e);
    return answer(r);
  }
  auto user = user_of(head, *live);
  if (!user) {
    const std::string msg = user.error().message();
    return answer(rpc ? Response::json(401, dump({{"code", "unauthenticated"}, {"message", msg}})) : Response::error(401, msg));
  }
  Call call{core, live, *user};
  if (path == "/files") return files(call, head);
  if (path == "/files/archive") return archive(call, head);
  if (head.method == "POST")
    if (auto it = rpcs().find(path); it != rpcs().end()) return it->second(call);
  if (rpc) return answer(Response::json(404, dump({{"code", "unimplemented"}, {"message", "no such method " + path.substr(0, 128)}})));
  return answer(Response::error(404, "not found"));
}

}  // namespace brig::server::envd
