// The Linux backend: namespaces, an idmapped overlay rootfs, cgroups and seccomp, with
// brig-init as PID 1 (see ARCHITECTURE.md, "Create").
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/limits.h>
#include <sys/xattr.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "base/event_loop.h"
#include "base/log.h"
#include "base/util.h"
#include "isolate/cgroup.h"
#include "isolate/net.h"
#include "isolate/userns.h"
#include "sandbox/backend.h"
#include "sandbox/disks.h"
#include "sandbox/init_channel.h"
#include "sandbox/run.h"
#include "sandbox/zygote.h"
#include "sys/seqpacket.h"
#include "sys/syscalls.h"

namespace brig::sandbox {
namespace {

initpb::User to_pb(User u) { return u == User::root ? initpb::USER_ROOT : initpb::USER_USER; }

EntryInfo from_pb(const initpb::EntryInfo& e) {
  EntryInfo out;
  out.name = e.name();
  out.path = e.path();
  auto type = [](initpb::FileType t) {
    switch (t) {
      case initpb::FILE_TYPE_FILE: return FileType::file;
      case initpb::FILE_TYPE_DIR: return FileType::dir;
      case initpb::FILE_TYPE_SYMLINK: return FileType::symlink;
      case initpb::FILE_TYPE_OTHER: return FileType::other;
      default: return FileType::unknown;
    }
  };
  out.type = type(e.type());
  out.resolved_target = e.resolved_target();
  out.target_type = type(e.target_type());
  out.target_mode = e.target_mode();
  out.size = e.size();
  out.mode = e.mode();
  out.uid = e.uid();
  out.gid = e.gid();
  out.mtime_ns = e.mtime_ns();
  out.symlink_target = e.symlink_target();
  for (auto& [k, v] : e.metadata()) out.metadata[k] = v;
  return out;
}

// Start time of a *running* `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat);
// 0 if it is gone or a zombie (an init orphaned by a crash waits as a zombie until reaped).
uint64_t proc_start_time(int pid) {
  auto stat = read_small_file("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return 0;
  // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
  auto close = stat->rfind(')');
  if (close == std::string::npos || close + 2 >= stat->size()) return 0;
  auto fields = split(std::string_view(*stat).substr(close + 2), ' ');
  // fields[0] is field 3 (state); field 22 is fields[19].
  if (fields.empty() || fields[0] == "Z" || fields[0] == "X") return 0;
  return fields.size() > 19 ? std::strtoull(fields[19].c_str(), nullptr, 10) : 0;
}

bool pidfd_exited(int pidfd, int timeout_ms) {
  struct pollfd p = {pidfd, POLLIN, 0};
  int n;
  do n = ::poll(&p, 1, timeout_ms);
  while (n < 0 && errno == EINTR);
  return n > 0;
}

// A sandbox's own network as the backend knows it: where it is, and what DNS it forwards to.
struct SandboxNet {
  isolate::NetAddress address;
  uint32_t dns_upstream = 0;
};

class LinuxSandbox final : public SandboxHandle {
 public:
  LinuxSandbox(std::string id, SandboxRecord record, Fd pidfd, Fd control,
               std::unique_ptr<isolate::Cgroup> cgroup, std::string socket_path, EventLoop* loop,
               const config::Limits& limits, std::optional<SandboxNet> net, std::optional<EgressPolicy> egress,
               std::shared_ptr<const DiskImages> disks, CreateTrace trace = {})
      : id_(std::move(id)), record_(record), pidfd_(std::move(pidfd)), channel_(std::move(control), loop),
        cgroup_(std::move(cgroup)), socket_path_(std::move(socket_path)), trace_(trace), limits_(limits),
        net_(std::move(net)), egress_(std::move(egress)), disks_(std::move(disks)) {}
  ~LinuxSandbox() override { (void)destroy(); }

  const std::string& id() const override { return id_; }
  SandboxRecord record() const override { return record_; }
  CreateTrace create_trace() const override { return trace_; }
  EventLoop* event_loop() override { return channel_.loop(); }

  Result<SpawnedProcess> spawn(const ProcessSpec& spec) override {
    if (spec.cmd.empty()) return Error::make(errc::invalid_argument, "empty command");
    BRIG_TRY(validate_env(spec.env, limits_));
    initpb::InitRequest req;
    auto* s = req.mutable_spawn();
    s->set_cmd(spec.cmd);
    for (auto& a : spec.args) s->add_args(a);
    for (auto& [k, v] : spec.env) (*s->mutable_env())[k] = v;
    s->set_cwd(spec.cwd);
    s->set_user(to_pb(spec.user));
    s->set_stdin_pipe(spec.stdin_pipe);
    s->set_pty(spec.pty);
    s->set_rows(spec.rows);
    s->set_cols(spec.cols);
    s->set_tag(spec.tag);
    BRIG_TRY_ASSIGN(reply, channel_.call(std::move(req)));
    SpawnedProcess p;
    p.pid = reply.response.spawned().pid();
    auto& fds = reply.fds;
    size_t want = spec.pty ? 1 : (spec.stdin_pipe ? 3 : 2);
    if (fds.size() != want) return Error::make(errc::protocol, "spawn reply with wrong fds");
    size_t i = 0;
    if (spec.pty) {
      p.stdout_fd = std::move(fds[0]);
    } else {
      if (spec.stdin_pipe) p.stdin_fd = std::move(fds[i++]);
      p.stdout_fd = std::move(fds[i++]);
      p.stderr_fd = std::move(fds[i++]);
    }
    return p;
  }

  Result<> signal(int pid, int sig, bool process_group) override {
    initpb::InitRequest req;
    req.mutable_signal()->set_pid(pid);
    req.mutable_signal()->set_signal(sig);
    req.mutable_signal()->set_process_group(process_group);
    BRIG_TRY(channel_.call(std::move(req)));
    return ok();
  }

  Result<std::vector<ProcessInfo>> list_processes() override {
    initpb::InitRequest req;
    req.mutable_list_processes();
    BRIG_TRY_ASSIGN(reply, channel_.call(std::move(req)));
    std::vector<ProcessInfo> out;
    for (auto& p : reply.response.processes().processes())
      out.push_back({p.pid(), p.cmd(), {p.args().begin(), p.args().end()}, p.cwd(), p.tag(), p.pty()});
    return out;
  }

  Result<std::optional<ExitStatus>> wait_exit(int pid, std::chrono::milliseconds timeout) override {
    BRIG_TRY_ASSIGN(ex, channel_.wait_exit(pid, timeout));
    if (!ex) return std::optional<ExitStatus>();
    return std::optional<ExitStatus>(ExitStatus{ex->pid(), ex->exit_code(), ex->signal()});
  }

  Result<> on_exit(int pid, std::function<void(std::optional<ExitStatus>)> done) override {
    return channel_.on_exit(pid, [done = std::move(done)](std::optional<initpb::Exited> ex) {
      if (!ex) return done(std::nullopt);
      done(ExitStatus{ex->pid(), ex->exit_code(), ex->signal()});
    });
  }

  Result<RunResult> run(const ProcessSpec& spec, const RunOptions& options) override {
    return run_process(*this, spec, options, oom_kills(*this));
  }

  Result<EntryInfo> stat(const std::string& path, User user) override {
    initpb::InitRequest req;
    req.mutable_stat()->set_path(path);
    req.mutable_stat()->set_user(to_pb(user));
    BRIG_TRY_ASSIGN(reply, channel_.call(std::move(req)));
    return from_pb(reply.response.entry());
  }

  Result<std::vector<EntryInfo>> list_dir(const std::string& path, uint32_t depth, User user) override {
    initpb::InitRequest req;
    req.mutable_list_dir()->set_path(path);
    req.mutable_list_dir()->set_depth(depth);
    req.mutable_list_dir()->set_user(to_pb(user));
    BRIG_TRY_ASSIGN(reply, channel_.call(std::move(req)));
    std::vector<EntryInfo> out;
    for (auto& e : reply.response.listing().entries()) out.push_back(from_pb(e));
    return out;
  }

  Result<EntryInfo> make_dir(const std::string& path, User user) override {
    initpb::InitRequest req;
    req.mutable_make_dir()->set_path(path);
    req.mutable_make_dir()->set_user(to_pb(user));
    BRIG_TRY_ASSIGN(reply, channel_.call(std::move(req)));
    return from_pb(reply.response.entry());
  }

  Result<EntryInfo> move(const std::string& from, const std::string& to, User user) override {
    initpb::InitRequest req;
    req.mutable_move()->set_from(from);
    req.mutable_move()->set_to(to);
    req.mutable_move()->set_user(to_pb(user));
    BRIG_TRY_ASSIGN(reply, channel_.call(std::move(req)));
    return from_pb(reply.response.entry());
  }

  Result<> remove(const std::string& path, User user) override {
    initpb::InitRequest req;
    req.mutable_remove()->set_path(path);
    req.mutable_remove()->set_user(to_pb(user));
    BRIG_TRY(channel_.call(std::move(req)));
    return ok();
  }

  Result<Fd> open_read(const std::string& path, User user, EntryInfo* info) override {
    return open(path, user, false, 0, info);
  }

  Result<Fd> open_write(const std::string& path, User user, uint32_t mode) override {
    return open(path, user, true, mode, nullptr);
  }

  Result<> set_metadata(const std::string& path, User user, const std::map<std::string, std::string>& metadata) override {
    BRIG_TRY(validate_metadata(metadata, limits_));
    // The file is opened by brig-init as the user; the attributes are set on that fd, so no
    // path is resolved here. Files opened for writing are truncated, so open for reading.
    BRIG_TRY_ASSIGN(fd, open_read(path, user, nullptr));
    std::vector<char> names(XATTR_LIST_MAX);  // any file's whole list fits
    ssize_t len = ::flistxattr(fd.get(), names.data(), names.size());
    if (len < 0) return Error::from_errno(errno, "list metadata of '" + path + "'");
    for (ssize_t i = 0; i < len;) {
      std::string key(names.data() + i);
      i += static_cast<ssize_t>(key.size()) + 1;
      if (key.starts_with("user.e2b.")) ::fremovexattr(fd.get(), key.c_str());
    }
    for (auto& [k, v] : metadata) {
      if (::fsetxattr(fd.get(), ("user.e2b." + k).c_str(), v.data(), v.size(), 0) != 0)
        return Error::from_errno(errno, "set metadata '" + k + "'");
    }
    return ok();
  }

  Result<std::string> read_file(const std::string& path, User user, size_t limit) override {
    EntryInfo info;
    BRIG_TRY_ASSIGN(fd, open_read(path, user, &info));
    std::string out;
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Error::from_errno(errno, "read '" + path + "'");
      if (n == 0) break;
      if (out.size() + static_cast<size_t>(n) > limit)
        return Error::make(errc::limit_exceeded, "'" + path + "' is larger than " + format_size(limit));
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

  Result<> write_file(const std::string& path, std::string_view content, User user, uint32_t mode) override {
    BRIG_TRY_ASSIGN(fd, open_write(path, user, mode));
    while (!content.empty()) {
      ssize_t n = ::write(fd.get(), content.data(), content.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Error::from_errno(errno, "write '" + path + "'");
      content.remove_prefix(static_cast<size_t>(n));
    }
    return ok();
  }

  Result<uint64_t> watch(const std::string& path, bool recursive, User user) override {
    initpb::InitRequest req;
    req.mutable_watch()->set_path(path);
    req.mutable_watch()->set_recursive(recursive);
    req.mutable_watch()->set_user(to_pb(user));
    BRIG_TRY_ASSIGN(reply, channel_.call(std::move(req)));
    return reply.response.watch_started().watch_id();
  }

  Result<> unwatch(uint64_t watch_id) override {
    initpb::InitRequest req;
    req.mutable_unwatch()->set_watch_id(watch_id);
    auto r = channel_.call(std::move(req));
    channel_.forget_watch(watch_id);
    if (!r) return r.error();
    return ok();
  }

  Result<> on_watch_events(uint64_t watch_id, std::function<void()> ready) override {
    return channel_.on_watch_events(watch_id, std::move(ready));
  }

  std::vector<WatchEvent> take_watch_events(uint64_t watch_id, std::chrono::milliseconds wait) override {
    std::vector<WatchEvent> out;
    for (auto& e : channel_.take_watch_events(watch_id, wait)) {
      WatchOp op = WatchOp::create;
      switch (e.op()) {
        case initpb::WATCH_OP_WRITE: op = WatchOp::write; break;
        case initpb::WATCH_OP_REMOVE: op = WatchOp::remove; break;
        case initpb::WATCH_OP_RENAME: op = WatchOp::rename; break;
        case initpb::WATCH_OP_CHMOD: op = WatchOp::chmod; break;
        default: break;
      }
      out.push_back({e.watch_id(), e.name(), op});
    }
    return out;
  }

  Result<> set_lifetime(std::chrono::milliseconds remaining) override {
    initpb::InitRequest req;
    req.mutable_set_lifetime()->set_lifetime_ms(static_cast<uint32_t>(
        std::clamp<int64_t>(remaining.count(), 1, std::numeric_limits<uint32_t>::max())));
    BRIG_TRY(channel_.call(std::move(req)));
    return ok();
  }

  Result<> set_env(const std::map<std::string, std::string>& env) override {
    initpb::InitRequest req;
    for (auto& [k, v] : env) (*req.mutable_set_env()->mutable_env())[k] = v;
    BRIG_TRY(channel_.call(std::move(req)));
    return ok();
  }

  Result<Usage> usage() override {
    BRIG_TRY_ASSIGN(u, cgroup_->usage());
    return Usage{u.memory_bytes, u.cpu_usage_ns, u.oom_kills, u.tasks, u.cache_bytes, disks_->used_bytes(id_)};
  }

  Result<Fd> export_archive(const std::string& path, User user, const std::string& format, uint64_t max_bytes,
                            uint32_t max_entries) override {
    BRIG_TRY_ASSIGN(reply, channel_.call(archive_request(path, user, false, format, max_bytes, max_entries)));
    if (reply.fds.size() != 1) return Error::make(errc::protocol, "archive reply without fd");
    return std::move(reply.fds[0]);
  }

  Result<std::pair<Fd, Fd>> import_archive(const std::string& dir, User user, const std::string& format,
                                           uint64_t max_bytes, uint32_t max_entries) override {
    BRIG_TRY_ASSIGN(reply, channel_.call(archive_request(dir, user, true, format, max_bytes, max_entries)));
    if (reply.fds.size() != 2) return Error::make(errc::protocol, "archive reply without fds");
    return std::make_pair(std::move(reply.fds[0]), std::move(reply.fds[1]));
  }

  Result<Fd> open_kernels() override {
    initpb::InitRequest req;
    req.mutable_open_kernels();
    BRIG_TRY_ASSIGN(reply, channel_.call(std::move(req)));
    if (reply.fds.size() != 1) return Error::make(errc::protocol, "kernel reply without fd");
    return std::move(reply.fds[0]);
  }

  Result<Fd> connect_port(uint16_t port, std::chrono::milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto v4 = connect_loopback(port, false, deadline);
    if (v4 || v4.error().sys_errno() != ECONNREFUSED) return v4;
    // Nothing on 127.0.0.1: a server may listen on ::1 only (Node's "localhost", for one).
    // Any failure there (no IPv6 in the sandbox) leaves the first refusal as the answer.
    auto v6 = connect_loopback(port, true, deadline);
    if (v6) return v6;
    return v4.error();
  }

  bool alive() override { return !destroyed_ && !pidfd_exited(pidfd_.get(), 0); }
  // The pidfd, not the channel: brig-init's socket closes as it starts to exit, but as PID 1 of
  // its namespace it exits only after every process in it has, and only then is its cgroup
  // empty and its network namespace gone. A copy of the pidfd waits on the loop; it closes when
  // the wait ends, or with the loop's pending handlers if the loop stops first.
  Result<> on_gone(std::function<void()> done) override {
    EventLoop* loop = channel_.loop();
    if (!loop) return Error::make(errc::unsupported, "end callbacks need the engine's event loop");
    Fd copy(::fcntl(pidfd_.get(), F_DUPFD_CLOEXEC, 0));
    if (!copy) return Error::from_errno(errno, "dup pidfd of sandbox " + id_);
    loop->post([loop, fd = std::make_shared<Fd>(std::move(copy)), done = std::move(done)]() mutable {
      using boost::asio::posix::stream_descriptor;
      auto d = std::make_shared<stream_descriptor>(loop->io(), fd->release());
      d->async_wait(stream_descriptor::wait_read, [d, done = std::move(done)](const boost::system::error_code& ec) {
        if (ec != boost::asio::error::operation_aborted) done();
      });
    });
    return ok();
  }

  Result<> set_egress(const EgressPolicy& policy) override {
    if (!net_) return Error::make(errc::conflict, "sandbox " + id_ + " has no network of its own (it is loopback-only)");
    std::lock_guard lock(egress_mu_);
    BRIG_TRY(isolate::set_network_policy(net_->address, policy, net_->dns_upstream));
    egress_ = policy;
    return ok();
  }

  std::optional<uint32_t> address() const override {
    return net_ ? std::optional<uint32_t>(net_->address.sandbox_ip) : std::nullopt;
  }

  std::optional<EgressPolicy> egress() const override {
    std::lock_guard lock(egress_mu_);
    return egress_;
  }

  void detach() override { destroyed_ = true; }  // the channel closes with this object

  Result<> set_frozen(bool frozen) override { return cgroup_->freeze(frozen); }

  Result<> destroy() override { return teardown(false); }
  Result<> stop() override { return teardown(true); }

  Result<> teardown(bool keep_disk) {
    if (destroyed_.exchange(true)) return ok();
    if (!socket_path_.empty()) ::unlink(socket_path_.c_str());
    // SIGKILL to PID 1 of the namespace: the kernel kills every process in it, and with the
    // last one go its mount namespace (overlay, disk, /dev, /proc) and network namespace.
    (void)sys::pidfd_send_signal(pidfd_.get(), SIGKILL);
    (void)cgroup_->freeze(false);  // a paused sandbox: frozen tasks die only once thawed
    if (!pidfd_exited(pidfd_.get(), 10'000)) return Error::make(errc::timed_out, "sandbox init did not exit");
    // Its interface goes with its network namespace; its firewall objects are emptied (flushes:
    // no RCU wait, see isolate/firewall.h) and its connections forgotten here. Should this
    // fail, the next sweep finds them.
    if (net_)
      if (auto r = isolate::release_network(net_->address, id_); !r)
        spdlog::warn("release the network of sandbox {}: {}", id_, r.error().message());
    // Its loop device lets go of the image once the disk's last mount has gone with the mount
    // namespace; the space returns to the host then. A disk kept is let go of before this
    // returns: then it is whole on the host, and can be mounted again.
    Result<> released = ok();
    if (!keep_disk) disks_->remove(id_);
    else released = disks_->wait_released(id_, std::chrono::seconds(10));
    auto removed = cgroup_->destroy();
    return released ? removed : released;
  }

 private:
  static initpb::InitRequest archive_request(const std::string& path, User user, bool extract, const std::string& format,
                                            uint64_t max_bytes, uint32_t max_entries) {
    initpb::InitRequest req;
    auto* a = req.mutable_archive();
    a->set_path(path);
    a->set_user(to_pb(user));
    a->set_extract(extract);
    a->set_format(format);
    a->set_max_bytes(max_bytes);
    a->set_max_entries(max_entries);
    return req;
  }

  // brig-init starts the connection inside the sandbox's network namespace and passes the
  // socket back at once; the handshake is waited for here, on the caller's thread.
  Result<Fd> connect_loopback(uint16_t port, bool ipv6, std::chrono::steady_clock::time_point deadline) {
    initpb::InitRequest req;
    req.mutable_connect_port()->set_port(port);
    req.mutable_connect_port()->set_ipv6(ipv6);
    BRIG_TRY_ASSIGN(reply, channel_.call(std::move(req)));
    if (reply.fds.size() != 1) return Error::make(errc::protocol, "connect reply without fd");
    Fd sock = std::move(reply.fds[0]);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      struct pollfd p = {sock.get(), POLLOUT, 0};
      int n = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Error::from_errno(errno, "poll");
      if (n == 0)
        return Error(std::error_code(ETIMEDOUT, std::generic_category()),
                     "port " + std::to_string(port) + " did not accept the connection in time");
      break;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) return Error::from_errno(errno, "getsockopt");
    if (err) return Error::from_errno(err, "connect to port " + std::to_string(port));
    return sock;
  }

  Result<Fd> open(const std::string& path, User user, bool write, uint32_t mode, EntryInfo* info) {
    initpb::InitRequest req;
    auto* o = req.mutable_open_file();
    o->set_path(path);
    o->set_user(to_pb(user));
    o->set_write(write);
    o->set_mode(mode);
    BRIG_TRY_ASSIGN(reply, channel_.call(std::move(req)));
    if (reply.fds.size() != 1) return Error::make(errc::protocol, "open reply without fd");
    if (info) *info = from_pb(reply.response.opened().entry());
    return std::move(reply.fds[0]);
  }

  std::string id_;
  SandboxRecord record_;
  Fd pidfd_;
  InitChannel channel_;
  std::unique_ptr<isolate::Cgroup> cgroup_;
  std::string socket_path_;  // persistent sandboxes: brig-init's listener on the host
  std::atomic<bool> destroyed_{false};  // alive() is asked from any thread
  CreateTrace trace_;
  const config::Limits limits_;
  const std::optional<SandboxNet> net_;
  mutable std::mutex egress_mu_;
  std::optional<EgressPolicy> egress_;
  const std::shared_ptr<const DiskImages> disks_;  // guarded by egress_mu_
};

// /etc/resolv.conf's first IPv4 nameserver that is not a loopback address (a local stub such as
// 127.0.0.53 cannot be reached from a sandbox's namespace), or 0.
uint32_t host_resolver() {
  auto text = read_small_file("/etc/resolv.conf");
  if (!text) return 0;
  for (auto& line : split(*text, '\n')) {
    auto words = split(std::string(trim(line)), ' ');
    std::erase(words, "");
    if (words.size() < 2 || words[0] != "nameserver") continue;
    if (auto ip = parse_ipv4(words[1]); ip && (*ip >> 24) != 127) return *ip;
  }
  return 0;
}

void to_pb(const Ipv4Cidr& c, initpb::Cidr* out) {
  out->set_addr(c.addr);
  out->set_prefix(c.prefix);
}

class LinuxBackend final : public Backend {
 public:
  LinuxBackend(const LinuxBackendOptions& options, std::string mount_point, std::string run_dir,
               std::unique_ptr<isolate::CgroupDriver> cgroups, std::unique_ptr<DiskImages> disks,
               std::unique_ptr<Zygote> zygote)
      : options_(options), mount_point_(std::move(mount_point)), run_dir_(std::move(run_dir)),
        cgroups_(std::move(cgroups)), disks_(std::move(disks)), zygote_(std::move(zygote)) {
    // config::validate has checked both.
    subnet_ = parse_ipv4_cidr(options.network.subnet).value_or(Ipv4Cidr{0x0ac80000, 16});
    if (options.network.dns_upstream.empty()) dns_upstream_ = host_resolver();
    else if (options.network.dns_upstream != "off") dns_upstream_ = parse_ipv4(options.network.dns_upstream).value_or(0);
  }
  // The engine destroys its sandboxes first; an empty group is not left behind.
  ~LinuxBackend() override { cgroups_->remove_group(); }

  std::string name() const override { return "linux"; }

  Result<std::unique_ptr<SandboxHandle>> create(const std::string& id, uint32_t slot,
                                                const SandboxSpec& spec) override {
    BRIG_TRY(validate(spec, options_.sandbox, options_.limits));
    std::vector<std::string> layers = spec.layers.empty() ? std::vector<std::string>{spec.rootfs} : spec.layers;
    for (auto& layer : layers) {
      struct stat st;
      if (::stat(layer.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        return Error::make(errc::not_found, "rootfs '" + layer + "' is not a directory");
      if (st.st_uid != 0 || (st.st_mode & 022))
        return Error::make(errc::invalid_argument, "rootfs '" + layer + "' must be owned by root and not group/world-writable");
    }
    BRIG_TRY_ASSIGN(cgroup, cgroups_->create(id, {spec.memory_bytes, spec.cpu_millis, spec.pids}));
    // Builds keep their writable layer in a host dir; a sandbox booted again keeps its disk.
    const bool new_disk = spec.upper_dir.empty() && !spec.existing_disk;
    auto fail = [&](Error e) {
      (void)cgroup->destroy();
      if (new_disk) disks_->remove(id);
      return e.wrap("create sandbox");
    };
    std::string disk;
    if (new_disk) {
      auto made = disks_->create(id, spec.disk_bytes);
      if (!made) return fail(made.error());
      disk = std::move(*made);
    } else if (spec.existing_disk) {
      if (!disks_->exists(id)) return fail(Error::make(errc::not_found, "sandbox " + id + " has no disk to boot on"));
      if (auto r = disks_->wait_released(id, std::chrono::seconds(10)); !r) return fail(r.error());
      disk = disks_->path_of(id);
    }
    initpb::ZygoteRequest req;
    req.set_sandbox_id(id);
    for (auto& layer : layers) req.add_layers(layer);
    req.set_upper_dir(spec.upper_dir);
    req.set_uid_base(isolate::uid_base_for_slot(slot));
    req.set_disk_image(disk);
    req.set_shm_bytes(spec.shm_bytes);
    req.set_mount_point(mount_point_);
    req.set_lifetime_ms(static_cast<uint32_t>(spec.lifetime.count()));
    req.set_share_host_network(spec.host_network);
    for (auto& k : spec.kernels) req.add_kernels(k);
    set_init_limits(req.mutable_limits());
    const std::string socket_path = spec.persistent ? socket_of(id) : "";
    req.set_control_socket(socket_path);
    if (spec.egress && !spec.host_network) {
      if (auto r = ensure_firewall(); !r) return fail(r.error());
      auto* n = req.mutable_network();
      to_pb(subnet_, n->mutable_subnet());
      for (auto& c : spec.egress->allow) to_pb(c, n->add_allow());
      for (auto& c : spec.egress->deny) to_pb(c, n->add_deny());
      n->set_dns(spec.egress->dns);
      n->set_dns_upstream(dns_upstream_);
      n->set_proxy_port(spec.egress->proxy_port);
      n->set_dns_stub_port(spec.egress->dns_stub_port);
    }
    std::vector<Fd> fds;
    if (cgroups_->name() == "v2") {
      auto dir = cgroup->open_dir_for_clone();
      if (!dir) return fail(dir.error());
      fds.push_back(std::move(*dir));
      req.set_cgroup_dir_fd(true);
    } else {
      auto procs = cgroup->open_procs_files();
      if (!procs) return fail(procs.error());
      fds = std::move(*procs);
      req.set_cgroup_procs_fds(static_cast<uint32_t>(fds.size()));
    }
    auto created = zygote_->create(req, std::move(fds));
    if (!created) return fail(created.error());
    SandboxRecord record{id, slot, created->init_pid, proc_start_time(created->init_pid), static_cast<int>(::getpid())};
    std::optional<SandboxNet> net;
    if (created->net_index) {
      record.net_index = static_cast<int32_t>(*created->net_index);
      net = SandboxNet{isolate::net_address(subnet_, *created->net_index), dns_upstream_};
    }
    auto sandbox = std::make_unique<LinuxSandbox>(id, record, std::move(created->pidfd), std::move(created->control),
                                                  std::move(cgroup), socket_path, options_.loop, options_.limits,
                                                  std::move(net), net ? spec.egress : std::nullopt, disks_,
                                                  SandboxHandle::CreateTrace{created->began_ns, created->ready_ns});
    if (!spec.env.empty())
      if (auto r = sandbox->set_env(spec.env); !r) return r.error().wrap("create sandbox: set env");
    return std::unique_ptr<SandboxHandle>(std::move(sandbox));
  }

  Result<std::unique_ptr<SandboxHandle>> adopt(const SandboxRecord& record) override {
    if (!is_alive(record)) return Error::make(errc::not_found, "sandbox " + record.id + " is gone");
    Fd pidfd(sys::pidfd_open(record.init_pid, 0));
    if (!pidfd) return Error::from_errno(errno, "pidfd_open");
    if (!is_alive(record)) return Error::make(errc::not_found, "sandbox " + record.id + " is gone");
    const std::string path = socket_of(record.id);
    BRIG_TRY_ASSIGN(cgroup, cgroups_->open(record.id));
    // A paused sandbox's brig-init is frozen and accepts nothing: the connection waits in its
    // backlog, and its requests wait for the resume. Only when earlier daemons' connections
    // have filled that backlog is it thawed for the moment of the connect (it drains them),
    // then frozen again.
    auto is_frozen = cgroup->frozen();
    const bool frozen = is_frozen && *is_frozen;
    auto connected = sys::seqpacket_connect(path, frozen ? std::chrono::milliseconds(200) : std::chrono::seconds(5));
    if (!connected && frozen) {
      BRIG_TRY(cgroup->freeze(false));
      connected = sys::seqpacket_connect(path);
      if (auto r = cgroup->freeze(true); !r) return r.error().wrap("freeze sandbox " + record.id + " again after adopting it");
    }
    BRIG_TRY_ASSIGN(sock, std::move(connected));
    SandboxRecord adopted = record;
    adopted.owner_pid = static_cast<int>(::getpid());
    std::optional<SandboxNet> net;
    if (record.net_index >= 0)
      net = SandboxNet{isolate::net_address(subnet_, static_cast<uint32_t>(record.net_index)), dns_upstream_};
    return std::unique_ptr<SandboxHandle>(
        new LinuxSandbox(record.id, adopted, std::move(pidfd), std::move(sock), std::move(cgroup), path, options_.loop,
                         options_.limits, std::move(net), std::nullopt, disks_));
  }

  bool is_alive(const SandboxRecord& record) override {
    return record.init_pid > 0 && record.init_start != 0 && proc_start_time(record.init_pid) == record.init_start;
  }

  Result<> kill(const SandboxRecord& record) override {
    if (!is_alive(record)) return ok();
    Fd pidfd(sys::pidfd_open(record.init_pid, 0));
    if (!pidfd) return errno == ESRCH ? ok() : Result<>(Error::from_errno(errno, "pidfd_open"));
    // Re-check after pidfd_open: the pidfd now pins the process we verified, not a reused pid.
    if (!is_alive(record)) return ok();
    if (sys::pidfd_send_signal(pidfd.get(), SIGKILL) != 0 && errno != ESRCH)
      return Error::from_errno(errno, "pidfd_send_signal");
    if (auto cg = cgroups_->open(record.id)) (void)(*cg)->freeze(false);  // a paused one dies once thawed
    if (!pidfd_exited(pidfd.get(), 10'000)) return Error::make(errc::timed_out, "sandbox init did not exit");
    return ok();
  }

  Result<> release(const std::string& id, const SandboxRecord* record, bool keep_disk) override {
    if (record && record->net_index >= 0)
      BRIG_TRY(isolate::release_network(isolate::net_address(subnet_, static_cast<uint32_t>(record->net_index)), id));
    if (!keep_disk) disks_->remove(id);
    auto cg = cgroups_->open(id);
    if (!cg) return ok();  // already gone
    return (*cg)->destroy();
  }

  // The firewall table's shared part, repaired once per process before its first create with a
  // network (creates add it themselves when it is missing).
  Result<> ensure_firewall() {
    std::lock_guard lock(firewall_mu_);
    if (firewall_ready_) return ok();
    BRIG_TRY(isolate::ensure_firewall(subnet_));
    firewall_ready_ = true;
    return ok();
  }

  void sweep() override {
    // Cheap when there is no table; the lock keeps it from racing another brig process's create.
    auto swept = isolate::sweep_networks(subnet_);
    if (!swept) spdlog::warn("sweep sandbox networks: {}", swept.error().message());
    else if (!swept->removed.empty()) spdlog::info("emptied the firewall objects of {} dead sandbox network(s)", swept->removed.size());
  }

  std::vector<std::string> list_resources() override {
    auto names = cgroups_->list();
    for (auto& id : disks_->list())
      if (std::find(names.begin(), names.end(), id) == names.end()) names.push_back(id);
    return names;
  }

  std::vector<std::string> describe() override {
    auto out = cgroups_->describe();
    out.insert(out.begin(), "cgroup driver: " + cgroups_->name());
    out.push_back("sandbox networks: " + cidr_text(subnet_) + ", DNS forwarded to " +
                  (dns_upstream_ ? ipv4_text(dns_upstream_) : std::string("nowhere")));
    return out;
  }

 private:
  std::string socket_of(const std::string& id) const { return run_dir_ + "/" + id + ".sock"; }

  // What brig-init enforces inside the sandbox, fixed when it starts.
  void set_init_limits(initpb::InitLimits* l) const {
    const config::Limits& c = options_.limits;
    l->set_watched_dirs(c.watched_dirs);
    l->set_contexts(c.contexts);
    l->set_archive_unpacked_bytes(c.archive_unpacked_bytes);
    l->set_metadata_entries(c.metadata_entries);
    l->set_metadata_key_bytes(c.metadata_key_bytes);
    l->set_metadata_value_bytes(c.metadata_value_bytes);
  }

  const LinuxBackendOptions options_;
  std::string mount_point_;
  std::string run_dir_;
  std::unique_ptr<isolate::CgroupDriver> cgroups_;
  std::shared_ptr<DiskImages> disks_;  // shared with the sandboxes, which remove their own
  std::unique_ptr<Zygote> zygote_;
  Ipv4Cidr subnet_;
  uint32_t dns_upstream_ = 0;  // 0: sandboxes' DNS is refused
  std::mutex firewall_mu_;
  bool firewall_ready_ = false;  // guarded by firewall_mu_
};

}  // namespace

std::string cgroup_group(const std::string& state_dir) {
  char real[PATH_MAX];
  std::string key = ::realpath(state_dir.c_str(), real) ? real : state_dir;
  uint64_t h = 1469598103934665603ull;  // FNV-1a: stable across builds and hosts
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return "brig/" + std::string(hex, 12);
}

Result<std::unique_ptr<Backend>> make_linux_backend(const LinuxBackendOptions& options) {
  if (::geteuid() != 0)
    return Error::make(errc::unsupported,
                       "the Linux backend needs root (rootless mode is not built yet); run brig as root");
  BRIG_TRY_ASSIGN(cgroups, isolate::CgroupDriver::detect(cgroup_group(options.state_dir)));
  // A fixed, empty, root-only directory: each sandbox mounts its root here inside its own
  // mount namespace only, so one directory serves every sandbox.
  std::string mount_point = options.state_dir + "/mnt";
  if (::mkdir(mount_point.c_str(), 0700) != 0 && errno != EEXIST)
    return Error::from_errno(errno, "mkdir(" + mount_point + ")");
  // Control sockets of persistent sandboxes: root-only, like the rest of the state dir.
  std::string run_dir = options.state_dir + "/run";
  if (::mkdir(run_dir.c_str(), 0700) != 0 && errno != EEXIST) return Error::from_errno(errno, "mkdir(" + run_dir + ")");
  BRIG_TRY_ASSIGN(disks, DiskImages::open(options.state_dir + "/disks", uint64_t{options.sandbox.host_disk_reserve_mib} << 20));
  BRIG_TRY_ASSIGN(zygote, Zygote::start(options.max_parallel_creates));
  return std::unique_ptr<Backend>(new LinuxBackend(options, mount_point, run_dir, std::move(cgroups), std::move(disks),
                                                   std::move(zygote)));
}

}  // namespace brig::sandbox
