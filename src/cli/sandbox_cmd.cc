// brig sandbox create|list|info|kill|timeout|exec and brig files ls|cat|put|get: the CLI as a
// client of a running `brig serve`.
#include <openssl/evp.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/util.h"
#include "client/api_client.h"
#include "cli/commands.h"

namespace brig::cli {
namespace {

using client::ApiClient;
using client::api_error;

using nlohmann::json;

struct Args {
  std::string id, template_name = "base", path, local, user, cwd;
  int timeout = 300;
  std::vector<std::string> env, metadata, command;
  uint32_t depth = 1;
};

int fail(const std::string& msg, int code = 1) {
  std::cerr << "brig: " << msg << "\n";
  return code;
}

Result<std::map<std::string, std::string>> pairs(const std::vector<std::string>& kvs, const char* flag) {
  std::map<std::string, std::string> out;
  for (auto& kv : kvs) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return Error::make(errc::invalid_argument, std::string(flag) + " wants KEY=VALUE");
    out[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return out;
}

std::string short_time(const std::string& rfc3339) { return rfc3339.size() >= 19 ? rfc3339.substr(11, 8) : rfc3339; }

std::string b64decode(const std::string& in) {
  std::string out(in.size() / 4 * 3 + 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),  // SAFETY: byte buffers
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return "";
  size_t len = static_cast<size_t>(n);
  for (size_t i = in.size(); i > 0 && in[i - 1] == '='; --i) --len;
  out.resize(len);
  return out;
}

int create(ApiClient& c, const Args& a) {
  auto env = pairs(a.env, "--env");
  auto meta = pairs(a.metadata, "--metadata");
  if (!env) return fail(env.error().message());
  if (!meta) return fail(meta.error().message());
  json body = {{"templateID", a.template_name}, {"timeout", a.timeout}, {"envVars", *env}, {"metadata", *meta}};
  auto r = c.call("POST", "/v2/sandboxes", body.dump());
  if (!r) return fail(r.error().message());
  if (r->status != 201) return fail(api_error(*r));
  std::printf("%s\n", json::parse(r->body).value("sandboxID", "").c_str());
  return 0;
}

int list(ApiClient& c) {
  auto r = c.call("GET", "/v2/sandboxes?limit=1000");
  if (!r) return fail(r.error().message());
  if (r->status != 200) return fail(api_error(*r));
  auto rows = json::parse(r->body, nullptr, false);
  std::printf("%-22s %-20s %-9s %-9s %-5s %-7s %s\n", "SANDBOX ID", "TEMPLATE", "STARTED", "ENDS", "CPUS", "MEMORY", "METADATA");
  for (auto& s : rows) {
    std::string md;
    json meta = s.contains("metadata") && s["metadata"].is_object() ? s["metadata"] : json::object();
    for (auto& [k, v] : meta.items())
      if (v.is_string()) md += (md.empty() ? "" : ",") + k + "=" + v.get<std::string>();
    std::printf("%-22s %-20s %-9s %-9s %-5d %-7s %s\n", s.value("sandboxID", "").c_str(), s.value("alias", "").c_str(),
                short_time(s.value("startedAt", "")).c_str(), short_time(s.value("endAt", "")).c_str(), s.value("cpuCount", 0),
                (std::to_string(s.value("memoryMB", 0)) + "M").c_str(), md.c_str());
  }
  return 0;
}

int info(ApiClient& c, const Args& a) {
  auto r = c.call("GET", "/sandboxes/" + a.id);
  if (!r) return fail(r.error().message());
  if (r->status != 200) return fail(api_error(*r));
  auto j = json::parse(r->body, nullptr, false);
  j.erase("envdAccessToken");  // a secret: not for terminals or logs
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}

int kill(ApiClient& c, const Args& a) {
  auto r = c.call("DELETE", "/sandboxes/" + a.id);
  if (!r) return fail(r.error().message());
  if (r->status != 204) return fail(api_error(*r));
  std::printf("killed %s\n", a.id.c_str());
  return 0;
}

int set_timeout(ApiClient& c, const Args& a) {
  auto r = c.call("POST", "/sandboxes/" + a.id + "/timeout", json{{"timeout", a.timeout}}.dump());
  if (!r) return fail(r.error().message());
  if (r->status != 204) return fail(api_error(*r));
  std::printf("sandbox %s now ends in %d s\n", a.id.c_str(), a.timeout);
  return 0;
}

// exec: process.Process/Start over Connect (JSON), output streamed as it arrives.
int exec(ApiClient& c, Args a) {
  if (!a.command.empty() && a.command.front() == "--") a.command.erase(a.command.begin());
  if (a.command.empty()) return fail("no command given (brig sandbox exec ID -- CMD ARGS...)");
  auto headers = c.envd_headers(a.id);
  if (!headers) return fail(headers.error().message());
  (*headers)["Content-Type"] = "application/connect+json";
  (*headers)["Connect-Protocol-Version"] = "1";
  if (!a.user.empty()) {
    std::string raw = a.user + ":";
    std::string b64(4 * ((raw.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()),  // SAFETY: byte buffers
                            reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()));
    b64.resize(static_cast<size_t>(n));
    (*headers)["Authorization"] = "Basic " + b64;
  }
  json proc = {{"cmd", a.command[0]}, {"args", std::vector<std::string>(a.command.begin() + 1, a.command.end())}};
  if (!a.cwd.empty()) proc["cwd"] = a.cwd;
  auto env = pairs(a.env, "--env");
  if (!env) return fail(env.error().message());
  if (!env->empty()) proc["envs"] = *env;
  std::string msg = json{{"process", proc}, {"stdin", false}}.dump();
  std::string body(5, '\0');
  body[1] = static_cast<char>(msg.size() >> 24);
  body[2] = static_cast<char>(msg.size() >> 16);
  body[3] = static_cast<char>(msg.size() >> 8);
  body[4] = static_cast<char>(msg.size());
  body += msg;
  std::string pending;
  int exit_code = -1;
  std::string error;
  auto on_data = [&](std::string_view d) {
    pending.append(d);
    while (pending.size() >= 5) {
      uint32_t n = (static_cast<uint32_t>(static_cast<uint8_t>(pending[1])) << 24) |
                   (static_cast<uint32_t>(static_cast<uint8_t>(pending[2])) << 16) |
                   (static_cast<uint32_t>(static_cast<uint8_t>(pending[3])) << 8) | static_cast<uint8_t>(pending[4]);
      if (pending.size() < 5 + n) break;
      bool end_stream = pending[0] & 2;
      auto j = json::parse(pending.substr(5, n), nullptr, false);
      pending.erase(0, 5 + n);
      if (end_stream) {
        if (j.is_object() && j.contains("error")) error = j["error"].value("message", "error");
        continue;
      }
      if (!j.is_object() || !j.contains("event")) continue;
      auto& ev = j["event"];
      if (ev.contains("data")) {
        auto& data = ev["data"];
        if (data.contains("stdout")) {
          auto s = b64decode(data["stdout"].get<std::string>());
          std::fwrite(s.data(), 1, s.size(), stdout);
          std::fflush(stdout);
        }
        if (data.contains("stderr")) {
          auto s = b64decode(data["stderr"].get<std::string>());
          std::fwrite(s.data(), 1, s.size(), stderr);
        }
      } else if (ev.contains("end")) {
        auto& end = ev["end"];
        exit_code = end.value("exited", false) ? end.value("exitCode", 0) : 128 + 9;
      }
    }
    return true;
  };
  auto status = c.stream("POST", "/process.Process/Start", body, *headers, on_data);
  if (!status) return fail(status.error().message());
  if (*status != 200) return fail("exec failed (HTTP " + std::to_string(*status) + ")");
  if (!error.empty() && exit_code < 0) return fail(error, 126);
  return exit_code < 0 ? 1 : exit_code;
}

int files(ApiClient& c, const std::string& verb, const Args& a) {
  auto headers = c.envd_headers(a.id);
  if (!headers) return fail(headers.error().message());
  auto q = [](const std::string& p) {
    std::string out;
    for (unsigned char ch : p) {
      if (std::isalnum(ch) || ch == '/' || ch == '-' || ch == '_' || ch == '.' || ch == '~') out += static_cast<char>(ch);
      else {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%%%02X", ch);
        out += buf;
      }
    }
    return out;
  };
  if (verb == "ls") {
    (*headers)["Content-Type"] = "application/json";
    (*headers)["Connect-Protocol-Version"] = "1";
    auto r = c.call("POST", "/filesystem.Filesystem/ListDir", json{{"path", a.path}, {"depth", a.depth}}.dump(), *headers);
    if (!r) return fail(r.error().message());
    auto j = json::parse(r->body, nullptr, false);
    if (r->status != 200) return fail(j.is_object() ? j.value("message", r->body) : r->body);
    json entries = j.contains("entries") ? j["entries"] : json::array();
    for (auto& e : entries)
      std::printf("%s %-6s %10s %s\n", e.value("permissions", "").c_str(), e.value("owner", "").c_str(),
                  e.value("size", std::string("0")).c_str(), e.value("path", "").c_str());
    return 0;
  }
  if (verb == "cat" || verb == "get") {
    auto r = c.call("GET", "/files?path=" + q(a.path), "", *headers);
    if (!r) return fail(r.error().message());
    if (r->status != 200) return fail(api_error(*r));
    if (verb == "cat") {
      std::fwrite(r->body.data(), 1, r->body.size(), stdout);
      return 0;
    }
    std::ofstream out(a.local, std::ios::binary);
    out << r->body;
    if (!out) return fail("cannot write " + a.local);
    std::printf("%s -> %s (%s)\n", a.path.c_str(), a.local.c_str(), format_size(r->body.size()).c_str());
    return 0;
  }
  // put
  std::ifstream in(a.local, std::ios::binary);
  if (!in) return fail("cannot read " + a.local);
  std::stringstream ss;
  ss << in.rdbuf();
  (*headers)["Content-Type"] = "application/octet-stream";
  auto r = c.call("POST", "/files?path=" + q(a.path), ss.str(), *headers);
  if (!r) return fail(r.error().message());
  if (r->status != 200) return fail(api_error(*r));
  std::printf("%s -> %s:%s\n", a.local.c_str(), a.id.c_str(), a.path.c_str());
  return 0;
}

}  // namespace

Runner add_sandbox(CLI::App& app, Globals& globals) {
  auto a = std::make_shared<Args>();
  auto* sb = app.add_subcommand("sandbox", "Manage sandboxes of a running `brig serve` (BRIG_URL, BRIG_API_KEY).");
  sb->require_subcommand(1);
  auto* create = sb->add_subcommand("create", "Create a sandbox and print its id.");
  create->add_option("-t,--template", a->template_name, "Template")->capture_default_str();
  create->add_option("--timeout", a->timeout, "Lifetime in seconds")->capture_default_str();
  create->add_option("-e,--env", a->env, "KEY=VALUE (repeatable)");
  create->add_option("-m,--metadata", a->metadata, "KEY=VALUE (repeatable)");
  auto* ls = sb->add_subcommand("list", "List running sandboxes.");
  auto* info_cmd = sb->add_subcommand("info", "Show one sandbox.");
  info_cmd->add_option("id", a->id)->required();
  auto* kill_cmd = sb->add_subcommand("kill", "Kill a sandbox.");
  kill_cmd->add_option("id", a->id)->required();
  auto* timeout = sb->add_subcommand("timeout", "Set a sandbox's remaining lifetime.");
  timeout->add_option("id", a->id)->required();
  timeout->add_option("seconds", a->timeout)->required();
  auto* exec_cmd = sb->add_subcommand("exec", "Run a command in a sandbox, streaming its output.");
  exec_cmd->add_option("id", a->id)->required();
  exec_cmd->add_option("-u,--user", a->user, "user or root");
  exec_cmd->add_option("-w,--cwd", a->cwd, "Working directory");
  exec_cmd->add_option("-e,--env", a->env, "KEY=VALUE (repeatable)");
  exec_cmd->add_option("command", a->command, "Command and arguments (after --)")->required();
  exec_cmd->positionals_at_end();
  return [=, &globals]() -> int {
    if (!sb->parsed()) return -1;
    auto c = ApiClient::from_env(globals.state_dir);
    if (!c) return fail(c.error().message());
    if (create->parsed()) return brig::cli::create(*c, *a);
    if (ls->parsed()) return list(*c);
    if (info_cmd->parsed()) return info(*c, *a);
    if (kill_cmd->parsed()) return brig::cli::kill(*c, *a);
    if (timeout->parsed()) return set_timeout(*c, *a);
    if (exec_cmd->parsed()) return exec(*c, *a);
    return 2;
  };
}

Runner add_files(CLI::App& app, Globals& globals) {
  auto a = std::make_shared<Args>();
  auto* f = app.add_subcommand("files", "Files in a sandbox of a running `brig serve`.");
  f->require_subcommand(1);
  auto* ls = f->add_subcommand("ls", "List a directory.");
  ls->add_option("id", a->id)->required();
  ls->add_option("path", a->path)->required();
  ls->add_option("-d,--depth", a->depth, "Depth")->capture_default_str();
  auto* cat = f->add_subcommand("cat", "Print a file.");
  cat->add_option("id", a->id)->required();
  cat->add_option("path", a->path)->required();
  auto* put = f->add_subcommand("put", "Upload a local file.");
  put->add_option("id", a->id)->required();
  put->add_option("local", a->local)->required();
  put->add_option("path", a->path, "Destination in the sandbox")->required();
  auto* get = f->add_subcommand("get", "Download a file.");
  get->add_option("id", a->id)->required();
  get->add_option("path", a->path)->required();
  get->add_option("local", a->local)->required();
  return [=, &globals]() -> int {
    if (!f->parsed()) return -1;
    auto c = ApiClient::from_env(globals.state_dir);
    if (!c) return fail(c.error().message());
    std::string verb = ls->parsed() ? "ls" : cat->parsed() ? "cat" : put->parsed() ? "put" : "get";
    return files(*c, verb, *a);
  };
}

}  // namespace brig::cli
