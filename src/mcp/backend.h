// mcp::Backend: everything the MCP tools (mcp/server.cc) and code mode (mcp/code_mode.cc) do to
// brig, and nothing more. Two implementations:
//  - RemoteBackend (mcp/remote_backend.h): a client of a daemon's API over HTTP, acting with
//    the key it was given; `brig mcp` on stdio uses it.
//  - the daemon's own (server/mcp_backend.h): calls core::Service in process for the daemon's
//    /mcp and /mcp/code endpoints, after the caller's key was checked.
// The tools format results and errors the same way whichever backend they are given.
//
// Errors are Error values whose message a model can read as is. An operation on a sandbox that
// does not exist (or no longer runs) fails with sandbox_gone(), so a tool can say where to find
// the live ones.
//
// Thread safety: a Backend may be called from several threads at once. CancelToken and OnCancel
// are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace brig::mcp {

// Cancels a tool call in progress from another thread (notifications/cancelled). The backend
// doing the work registers what stopping means for it (shutting down a socket, killing a
// process) with OnCancel; loops may also poll cancelled().
class CancelToken {
 public:
  // Marks the token cancelled and runs the hooks registered now (on this thread); idempotent.
  void cancel();
  bool cancelled();

 private:
  friend class OnCancel;
  std::mutex mu_;
  bool cancelled_ = false;
  std::vector<const std::function<void()>*> hooks_;
};

// Runs `hook` if `token` (may be null) is cancelled while this object lives, at once if it
// already is. Hooks run under the token's lock: once the OnCancel is destroyed its hook is not
// running and never will, so it may capture locals. A hook must not touch the token.
class OnCancel {
 public:
  OnCancel(CancelToken* token, std::function<void()> hook);
  ~OnCancel();
  OnCancel(const OnCancel&) = delete;
  OnCancel& operator=(const OnCancel&) = delete;

 private:
  CancelToken* token_;
  std::function<void()> hook_;
};

// The error of an operation on sandbox `id` when it does not exist or no longer runs.
Error sandbox_gone(std::string message);
bool is_sandbox_gone(const Error& e);

// ---- what goes in and out -----------------------------------------------------------------

struct NewSandbox {
  std::string template_ref = "base";
  int64_t timeout_s = 300;
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> metadata;
  std::optional<bool> allow_internet_access;  // nullopt: the daemon's default
  // E2B's network.allowOut / denyOut (IPs, CIDRs; domains in allowOut need 0.0.0.0/0 denied);
  // nullopt: the daemon's default.
  std::optional<std::vector<std::string>> allow_out, deny_out;
};
struct CreatedSandbox {
  std::string id;
  std::string template_name;
  std::string ends_at;  // RFC 3339; "" if it could not be read back
};

struct SandboxRow {
  std::string id, template_name, state;
  std::string started_at, ends_at;  // RFC 3339
  uint32_t cpu_count = 0;
  uint64_t memory_mb = 0;  // the limit
  std::map<std::string, std::string> metadata;
  struct Usage {
    double cpu_used_pct = 0;  // of the sandbox's CPUs, since the previous reading
    uint64_t mem_used = 0;    // bytes
  };
  std::optional<Usage> usage;  // none when no reading could be taken
};

// A process to run to its end, its output streamed as it comes.
struct Exec {
  std::string sandbox_id;
  std::string cmd;
  std::vector<std::string> args;
  std::string cwd;   // "" = the template's workdir
  std::string user;  // "" = the template's user
  std::map<std::string, std::string> env;
  int timeout_ms = 0;  // 0 = none; past it the process group is killed
  bool stdin = false;  // a stdin pipe (see send_input), else /dev/null
  std::function<void(int pid)> on_start;
};
struct ExecResult {
  bool exited = false;      // false: killed by a signal
  int exit_code = -1;       // when exited
  std::string status;       // "exit status 1", "signal: killed"
  bool oom_killed = false;  // the kernel's OOM killer ended it
  std::string error;        // why it did not finish (its timeout), if it did not
};
using OutputFn = std::function<void(bool is_stderr, std::string_view bytes)>;

// A notebook cell for the sandbox's code interpreter.
struct Cell {
  std::string sandbox_id;
  std::string code;
  std::optional<std::string> context_id;  // either a context...
  std::optional<std::string> language;    // ...or a language
  std::map<std::string, std::string> env;
  int64_t timeout_ms = 0;  // interrupts the cell (its kernel and state stay)
};
// 200 when the cell ran; otherwise the code interpreter refused it, with this status and body.
struct CellOutcome {
  int status = 200;
  std::string refusal;
};

