#include "sandbox/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/util.h"
#include "sandbox/run.h"

namespace brig::sandbox {

Result<User> parse_user(std::string_view name) {
  if (name == "user" || name.empty()) return User::user;
  if (name == "root") return User::root;
  return Error::make(errc::invalid_argument, "unknown user '" + std::string(name) + "' (want user or root)");
}

const char* user_name(User u) { return u == User::root ? "root" : "user"; }

Result<> validate_env(const std::map<std::string, std::string>& env, const config::Limits& limits) {
  auto bad = [](std::string msg) { return Error::make(errc::invalid_argument, std::move(msg)); };
  if (env.size() > limits.env_entries) return bad("too many env vars (" + std::to_string(limits.env_entries) + " at most)");
  for (auto& [k, v] : env)
    if (k.empty() || k.size() > limits.env_key_bytes || v.size() > limits.env_value_bytes ||
        k.find('=') != std::string::npos || k.find('\0') != std::string::npos || v.find('\0') != std::string::npos)
      return bad("invalid env var '" + k.substr(0, 64) + "' (names of 1 to " + std::to_string(limits.env_key_bytes) +
                 " bytes without '=', values of at most " + std::to_string(limits.env_value_bytes) + " bytes)");
  return ok();
}

Result<> validate_metadata(const std::map<std::string, std::string>& metadata, const config::Limits& limits) {
  auto bad = [](std::string msg) { return Error::make(errc::invalid_argument, std::move(msg)); };
  if (metadata.size() > limits.metadata_entries)
    return bad("too many metadata entries (" + std::to_string(limits.metadata_entries) + " at most)");
  uint64_t total = 0;
  for (auto& [k, v] : metadata) {
    if (k.empty() || k.size() > limits.metadata_key_bytes || k.find('\0') != std::string::npos)
      return bad("invalid metadata key '" + k.substr(0, 64) + "' (1 to " + std::to_string(limits.metadata_key_bytes) +
                 " bytes)");
    if (v.size() > limits.metadata_value_bytes)
      return bad("the metadata value of '" + k.substr(0, 64) + "' is longer than " +
                 std::to_string(limits.metadata_value_bytes) + " bytes");
    total += k.size() + v.size();
  }
  if (total > limits.metadata_total_bytes)
    return bad("metadata larger than " + std::to_string(limits.metadata_total_bytes) + " bytes in all");
  return ok();
}

Result<> validate(const SandboxSpec& spec, const config::Sandbox& sandbox, const config::Limits& limits) {
  namespace bounds = config::bounds;
  auto bad = [](std::string msg) { return Error::make(errc::invalid_argument, std::move(msg)); };
  auto mib = [](uint64_t n) { return config::size_text(n << 20); };
  if (spec.rootfs.empty() == spec.layers.empty()) return bad("give either a rootfs or template layers");
  // A template's layers, and the trusted CAs' layer over them (core/network.h).
  if (spec.layers.size() > bounds::build_max_layers.max + 1)
    return bad("too many template layers (" + std::to_string(bounds::build_max_layers.max) + " at most)");
  for (auto& layer : spec.layers)
    if (layer.empty() || layer[0] != '/' || layer.find(':') != std::string::npos) return bad("invalid layer path");
  if (!spec.rootfs.empty() && (spec.rootfs[0] != '/' || spec.rootfs.find(':') != std::string::npos))
    return bad("rootfs must be an absolute path without ':'");
  if (spec.memory_bytes < (bounds::sandbox_memory_mib.min << 20) || spec.memory_bytes > (bounds::sandbox_memory_mib.max << 20))
    return bad("memory must be between " + mib(bounds::sandbox_memory_mib.min) + " and " + mib(bounds::sandbox_memory_mib.max));
  if (spec.cpu_millis < bounds::sandbox_cpu_millis.min || spec.cpu_millis > bounds::sandbox_cpu_millis.max)
    return bad("cpus must be between 0.01 and " + std::to_string(bounds::sandbox_cpu_millis.max / 1000));
  if (spec.pids < bounds::sandbox_pids.min || spec.pids > bounds::sandbox_pids.max)
    return bad("pids must be between " + std::to_string(bounds::sandbox_pids.min) + " and " +
               std::to_string(bounds::sandbox_pids.max));
  if (spec.disk_bytes < (bounds::sandbox_disk_mib.min << 20) || spec.disk_bytes > (bounds::sandbox_disk_mib.max << 20))
    return bad("disk must be between " + mib(bounds::sandbox_disk_mib.min) + " and " + mib(bounds::sandbox_disk_mib.max));
  if (spec.shm_bytes < (bounds::sandbox_shm_mib.min << 20) || spec.shm_bytes > spec.memory_bytes)
    return bad("shm must be between " + mib(bounds::sandbox_shm_mib.min) + " and the memory limit");
  if (spec.lifetime < std::chrono::seconds(1) || spec.lifetime > std::chrono::seconds(sandbox.max_lifetime_s))
    return bad("timeout must be between 1 and " + std::to_string(sandbox.max_lifetime_s) + " seconds");
  BRIG_TRY(validate_env(spec.env, limits));
  return validate_metadata(spec.metadata, limits);
}

namespace {

struct Stream {
  int fd;
  bool open;
  uint64_t seen = 0;
  std::string* sink;
  const std::function<void(std::string_view)>* callback;
};

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Reads what is available; returns false at EOF or error.
bool read_some(Stream& s, uint64_t limit, bool& truncated) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(s.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    if (n <= 0) return false;  // EOF, or EIO from a PTY whose last holder closed it
    size_t keep = static_cast<size_t>(n);
    if (s.seen >= limit) keep = 0;
    else if (s.seen + keep > limit) keep = static_cast<size_t>(limit - s.seen);
    if (keep < static_cast<size_t>(n)) truncated = true;
    s.seen += static_cast<uint64_t>(n);
    if (keep) {
      if (*s.callback) (*s.callback)(std::string_view(buf, keep));
      else s.sink->append(buf, keep);
    }
  }
}

}  // namespace

