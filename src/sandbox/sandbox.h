// Sandbox: one isolated Linux environment, backend-neutral. Processes run in it, files are
// read and written in it (always resolved inside the sandbox, as the requested user), and
// killing it removes everything it had.
//
// Thread safety: every method may be called from any thread, but with an event loop, not the
// synchronous ones on the loop's own thread (they wait for replies the loop reads). Process
// output fds are owned by the caller.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "config/config.h"
#include "isolate/firewall.h"

namespace brig {
class EventLoop;
}

namespace brig::sandbox {

// What a sandbox with its own network may reach (isolate/firewall.h).
using EgressPolicy = isolate::EgressPolicy;

enum class User { user, root };
Result<User> parse_user(std::string_view name);  // "user" | "root"
const char* user_name(User u);

struct SandboxSpec {
  std::string rootfs;                       // a single-tree root filesystem on the host, or
  std::vector<std::string> layers;          // a template's layers, topmost first (read-only lowers)
  std::string template_name = "custom";     // shown in listings
  // The limits, defaulting to config::Sandbox's defaults (callers apply the configured ones).
  uint64_t memory_bytes = uint64_t{config::Sandbox{}.memory_mib} << 20;  // hard memory limit (no swap)
  uint32_t cpu_millis = config::Sandbox{}.cpu_millis;                    // CPU quota, thousandths of a CPU
  uint32_t pids = config::Sandbox{}.pids;                                // max tasks (fork bombs stop here)
  uint64_t disk_bytes = uint64_t{config::Sandbox{}.disk_mib} << 20;      // its disk's size (ENOSPC beyond)
  uint64_t shm_bytes = uint64_t{config::Sandbox{}.shm_mib} << 20;        // private /dev/shm size
  std::chrono::milliseconds lifetime = std::chrono::seconds(config::Sandbox{}.lifetime_s);  // expiry kills it
  std::map<std::string, std::string> env;       // sandbox-wide environment
  std::map<std::string, std::string> metadata;  // opaque key/values for listing filters
  bool host_network = false;                // build sandboxes only; default loopback-only
  // Its own network (a veth pair, NAT to the uplink) with this egress policy; nullopt: loopback
  // only. Applied again at hand-over when a pooled sandbox had another.
  std::optional<EgressPolicy> egress;
  bool persistent = false;                  // outlives the brig process; a new one re-adopts it
  std::vector<std::string> kernels;         // code-interpreter languages whose kernel starts with
                                            // the sandbox (before it is handed out, if pooled)
  std::string upper_dir;                    // build sandboxes only: keep the writable layer in
                                            // this host dir (created by brig, root-only)
  bool existing_disk = false;               // boot on the disk the sandbox (same id) already has:
                                            // a sandbox paused to its disk, resumed
};

// What a sandbox paused to its disk is booted from again: the spec it was created with (its
// layers, limits, environment, metadata), as JSON. The lifetime, the egress policy and the
// build-only fields are not kept: the resume gives them.
std::string spec_to_json(const SandboxSpec& spec);
Result<SandboxSpec> spec_from_json(std::string_view text);

// Validates bounds (a client mistake is errc::invalid_argument, never a crash): the sizes
// against the schema's bounds, the lifetime against `sandbox.max_lifetime_s`, env and metadata
// against `limits`.
Result<> validate(const SandboxSpec& spec, const config::Sandbox& sandbox, const config::Limits& limits);
// A sandbox's or a process's environment against the limits.env_* bounds.
Result<> validate_env(const std::map<std::string, std::string>& env, const config::Limits& limits);
// File or sandbox metadata against the limits.metadata_* bounds.
Result<> validate_metadata(const std::map<std::string, std::string>& metadata, const config::Limits& limits);

struct ProcessSpec {
  std::string cmd;
  std::vector<std::string> args;
  std::map<std::string, std::string> env;  // after PATH/HOME/USER/LOGNAME and the sandbox env
  std::string cwd;                         // "" = home; "~" expanded; must exist
  User user = User::user;
  bool stdin_pipe = false;                 // else /dev/null
  bool pty = false;
  uint16_t rows = 24, cols = 80;
  std::string tag;
};

struct SpawnedProcess {
  int pid = 0;      // pid inside the sandbox
  Fd stdin_fd;      // write end (pipe mode with stdin_pipe) or -1
  Fd stdout_fd;     // read end; in PTY mode the PTY master (read/write)
  Fd stderr_fd;     // read end, or -1 in PTY mode
};

struct ExitStatus {
  int pid = 0;
  int exit_code = 0;  // when signal == 0
  int signal = 0;     // killing signal
};

struct ProcessInfo {
  int pid = 0;
  std::string cmd;
  std::vector<std::string> args;
  std::string cwd;
  std::string tag;
  bool pty = false;
};

enum class FileType { unknown, file, dir, symlink, other };
struct EntryInfo {
  std::string name, path;
  FileType type = FileType::unknown;
  uint64_t size = 0;
  uint32_t mode = 0, uid = 0, gid = 0;
  int64_t mtime_ns = 0;
  std::string symlink_target;                   // a symlink's own text
  std::map<std::string, std::string> metadata;  // user metadata (E2B upload metadata)
  // A symlink followed to the end (in the sandbox): absolute path, type and permission bits;
  // empty / unknown when it dangles.
  std::string resolved_target;
  FileType target_type = FileType::unknown;
  uint32_t target_mode = 0;
};

enum class WatchOp { create, write, remove, rename, chmod };
struct WatchEvent {
  uint64_t watch_id = 0;
  std::string name;
  WatchOp op = WatchOp::create;
};

struct Usage {
  uint64_t memory_bytes = 0;  // what the sandbox holds: its cgroup's memory less reclaimable file cache
  uint64_t cpu_usage_ns = 0;
  uint64_t oom_kills = 0;
  uint32_t tasks = 0;
  uint64_t cache_bytes = 0;      // its page cache (files it read or wrote: its disk's among them)
  uint64_t disk_used_bytes = 0;  // the host's disk its disk uses
};

// What `run` needs beyond the ProcessSpec.
struct RunOptions {
  std::optional<std::chrono::milliseconds> timeout;   // per-command; kills the process group
  uint64_t output_limit = config::Limits{}.run_output_bytes;  // per stream; the excess is dropped
  std::string stdin_data;                              // written then closed (needs stdin_pipe)
  std::function<void(std::string_view)> on_stdout;     // live output; else collected
  std::function<void(std::string_view)> on_stderr;
};

struct RunResult {
  ExitStatus status;
  bool oom_killed = false;       // the kernel's OOM killer killed it (inside the sandbox)
  bool timed_out = false;        // the per-command timeout killed it
  bool output_truncated = false;
  std::string out, err;          // collected when no callback was given
  // A shell-style exit code: the code, or 128 + signal.
  int shell_code() const { return status.signal ? 128 + status.signal : status.exit_code; }
};

struct SandboxInfo {
  std::string id;
  std::string template_name;
  std::string state;  // "running", "paused", "creating", "dead"
  int64_t started_at_ms = 0;
  int64_t end_at_ms = 0;       // when running
  int64_t paused_left_ms = 0;  // when paused: the lifetime it has left (its clock is stopped)
  // How a paused sandbox is paused: its processes frozen with their memory, or stopped with
  // only its disk kept (asked for: memory false; or its memory lost: the host restarted, or its
  // processes died, while it was frozen).
  enum class Paused { memory, disk, memory_lost };
  Paused paused = Paused::memory;
  uint64_t memory_bytes = 0;
  uint32_t cpu_millis = 0;
  uint64_t disk_bytes = 0;
  std::map<std::string, std::string> metadata;
  std::map<std::string, std::string> env;
};

class Sandbox {
 public:
  virtual ~Sandbox() = default;
  virtual const std::string& id() const = 0;
  // The IPv4 address (host byte order) its connections leave its own network with; nullopt
  // when it has none (loopback only).
  virtual std::optional<uint32_t> address() const { return std::nullopt; }

