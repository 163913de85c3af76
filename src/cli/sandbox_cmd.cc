// brig sandbox create|list|info|kill|timeout|exec and brig files ls|cat|put|get: the CLI as a
// client of a running `brig serve`.
#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

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
  int timeout = 0;  // create: 0 = the daemon's default (its sandbox.lifetime_s)
  std::vector<std::string> env, metadata, command;
  uint32_t depth = 1;
  bool recursive = false;
  bool follow = false;
  bool disk_only = false;  // pause --disk-only, resume --reboot: memory dropped, its disk kept
  std::string level;
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

int create(ApiClient& c, const Args& a) {
  auto env = pairs(a.env, "--env");
  auto meta = pairs(a.metadata, "--metadata");
  if (!env) return fail(env.error().message());
  if (!meta) return fail(meta.error().message());
  json body = {{"templateID", a.template_name}, {"envVars", *env}, {"metadata", *meta}};
  if (a.timeout > 0) body["timeout"] = a.timeout;
  auto r = c.call("POST", "/v2/sandboxes", body.dump());
  if (!r) return fail(r.error().message());
  if (r->status != 201) return fail(api_error(*r));
  std::printf("%s\n", json::parse(r->body).value("sandboxID", "").c_str());
  return 0;
}

int list(ApiClient& c) {
  auto rows = client::list_sandboxes(c);
  if (!rows) return fail(rows.error().message());
  std::printf("%-22s %-20s %-8s %-9s %-9s %-5s %-6s %-13s %s\n", "SANDBOX ID", "TEMPLATE", "STATE", "STARTED", "ENDS",
              "CPUS", "CPU%", "MEMORY", "METADATA");
  for (auto& s : *rows) {
    std::string md;
    json meta = s.contains("metadata") && s["metadata"].is_object() ? s["metadata"] : json::object();
    for (auto& [k, v] : meta.items())
      if (v.is_string()) md += (md.empty() ? "" : ",") + k + "=" + v.get<std::string>();
    // Memory in use / the limit; "-" where the daemon gave no reading.
    std::string cpu = "-", mem = "-/" + std::to_string(s.value("memoryMB", 0)) + "M";
    if (s.contains("usage") && s["usage"].is_object()) {
      char pct[16];
      std::snprintf(pct, sizeof pct, "%.1f", s["usage"].value("cpuUsedPct", 0.0));
      cpu = pct;
      mem = std::to_string(s["usage"].value("memUsed", uint64_t{0}) >> 20) + "M/" + std::to_string(s.value("memoryMB", 0)) + "M";
    }
    std::printf("%-22s %-20s %-8s %-9s %-9s %-5d %-6s %-13s %s\n", s.value("sandboxID", "").c_str(),
                s.value("alias", "").c_str(), s.value("state", "running").c_str(), short_time(s.value("startedAt", "")).c_str(),
                short_time(s.value("endAt", "")).c_str(), s.value("cpuCount", 0), cpu.c_str(), mem.c_str(), md.c_str());
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

// "2026-12-02T04:35:50.123Z" -> unix ms (0 if it is not that shape).
int64_t unix_ms_of(const std::string& t) {
  struct tm tm = {};
  const char* rest = strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return 0;
  int ms = 0;
  if (*rest == '.') ms = std::atoi(rest + 1);
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

// The sandbox's log, oldest first; with --follow, what comes next, until the sandbox ends.
int logs(ApiClient& c, const Args& a) {
  int64_t cursor = 0;
  size_t seen_at_cursor = 0;  // entries at `cursor` already printed (a cursor is inclusive)
  for (;;) {
    std::string target = "/v2/sandboxes/" + a.id + "/logs?cursor=" + std::to_string(cursor);
    if (!a.level.empty()) target += "&level=" + percent_encode(a.level, "");
    auto r = c.call("GET", target);
    if (!r) return fail(r.error().message());
    if (r->status != 200) return fail(api_error(*r));
    auto j = json::parse(r->body, nullptr, false);
    if (!j.is_object() || !j["logs"].is_array()) return fail("unexpected answer: " + r->body.substr(0, 200));
    size_t skip = seen_at_cursor;
    bool ended = false;
    for (const json& e : j["logs"]) {
      int64_t at = unix_ms_of(e.value("timestamp", ""));
      if (at == cursor && skip > 0) {
        --skip;
        continue;
      }
      std::string line = e.value("timestamp", "") + " " + e.value("level", "") + " " + e.value("message", "");
      if (e.contains("fields") && e["fields"].is_object())
        for (const auto& [k, v] : e["fields"].items()) line += " " + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
      std::printf("%s\n", line.c_str());
      seen_at_cursor = at == cursor ? seen_at_cursor + 1 : 1;
      cursor = at;
      const std::string msg = e.value("message", "");
      ended = msg == "Sandbox killed" || msg.starts_with("Sandbox ended");
    }
    std::fflush(stdout);
    if (!a.follow || ended) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

// Pause (processes kept, frozen; or, --disk-only, stopped with the disk kept; the lifetime
// clock stops either way) and resume (thawed, or booted again on the disk).
int pause(ApiClient& c, const Args& a) {
  json body = json::object();
  if (a.disk_only) body["memory"] = false;
  auto r = c.call("POST", "/sandboxes/" + a.id + "/pause", body.dump());
  if (!r) return fail(r.error().message());
  if (r->status != 204) return fail(api_error(*r));
  std::printf("paused %s%s\n", a.id.c_str(), a.disk_only ? " (its disk is kept, its processes are stopped)" : "");
  return 0;
}

int resume(ApiClient& c, const Args& a) {
  json body = json::object();
  if (a.timeout > 0) body["timeout"] = a.timeout;
  if (a.disk_only) body["memory"] = false;
  auto r = c.call("POST", "/sandboxes/" + a.id + "/resume", body.dump());
  if (!r) return fail(r.error().message());
  if (r->status != 201) return fail(api_error(*r));
  std::printf("resumed %s\n", a.id.c_str());
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
  auto env = pairs(a.env, "--env");
  if (!env) return fail(env.error().message());
  client::ExecRequest req{a.id, a.command[0], {a.command.begin() + 1, a.command.end()}, a.cwd, a.user, *env};
  auto r = client::exec(c, req, [](bool is_stderr, std::string_view d) {
    std::fwrite(d.data(), 1, d.size(), is_stderr ? stderr : stdout);
    if (!is_stderr) std::fflush(stdout);
  });
  if (!r) return fail(r.error().message());
  if (r->oom_killed) {
    std::cerr << "brig: command killed: out of memory (the sandbox's memory limit; `brig sandbox list` shows it)\n";
    return r->exited ? r->exit_code : 128 + 9;  // 137, as `brig run`
  }
  if (!r->exited && r->exit_code < 0 && !r->error.empty()) return fail(r->error, 126);
  if (!r->exited) std::cerr << "brig: command ended by " << (r->status.empty() ? "a signal" : r->status) << "\n";
  return r->exited ? r->exit_code : 128 + 9;
}

// Unpacks the tar.gz or zip in `in` into directory `dir` (created). The archive came from a
// sandbox, so it is untrusted: no absolute paths, no "..", nothing written through a symlink,
// no owners or set-id bits restored.
Result<std::pair<uint64_t, uint64_t>> extract_local(FILE* in, const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return Error::from_errno(errno, "mkdir " + dir);
  if (::chdir(dir.c_str()) != 0) return Error::from_errno(errno, "cd " + dir);
  struct archive* r = archive_read_new();
  archive_read_support_filter_gzip(r);
  archive_read_support_format_tar(r);
  archive_read_support_format_zip(r);
  struct archive* w = archive_write_disk_new();
  archive_write_disk_set_options(w, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                        ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
  std::string err;
  uint64_t entries = 0, bytes = 0;
  if (archive_read_open_FILE(r, in) != ARCHIVE_OK) err = archive_error_string(r) ? archive_error_string(r) : "unreadable";
  struct archive_entry* e;
  int rc = ARCHIVE_OK;
  auto str = [](const char* s) { return std::string(s ? s : "?"); };
  while (err.empty() && ((rc = archive_read_next_header(r, &e)) == ARCHIVE_OK || rc == ARCHIVE_WARN)) {
    // Only files, directories and symlinks: no hard links, devices or FIFOs on the host.
    auto type = archive_entry_filetype(e);
    if (archive_entry_hardlink(e) || (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)) {
      err = "refused '" + str(archive_entry_pathname(e)) + "': not a file, directory or symlink";
      break;
    }
    if (archive_write_header(w, e) < ARCHIVE_WARN) {
      err = "refused '" + str(archive_entry_pathname(e)) + "': " + str(archive_error_string(w));
      break;
    }
    const void* block;
    size_t size;
    la_int64_t offset;
    while (archive_read_data_block(r, &block, &size, &offset) == ARCHIVE_OK) {
      archive_write_data_block(w, block, size, offset);
      bytes += size;
    }
    archive_write_finish_entry(w);
    ++entries;
  }
  if (err.empty() && rc != ARCHIVE_EOF) err = archive_error_string(r) ? archive_error_string(r) : "truncated archive";
  archive_write_free(w);
  archive_read_free(r);
  if (!err.empty()) return Error::make(errc::protocol, err);
  return std::make_pair(entries, bytes);
}

// files get -r: the remote directory as an archive, kept as is (LOCAL ends in .tar.gz, .tgz or
// .zip) or unpacked into the directory LOCAL.
int get_recursive(ApiClient& c, std::map<std::string, std::string> headers, const Args& a, const std::string& qpath) {
  auto ends = [&](const char* s) { return a.local.ends_with(s); };
  bool keep = ends(".tar.gz") || ends(".tgz") || ends(".zip");
  std::string format = ends(".zip") ? "zip" : "tar.gz";
  // A kept archive is written beside LOCAL and renamed over it only when complete.
  const std::string partial = a.local + ".part";
  FILE* out = keep ? std::fopen(partial.c_str(), "wbx") : std::tmpfile();
  if (!out) return fail("cannot write " + (keep ? partial : std::string("a temporary file")) + ": " + std::strerror(errno));
  uint64_t got = 0;
  auto last = std::chrono::steady_clock::now();
  bool tty = ::isatty(2);
  auto status = c.stream("GET", "/files/archive?format=" + format + "&path=" + qpath, "", headers, [&](std::string_view d) {
    std::fwrite(d.data(), 1, d.size(), out);
    got += d.size();
    if (tty && std::chrono::steady_clock::now() - last > std::chrono::milliseconds(500)) {
      std::fprintf(stderr, "\r%s received", format_size(got).c_str());
      last = std::chrono::steady_clock::now();
    }
    return true;
  });
  if (tty && got) std::fprintf(stderr, "\r\033[K");
  std::fflush(out);
  auto body = [&] {
    std::rewind(out);
    std::string s(std::min<uint64_t>(got, 4096), '\0');
    s.resize(std::fread(s.data(), 1, s.size(), out));
    return s;
  };
  if (!status || *status != 200) {
    std::string msg = status ? api_error({*status, {}, body()}) : status.error().message();
    std::fclose(out);
    if (keep) ::unlink(partial.c_str());
    return fail("cannot download " + a.path + ": " + msg);
  }
  if (keep) {
    std::fclose(out);
    if (::rename(partial.c_str(), a.local.c_str()) != 0) return fail("cannot write " + a.local + ": " + std::strerror(errno));
    std::printf("%s -> %s (%s)\n", a.path.c_str(), a.local.c_str(), format_size(got).c_str());
    return 0;
  }
  std::rewind(out);
  auto done = extract_local(out, a.local);
  std::fclose(out);
  if (!done) return fail("cannot unpack into " + a.local + ": " + done.error().message());
  std::printf("%s -> %s/ (%llu entries, %s)\n", a.path.c_str(), a.local.c_str(),
              static_cast<unsigned long long>(done->first), format_size(done->second).c_str());
  return 0;
}

int files(ApiClient& c, const std::string& verb, const Args& a) {
  auto headers = c.envd_headers(a.id);
  if (!headers) return fail(headers.error().message());
  auto q = [](const std::string& p) { return percent_encode(p, "/"); };
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
  if (verb == "get" && a.recursive) return get_recursive(c, *headers, a, q(a.path));
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
  create->add_option("template", a->template_name, "Template (base, minimal, python3, node, code-interpreter-v1 or "
                                                    "one built on the server)")
      ->capture_default_str();
  create->add_option("-t,--template", a->template_name, "The same as the positional TEMPLATE");
  create->add_option("--timeout", a->timeout, "Lifetime in seconds (default: the daemon's sandbox.lifetime_s, 300)");
  create->add_option("-e,--env", a->env, "KEY=VALUE (repeatable)");
  create->add_option("-m,--metadata", a->metadata, "KEY=VALUE (repeatable)");
  create->footer("Examples:\n  brig sandbox create\n  brig sandbox create python3 --timeout 600 -m owner=me");
  auto* ls = sb->add_subcommand("list", "List sandboxes: state, CPU % (of the sandbox's CPUs) and memory in use / limit.");
  auto* info_cmd = sb->add_subcommand("info", "Show one sandbox.");
  info_cmd->add_option("id", a->id)->required();
  auto* kill_cmd = sb->add_subcommand("kill", "Kill a sandbox.");
  kill_cmd->add_option("id", a->id)->required();
  auto* pause_cmd = sb->add_subcommand("pause", "Pause a sandbox: its processes stay, frozen; it uses no CPU and its "
                                                "lifetime clock stops until it is resumed.");
  pause_cmd->add_option("id", a->id)->required();
  pause_cmd->add_flag("--disk-only", a->disk_only,
                      "Keep only its disk: its processes stop, it survives a restart of the host, and resume boots it "
                      "again on the disk (E2B's keepMemory: false)");
  auto* resume_cmd = sb->add_subcommand("resume", "Resume a paused sandbox where it was (one paused with --disk-only "
                                                  "boots again on its disk).");
  resume_cmd->add_option("id", a->id)->required();
  resume_cmd->add_flag("--reboot", a->disk_only,
                       "Drop the memory it kept and boot it again on its disk (E2B's onResume: 'reboot'); the only way "
                       "back for a sandbox whose memory was lost to a host restart");
  resume_cmd->add_option("--timeout", a->timeout, "Seconds it then runs (default: what it had left when paused)");
  auto* timeout = sb->add_subcommand("timeout", "Set a sandbox's remaining lifetime.");
  timeout->add_option("id", a->id)->required();
  timeout->add_option("seconds", a->timeout)->required();
  auto* logs_cmd = sb->add_subcommand("logs", "Print a sandbox's log: its lifecycle, its processes' starts and ends, "
                                               "and its egress decisions (a live sandbox's or a recently ended one's).");
  logs_cmd->add_option("id", a->id)->required();
  logs_cmd->add_flag("-f,--follow", a->follow, "Keep printing new entries until the sandbox ends");
  logs_cmd->add_option("--level", a->level, "The least level shown: debug, info, warn or error");
  logs_cmd->footer("Examples:\n  brig sandbox logs ID\n  brig sandbox logs -f --level warn ID");
  auto* exec_cmd = sb->add_subcommand("exec", "Run a command in a sandbox, streaming its output.");
  exec_cmd->add_option("id", a->id)->required();
  exec_cmd->add_option("-u,--user", a->user, "user or root");
  exec_cmd->add_option("-w,--cwd", a->cwd, "Working directory");
  exec_cmd->add_option("-e,--env", a->env, "KEY=VALUE (repeatable)");
  exec_cmd->add_option("command", a->command, "Command and arguments (after --)")->required();
  exec_cmd->positionals_at_end();
  return [=, &globals]() -> int {
    if (!sb->parsed()) return -1;
    auto c = daemon_client(globals.config);
    if (!c) return fail(c.error().message());
    if (create->parsed()) return brig::cli::create(*c, *a);
    if (ls->parsed()) return list(*c);
    if (info_cmd->parsed()) return info(*c, *a);
    if (kill_cmd->parsed()) return brig::cli::kill(*c, *a);
    if (timeout->parsed()) return set_timeout(*c, *a);
    if (logs_cmd->parsed()) return logs(*c, *a);
    if (pause_cmd->parsed()) return pause(*c, *a);
    if (resume_cmd->parsed()) return resume(*c, *a);
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
  auto* get = f->add_subcommand("get", "Download a file, or with -r a directory.");
  get->add_option("id", a->id)->required();
  get->add_option("path", a->path)->required();
  get->add_option("local", a->local,
                  "Local file; with -r a directory to unpack into, or an archive to keep (.tar.gz, .tgz, .zip)")
      ->required();
  get->add_flag("-r,--recursive", a->recursive,
                "Download the directory PATH as an archive (symlinks stay links; nothing outside LOCAL is written)");
  get->footer("Examples:\n  brig files get ID /home/user/out.csv out.csv\n  brig files get -r ID /home/user/project ./project\n"
              "  brig files get -r ID /home/user/project project.zip");
  return [=, &globals]() -> int {
    if (!f->parsed()) return -1;
    auto c = daemon_client(globals.config);
    if (!c) return fail(c.error().message());
    std::string verb = ls->parsed() ? "ls" : cat->parsed() ? "cat" : put->parsed() ? "put" : "get";
    return files(*c, verb, *a);
  };
}

}  // namespace brig::cli