Result<RunResult> run_process(Sandbox& sandbox, const ProcessSpec& spec_in, const RunOptions& options,
                              uint64_t oom_kills_before) {
  using clock = std::chrono::steady_clock;
  ProcessSpec spec = spec_in;
  if (!options.stdin_data.empty()) spec.stdin_pipe = true;
  BRIG_TRY_ASSIGN(proc, sandbox.spawn(spec));
  RunResult result;
  const auto deadline = options.timeout ? clock::now() + *options.timeout : clock::time_point::max();

  std::string_view pending_stdin = options.stdin_data;
  Fd stdin_fd = std::move(proc.stdin_fd);
  if (stdin_fd) set_nonblocking(stdin_fd.get());
  if (stdin_fd && pending_stdin.empty()) stdin_fd.reset();
  Stream streams[2] = {{proc.stdout_fd.get(), proc.stdout_fd.valid(), 0, &result.out, &options.on_stdout},
                       {proc.stderr_fd.get(), proc.stderr_fd.valid(), 0, &result.err, &options.on_stderr}};
  for (auto& s : streams)
    if (s.open) set_nonblocking(s.fd);

  std::optional<ExitStatus> exit;
  auto kill_on_deadline = [&] {
    if (!result.timed_out && clock::now() >= deadline) {
      (void)sandbox.signal(proc.pid, SIGKILL, true);
      result.timed_out = true;
    }
  };
  auto check_exit = [&](std::chrono::milliseconds wait) -> Result<> {
    BRIG_TRY_ASSIGN(ex, sandbox.wait_exit(proc.pid, wait));
    if (ex) exit = *ex;
    return ok();
  };

  while (streams[0].open || streams[1].open) {
    struct pollfd pfds[3];
    int n = 0;
    int idx[3];
    for (int i = 0; i < 2; ++i)
      if (streams[i].open) {
        idx[n] = i;
        pfds[n++] = {streams[i].fd, POLLIN, 0};
      }
    if (stdin_fd) {
      idx[n] = 2;
      pfds[n++] = {stdin_fd.get(), POLLOUT, 0};
    }
    auto wait = std::chrono::milliseconds(50);
    if (deadline != clock::time_point::max() && !result.timed_out)
      wait = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()),
                        std::chrono::milliseconds(0), wait);
    int rc = ::poll(pfds, static_cast<nfds_t>(n), static_cast<int>(wait.count()));
    if (rc < 0 && errno != EINTR) return Error::from_errno(errno, "poll");
    for (int k = 0; rc > 0 && k < n; ++k) {
      if (!pfds[k].revents) continue;
      if (idx[k] == 2) {
        ssize_t w = ::write(stdin_fd.get(), pending_stdin.data(), pending_stdin.size());
        if (w > 0) pending_stdin.remove_prefix(static_cast<size_t>(w));
        if ((w < 0 && errno != EAGAIN) || pending_stdin.empty()) stdin_fd.reset();
      } else if (!read_some(streams[idx[k]], options.output_limit, result.output_truncated)) {
        streams[idx[k]].open = false;
      }
    }
    kill_on_deadline();
    if (rc == 0 && !exit) {
      // Quiet pipes: has the process itself exited (with a background child holding them)?
      BRIG_TRY(check_exit(std::chrono::milliseconds(0)));
      if (exit) {
        for (auto& s : streams)
          if (s.open) (void)read_some(s, options.output_limit, result.output_truncated);
        break;
      }
    }
  }
  stdin_fd.reset();
  while (!exit) {
    auto wait = std::chrono::milliseconds(1000);
    if (deadline != clock::time_point::max() && !result.timed_out)
      wait = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()),
                        std::chrono::milliseconds(0), wait);
    BRIG_TRY(check_exit(wait));
    if (!exit) kill_on_deadline();
  }
  result.status = *exit;
  result.oom_killed = !result.timed_out && killed_for_memory(sandbox, *exit, oom_kills_before);
  return result;
}