  virtual Result<SpawnedProcess> spawn(const ProcessSpec& spec) = 0;
  virtual Result<> signal(int pid, int sig, bool process_group = true) = 0;
  virtual Result<std::vector<ProcessInfo>> list_processes() = 0;
  // Waits up to `timeout` for `pid` to exit (exit statuses are kept until taken).
  virtual Result<std::optional<ExitStatus>> wait_exit(int pid, std::chrono::milliseconds timeout) = 0;
  // Calls `done` on the event loop once `pid` has exited, with its status, or with nullopt if
  // the sandbox went away first (its exit is then not kept for wait_exit). Nobody polls: the
  // loop reads brig-init's report as it arrives. Needs the engine's event loop
  // (errc::unsupported without one).
  virtual Result<> on_exit(int pid, std::function<void(std::optional<ExitStatus>)> done) = 0;
  // The loop this sandbox's control channel is read on (EngineOptions::loop), or nullptr.
  virtual EventLoop* event_loop() = 0;

  // Spawn, stream output, enforce the timeout and output cap, wait, report how it ended.
  virtual Result<RunResult> run(const ProcessSpec& spec, const RunOptions& options) = 0;

  // File operations, resolved inside the sandbox as `user`. Symlinks are followed inside the
  // sandbox only; /proc magic links are refused.
  virtual Result<EntryInfo> stat(const std::string& path, User user) = 0;
  virtual Result<std::vector<EntryInfo>> list_dir(const std::string& path, uint32_t depth, User user) = 0;
  virtual Result<EntryInfo> make_dir(const std::string& path, User user) = 0;
  virtual Result<EntryInfo> move(const std::string& from, const std::string& to, User user) = 0;
  virtual Result<> remove(const std::string& path, User user) = 0;
  // An fd of a regular file opened inside the sandbox, for the caller to stream.
  virtual Result<Fd> open_read(const std::string& path, User user, EntryInfo* info = nullptr) = 0;
  virtual Result<Fd> open_write(const std::string& path, User user, uint32_t mode = 0644) = 0;
  // Replaces a regular file's user metadata (stored as user.e2b.* extended attributes).
  virtual Result<> set_metadata(const std::string& path, User user, const std::map<std::string, std::string>& metadata) = 0;
  virtual Result<std::string> read_file(const std::string& path, User user, size_t limit = 64 << 20) = 0;
  virtual Result<> write_file(const std::string& path, std::string_view content, User user,
                              uint32_t mode = 0644) = 0;
  virtual Result<uint64_t> watch(const std::string& path, bool recursive, User user) = 0;
  virtual Result<> unwatch(uint64_t watch_id) = 0;
  // The events queued for a watch, waiting up to `wait` for the first one.
  virtual std::vector<WatchEvent> take_watch_events(uint64_t watch_id,
                                                    std::chrono::milliseconds wait = std::chrono::milliseconds(0)) = 0;
  // Calls `ready` (once, on the event loop) when events are queued for the watch, at once if
  // some are; never after the sandbox has ended (on_gone tells that). Needs the event loop.
  virtual Result<> on_watch_events(uint64_t watch_id, std::function<void()> ready) = 0;

