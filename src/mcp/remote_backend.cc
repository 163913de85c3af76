#include "mcp/remote_backend.h"

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "base/util.h"

namespace brig::mcp {
namespace {

using nlohmann::json;
constexpr size_t kMaxCellLine = 16 << 20;  // one NDJSON line of a cell (a large image), plus slack below

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// A refusal of the daemon as an Error: its message and HTTP status, with the condition the
// status means.
Error http_error(const client::HttpResult& r) {
  errc code = r.status == 404   ? errc::not_found
              : r.status == 400 ? errc::invalid_argument
              : r.status == 413 ? errc::limit_exceeded
                                : errc::protocol;
  return Error::make(code, client::api_error(r));
}

std::string str(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

uint64_t number(const json& j) {
  if (j.is_number_unsigned() || j.is_number_integer()) return j.get<uint64_t>();
  if (j.is_string()) return std::strtoull(j.get_ref<const std::string&>().c_str(), nullptr, 10);  // int64 in protobuf JSON
  return 0;
}

// `call`'s errors: a 404 on the sandbox's own route means it is gone.
Error gone_or(const Error& e) { return e.is(errc::not_found) ? sandbox_gone(e.message()) : e; }

// A client::CancelToken that fires with `token`, so a cancelled call's socket is shut down.
struct Bridge {
  client::CancelToken socket;
  OnCancel hook;
  explicit Bridge(CancelToken* token) : hook(token, [this] { socket.cancel(); }) {}
};

}  // namespace

Result<std::map<std::string, std::string>> RemoteBackend::envd(const std::string& id) {
  auto h = api_.envd_headers(id);
  if (!h) return gone_or(h.error());
  return h;
}

Result<CreatedSandbox> RemoteBackend::create_sandbox(const NewSandbox& req) {
  json body = {{"templateID", req.template_ref}, {"timeout", req.timeout_s}};
  if (!req.env.empty()) body["envVars"] = req.env;
  if (!req.metadata.empty()) body["metadata"] = req.metadata;
  if (req.allow_internet_access) body["allow_internet_access"] = *req.allow_internet_access;
  if (req.allow_out || req.deny_out)
    body["network"] = {{"allowOut", req.allow_out.value_or(std::vector<std::string>{})},
                       {"denyOut", req.deny_out.value_or(std::vector<std::string>{})}};
  BRIG_TRY_ASSIGN(r, api_.call("POST", "/v2/sandboxes", dump(body)));
  if (r.status != 201) return http_error(r);
  json created = json::parse(r.body, nullptr, false);
  CreatedSandbox out{str(created, "sandboxID"), str(created, "alias"), ""};
  if (auto info = api_.call("GET", "/sandboxes/" + out.id); info && info->status == 200)
    out.ends_at = str(json::parse(info->body, nullptr, false), "endAt");
  return out;
}

Result<std::vector<SandboxRow>> RemoteBackend::list_sandboxes(const std::map<std::string, std::string>& metadata) {
  std::string query;
  if (!metadata.empty()) {
    std::string md;
    for (auto& [k, v] : metadata) md += (md.empty() ? "" : "&") + k + "=" + v;
    query = "metadata=" + percent_encode(md);
  }
  BRIG_TRY_ASSIGN(rows, client::list_sandboxes(api_, query));
  std::vector<SandboxRow> out;
  for (auto& s : rows) {
    SandboxRow row;
    row.id = str(s, "sandboxID");
    row.template_name = str(s, "alias");
    row.state = s.contains("state") && s["state"].is_string() ? s["state"].get<std::string>() : "running";
    row.started_at = str(s, "startedAt");
    row.ends_at = str(s, "endAt");
    row.cpu_count = static_cast<uint32_t>(number(s.value("cpuCount", json(0))));
    row.memory_mb = number(s.value("memoryMB", json(0)));
    if (s.contains("metadata") && s["metadata"].is_object())
      for (auto& [k, v] : s["metadata"].items())
        if (v.is_string()) row.metadata[k] = v.get<std::string>();
    if (s.contains("usage") && s["usage"].is_object()) {
      const json& u = s["usage"];
      row.usage = SandboxRow::Usage{u.contains("cpuUsedPct") && u["cpuUsedPct"].is_number() ? u["cpuUsedPct"].get<double>() : 0.0,
                                    number(u.value("memUsed", json(0)))};
    }
    out.push_back(std::move(row));
  }
  return out;
}

Result<> RemoteBackend::kill_sandbox(const std::string& id) {
  BRIG_TRY_ASSIGN(r, api_.call("DELETE", "/sandboxes/" + id));
  if (r.status == 404) return sandbox_gone(client::api_error(r));
  if (r.status != 204) return http_error(r);
  return ok();
}

Result<> RemoteBackend::pause_sandbox(const std::string& id, bool keep_memory) {
  BRIG_TRY_ASSIGN(r, api_.call("POST", "/sandboxes/" + id + "/pause", keep_memory ? "{}" : R"({"memory":false})"));
  if (r.status == 404) return sandbox_gone(client::api_error(r));
  if (r.status == 409) return Error::make(errc::conflict, client::api_error(r));
  if (r.status != 204) return http_error(r);
  return ok();
}

Result<> RemoteBackend::resume_sandbox(const std::string& id, bool reboot) {
  BRIG_TRY_ASSIGN(r, api_.call("POST", "/sandboxes/" + id + "/resume", reboot ? R"({"memory":false})" : "{}"));
  if (r.status == 404) return sandbox_gone(client::api_error(r));
  if (r.status == 409) return Error::make(errc::conflict, client::api_error(r));
  if (r.status != 201) return http_error(r);
  return ok();
}

Result<> RemoteBackend::set_timeout(const std::string& id, int64_t seconds) {
  BRIG_TRY_ASSIGN(r, api_.call("POST", "/sandboxes/" + id + "/timeout", dump({{"timeout", seconds}})));
  if (r.status == 404) return sandbox_gone(client::api_error(r));
  if (r.status != 204) return http_error(r);
  return ok();
}

Result<SandboxDomain> RemoteBackend::sandbox_domain(const std::string& id) {
  BRIG_TRY_ASSIGN(r, api_.call("GET", "/sandboxes/" + id));
  if (r.status == 404) return sandbox_gone(client::api_error(r));
  if (r.status != 200) return http_error(r);
  json info = json::parse(r.body, nullptr, false);
  SandboxDomain out{str(info, "domain"), true};
  if (out.domain.empty()) return Error::make(errc::protocol, "the daemon did not say its sandboxes' domain");
  if (info.contains("network") && info["network"].is_object() && info["network"].contains("allowPublicTraffic") &&
      info["network"]["allowPublicTraffic"].is_boolean())
    out.public_traffic = info["network"]["allowPublicTraffic"].get<bool>();
  return out;
}

Result<ExecResult> RemoteBackend::exec(const Exec& req, const OutputFn& on_output, CancelToken* cancel) {
  client::ExecRequest er;
  er.sandbox_id = req.sandbox_id;
  er.cmd = req.cmd;
  er.args = req.args;
  er.cwd = req.cwd;
  er.user = req.user;
  er.env = req.env;
  er.timeout_ms = req.timeout_ms;
  er.stdin = req.stdin;
  er.on_start = req.on_start;
  Bridge bridge(cancel);
  auto r = client::exec(api_, er, on_output, cancel ? &bridge.socket : nullptr);
  if (!r) return gone_or(r.error());
  return ExecResult{r->exited, r->exit_code, r->status, r->oom_killed, r->error};
}

Result<> RemoteBackend::send_input(const std::string& sandbox_id, int pid, std::string_view data) {
  std::map<std::string, std::string> h;
  {
    // One lookup of the sandbox's token per sandbox: code mode sends its runner many messages.
    std::lock_guard lock(envd_mu_);
    if (auto it = envd_cache_.find(sandbox_id); it != envd_cache_.end()) h = it->second;
  }
  if (h.empty()) {
    BRIG_TRY_ASSIGN(got, envd(sandbox_id));
    h = got;
    std::lock_guard lock(envd_mu_);
    if (envd_cache_.size() >= 64) envd_cache_.clear();
    envd_cache_[sandbox_id] = h;
  }
  h["Content-Type"] = "application/json";
  h["Connect-Protocol-Version"] = "1";
  BRIG_TRY_ASSIGN(r, api_.call("POST", "/process.Process/SendInput",
                               dump({{"process", {{"pid", pid}}}, {"input", {{"stdin", base64_encode(data)}}}}), h));
  if (r.status != 200) return http_error(r);
  return ok();
}

Result<CellOutcome> RemoteBackend::run_cell(const Cell& cell, const std::function<void(std::string_view line)>& on_line,
                                            CancelToken* cancel) {
  BRIG_TRY_ASSIGN(headers, envd(cell.sandbox_id));
  headers["E2b-Sandbox-Port"] = "49999";
  headers["Content-Type"] = "application/json";
  json body = {{"code", cell.code}};
  if (cell.timeout_ms > 0) body["timeout_ms"] = cell.timeout_ms;
  if (cell.context_id) body["context_id"] = *cell.context_id;
  if (cell.language) body["language"] = *cell.language;
  if (!cell.env.empty()) body["env_vars"] = cell.env;
  std::string pending, raw;
  Bridge bridge(cancel);
  auto status = api_.stream("POST", "/execute", dump(body), headers, [&](std::string_view d) {
    if (raw.size() < 4096) raw.append(d.substr(0, 4096));
    pending.append(d);
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      on_line(std::string_view(pending).substr(0, nl));
      pending.erase(0, nl + 1);
    }
    return pending.size() < kMaxCellLine + (64u << 20);
  }, cancel ? &bridge.socket : nullptr);  // a cancelled cell: the closed stream interrupts the kernel
  if (!status) return status.error();
  if (*status != 200) return CellOutcome{*status, raw.substr(0, 1000)};
  return CellOutcome{};
}

Result<std::vector<DirEntry>> RemoteBackend::list_dir(const std::string& sandbox_id, const std::string& path, int depth) {
  BRIG_TRY_ASSIGN(headers, envd(sandbox_id));
  headers["Content-Type"] = "application/json";
  headers["Connect-Protocol-Version"] = "1";
  BRIG_TRY_ASSIGN(r, api_.call("POST", "/filesystem.Filesystem/ListDir", dump({{"path", path}, {"depth", depth}}), headers));
  auto j = json::parse(r.body, nullptr, false);
  if (r.status != 200)
    return Error::make(r.status == 404 ? errc::not_found : r.status == 400 ? errc::invalid_argument : errc::protocol,
                       j.is_object() && j.contains("message") && j["message"].is_string() ? j["message"].get<std::string>()
                                                                                           : r.body.substr(0, 200));
  std::vector<DirEntry> out;
  if (!j.is_object() || !j.contains("entries") || !j["entries"].is_array()) return out;
  for (auto& e : j["entries"]) {
    DirEntry d;
    // envd describes a symlink by its target's type; its permissions start with "L".
    d.permissions = str(e, "permissions");
    d.kind = d.permissions.starts_with("L") ? DirEntry::symlink
             : str(e, "type") == "FILE_TYPE_DIRECTORY" ? DirEntry::dir
                                                       : DirEntry::file;
    d.path = str(e, "path");
    d.size = e.is_object() && e.contains("size") ? number(e["size"]) : 0;
    d.owner = str(e, "owner");
    if (d.kind == DirEntry::symlink) d.symlink_target = str(e, "symlinkTarget");
    out.push_back(std::move(d));
  }
  return out;
}

Result<std::string> RemoteBackend::read_file(const std::string& sandbox_id, const std::string& path, size_t max_bytes) {
  BRIG_TRY_ASSIGN(headers, envd(sandbox_id));
  BRIG_TRY_ASSIGN(r, api_.call("GET", "/files?path=" + percent_encode(path, "/"), "", headers, max_bytes));
  if (r.status != 200) return http_error(r);
  return std::move(r.body);
}

Result<> RemoteBackend::write_file(const std::string& sandbox_id, const std::string& path, std::string_view content) {
  BRIG_TRY_ASSIGN(headers, envd(sandbox_id));
  headers["Content-Type"] = "application/octet-stream";
  BRIG_TRY_ASSIGN(r, api_.call("POST", "/files?path=" + percent_encode(path, "/"), std::string(content), headers));
  if (r.status != 200) return http_error(r);
  return ok();
}

Result<Archive> RemoteBackend::download_archive(const std::string& sandbox_id, const std::string& path,
                                                const std::string& format, uint64_t max_bytes, uint32_t max_entries,
                                                size_t max_archive) {
  BRIG_TRY_ASSIGN(headers, envd(sandbox_id));
  std::string target = "/files/archive?format=" + format + "&path=" + percent_encode(path, "/") +
                       "&max_bytes=" + std::to_string(max_bytes) + "&max_entries=" + std::to_string(max_entries);
  BRIG_TRY_ASSIGN(r, api_.call("GET", target, "", headers, max_archive));
  if (r.status != 200) return http_error(r);
  auto num = [&](const char* h) {
    auto it = r.headers.find(h);
    return it == r.headers.end() ? 0ull : std::strtoull(it->second.c_str(), nullptr, 10);
  };
  return Archive{std::move(r.body), num("x-archive-entries"), num("x-archive-bytes")};
}

Result<Unpacked> RemoteBackend::upload_archive(const std::string& sandbox_id, const std::string& path,
                                               const std::string& format, std::string_view archive) {
  BRIG_TRY_ASSIGN(headers, envd(sandbox_id));
  headers["Content-Type"] = format == "zip" ? "application/zip" : "application/gzip";
  BRIG_TRY_ASSIGN(r, api_.call("POST", "/files/archive?format=" + format + "&path=" + percent_encode(path, "/"),
                               std::string(archive), headers));
  if (r.status != 200) return http_error(r);
  json j = json::parse(r.body, nullptr, false);
  if (!j.is_object()) return Error::make(errc::protocol, "unexpected answer: " + r.body.substr(0, 200));
  return Unpacked{j.contains("path") && j["path"].is_string() ? j["path"].get<std::string>() : path,
                  number(j.value("entries", json(0))), number(j.value("bytes", json(0)))};
}

Result<ApiResponse> RemoteBackend::call_api(const std::string& method, const std::string& target, const std::string& body,
                                            size_t max_body) {
  std::map<std::string, std::string> h;
  if (!body.empty()) h["Content-Type"] = "application/json";
  BRIG_TRY_ASSIGN(r, api_.call(method, target, body, h, max_body));
  return ApiResponse{r.status, std::move(r.body)};
}

}  // namespace brig::mcp