uint64_t oom_kills(Sandbox& sandbox) {
  auto u = sandbox.usage();
  return u ? u->oom_kills : 0;
}

bool killed_for_memory(Sandbox& sandbox, const ExitStatus& status, uint64_t before) {
  bool killed = status.signal == SIGKILL || (status.signal == 0 && status.exit_code == 128 + SIGKILL);
  return killed && oom_kills(sandbox) > before;
}

std::string spec_to_json(const SandboxSpec& s) {
  nlohmann::json j = {{"rootfs", s.rootfs},           {"layers", s.layers},       {"template", s.template_name},
                      {"memory", s.memory_bytes},     {"cpu_millis", s.cpu_millis}, {"pids", s.pids},
                      {"disk", s.disk_bytes},         {"shm", s.shm_bytes},       {"env", s.env},
                      {"metadata", s.metadata},       {"persistent", s.persistent}, {"kernels", s.kernels}};
  return j.dump();
}

Result<SandboxSpec> spec_from_json(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return Error::make(errc::protocol, "the sandbox's saved spec is not a JSON object");
  SandboxSpec s;
  try {
    s.rootfs = j.at("rootfs").get<std::string>();
    s.layers = j.at("layers").get<std::vector<std::string>>();
    s.template_name = j.at("template").get<std::string>();
    s.memory_bytes = j.at("memory").get<uint64_t>();
    s.cpu_millis = j.at("cpu_millis").get<uint32_t>();
    s.pids = j.at("pids").get<uint32_t>();
    s.disk_bytes = j.at("disk").get<uint64_t>();
    s.shm_bytes = j.at("shm").get<uint64_t>();
    s.env = j.at("env").get<std::map<std::string, std::string>>();
    s.metadata = j.at("metadata").get<std::map<std::string, std::string>>();
    s.persistent = j.at("persistent").get<bool>();
    s.kernels = j.at("kernels").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    return Error::make(errc::protocol, std::string("the sandbox's saved spec: ") + e.what());
  }
  return s;
}

}  // namespace brig::sandbox