struct DirEntry {
  enum Kind { file, dir, symlink } kind = file;
  std::string path;
  uint64_t size = 0;
  std::string permissions;  // "drwxr-xr-x"; "L…" for a symlink
  std::string owner;
  std::string symlink_target;  // for a symlink: what it resolves to
};

struct Archive {
  std::string data;  // tar.gz or zip
  uint64_t entries = 0, bytes = 0;
};
struct Unpacked {
  std::string path;
  uint64_t entries = 0, bytes = 0;
};

// Where a sandbox's ports are reached through the daemon's data plane: <port>-<id>.<domain>.
struct SandboxDomain {
  std::string domain;           // the daemon's domain, with its port ("localhost:49982")
  bool public_traffic = true;   // false: the ports want the e2b-traffic-access-token header
};

struct ApiResponse {
  int status = 0;
  std::string body;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // -- sandboxes
  virtual Result<CreatedSandbox> create_sandbox(const NewSandbox& req) = 0;
  // The running sandboxes whose metadata has every pair of `metadata` (at most 1000), newest
  // first, each with its latest usage.
  virtual Result<std::vector<SandboxRow>> list_sandboxes(const std::map<std::string, std::string>& metadata) = 0;
  virtual Result<> kill_sandbox(const std::string& id) = 0;
  virtual Result<> set_timeout(const std::string& id, int64_t seconds) = 0;
  // E2B's memory pause and its resume (errc::conflict when it is paused, or running, already).
  // `keep_memory` false: its processes stop and its disk is kept (a filesystem pause); `reboot`:
  // a paused sandbox boots again on its disk, its memory (if kept) dropped.
  virtual Result<> pause_sandbox(const std::string& id, bool keep_memory) = 0;
  virtual Result<> resume_sandbox(const std::string& id, bool reboot) = 0;
  virtual Result<SandboxDomain> sandbox_domain(const std::string& id) = 0;

  // -- processes. errc::conflict when `cancel` fired (the process is killed then).
  virtual Result<ExecResult> exec(const Exec& req, const OutputFn& on_output, CancelToken* cancel = nullptr) = 0;
  virtual Result<> send_input(const std::string& sandbox_id, int pid, std::string_view data) = 0;

  // -- code cells: each line of the code interpreter's NDJSON stream (the /execute shape) to
  // `on_line`. errc::conflict when `cancel` fired (the cell is interrupted then).
  virtual Result<CellOutcome> run_cell(const Cell& cell, const std::function<void(std::string_view line)>& on_line,
                                       CancelToken* cancel = nullptr) = 0;

  // -- files, as the template's user
  virtual Result<std::vector<DirEntry>> list_dir(const std::string& sandbox_id, const std::string& path, int depth) = 0;
  // errc::limit_exceeded when the file is larger than `max_bytes`.
  virtual Result<std::string> read_file(const std::string& sandbox_id, const std::string& path, size_t max_bytes) = 0;
  // Creates the parent directories; replaces an existing file.
  virtual Result<> write_file(const std::string& sandbox_id, const std::string& path, std::string_view content) = 0;
  // `path` as an archive of `format` ("tar.gz" or "zip"): at most `max_bytes` of files and
  // `max_entries` entries (refused otherwise), errc::limit_exceeded past `max_archive` bytes.
  virtual Result<Archive> download_archive(const std::string& sandbox_id, const std::string& path,
                                           const std::string& format, uint64_t max_bytes, uint32_t max_entries,
                                           size_t max_archive) = 0;
  // Unpacks `archive` into directory `path` (created), after checking every entry.
  virtual Result<Unpacked> upload_archive(const std::string& sandbox_id, const std::string& path,
                                          const std::string& format, std::string_view archive) = 0;

  // -- brig's REST API (code mode's api.request, already checked by code_mode::check_request):
  // `target` is a path and query of the control plane, `body` JSON or empty.
  // errc::limit_exceeded past `max_body` bytes of answer.
  virtual Result<ApiResponse> call_api(const std::string& method, const std::string& target, const std::string& body,
                                       size_t max_body) = 0;
};

}  // namespace brig::mcp