  // A connection to the sandbox's code-interpreter kernel host (init/kernel_host.h), which
  // starts on first use. The peer runs as the sandbox user: what it sends is untrusted.
  virtual Result<Fd> open_kernels() = 0;

  // A tar.gz or zip of `path` made inside the sandbox as `user` (symlinks stored as links):
  // a pipe yielding one JSON status line, then the archive (init/archive.h).
  virtual Result<Fd> export_archive(const std::string& path, User user, const std::string& format,
                                    uint64_t max_bytes, uint32_t max_entries) = 0;
  // Unpacks into directory `dir` as `user`: write the archive to .first and close it, then
  // read the JSON result line from .second. Entries escaping `dir` are refused up front.
  virtual Result<std::pair<Fd, Fd>> import_archive(const std::string& dir, User user, const std::string& format,
                                                   uint64_t max_bytes, uint32_t max_entries) = 0;

  // A TCP connection to `port` of the sandbox's own loopback (127.0.0.1, else ::1), for the
  // data plane: a connected stream socket. A closed port is ECONNREFUSED; no handshake within
  // `timeout` (a listener that does not accept) is ETIMEDOUT; a sandbox that shares the host's
  // network is EPERM. The peer is the sandbox's: what it sends is untrusted.
  virtual Result<Fd> connect_port(uint16_t port, std::chrono::milliseconds timeout) = 0;

  virtual Result<> set_lifetime(std::chrono::milliseconds remaining) = 0;
  virtual Result<Usage> usage() = 0;
  virtual bool alive() = 0;
  // Calls `done` on the event loop once the sandbox has ended (brig-init gone: expired, killed,
  // or crashed), at once if it has; pushed by the loop, nobody polls. Needs the event loop.
  virtual Result<> on_gone(std::function<void()> done) = 0;
};

// The sandbox's OOM-kill count so far (0 if unreadable): read it before starting a process,
// then ask killed_for_memory once it has ended.
uint64_t oom_kills(Sandbox& sandbox);
// Whether the kernel's OOM killer ended a process that exited with `status`: killed by SIGKILL
// (or a shell reporting its child's as 137) while the OOM-kill count rose past `before`.
bool killed_for_memory(Sandbox& sandbox, const ExitStatus& status, uint64_t before);

}  // namespace brig::sandbox
