#include "init/init.h"

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <vector>

#include "init/archive.h"
#include "init/file_ops.h"
#include "init/kernel_host.h"
#include "init/spawn.h"
#include "init.pb.h"
#include "sys/seqpacket.h"

namespace brig::init {
namespace {

struct Watch {
  uint64_t id;
  std::string dir;  // relative to the watched root ("" for the root)
  bool recursive;
  initpb::User user;
};

class Init {
 public:
  Init(Fd control, InitConfig config)
      : control_(std::move(control)),
        listener_(std::move(config.listener)),
        env_(std::move(config.env)),
        limits_(config.limits),
        host_network_(config.host_network) {
    set_metadata_limits(limits_);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    signals_.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    inotify_.reset(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    set_lifetime(config.lifetime_ms);
    if (!config.kernels.empty()) (void)ensure_kernel_host(config.kernels);
  }

  [[noreturn]] void run() {
    for (;;) {
      // A closed control channel (fd -1) is skipped by poll.
      struct pollfd fds[5] = {{control_.get(), POLLIN, 0},
                              {signals_.get(), POLLIN, 0},
                              {timer_.get(), POLLIN, 0},
                              {inotify_.get(), POLLIN, 0},
                              {listener_.get(), POLLIN, 0}};
      if (::poll(fds, 5, -1) < 0 && errno != EINTR) ::_exit(3);
      if (fds[1].revents) on_signals();
      // The lifetime is over: exiting as PID 1 makes the kernel kill every process left.
      if (fds[2].revents) ::_exit(0);
      if (fds[3].revents) on_inotify();
      if (fds[0].revents) on_control();
      if (fds[4].revents) on_accept();
    }
  }

 private:
  void set_lifetime(uint32_t ms) {
    struct itimerspec its = {};
    if (ms == 0) ms = 1;  // 0 would disarm the timer; the lifetime is always bounded
    its.it_value.tv_sec = ms / 1000;
    its.it_value.tv_nsec = static_cast<long>(ms % 1000) * 1'000'000;
    ::timerfd_settime(timer_.get(), 0, &its, nullptr);
  }

  // The kernel host runs until the sandbox ends; if it died (its user can kill it), the next
  // request starts a new one.
  Result<> ensure_kernel_host(const std::vector<std::string>& prestart = {}) {
    if (kernel_host_.pid > 0) return ok();
    BRIG_TRY_ASSIGN(host, start_kernel_host(env_, prestart, limits_.contexts()));
    kernel_host_ = std::move(host);
    return ok();
  }

  Result<Fd> open_kernel_connection() {
    BRIG_TRY(ensure_kernel_host());
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return Error::from_errno(errno, "socketpair");
    Fd ours(sv[0]), theirs(sv[1]);
    int fd = theirs.get();
    // Non-blocking: a kernel host that stopped reading makes this request fail, not brig-init hang.
    BRIG_TRY(sys::send_packet(kernel_host_.control.get(), kernel_host_conn_message(), std::span<const int>(&fd, 1)));
    return ours;
  }

  // Starts a TCP connection to `port` on the sandbox's own loopback and returns the socket at
  // once, connected or still connecting: brig-init is single-threaded and never waits for a
  // peer the sandbox controls (a listener that never accepts would hold it for the SYN
  // retries). The engine waits for the handshake and reads SO_ERROR. The socket belongs to
  // this network namespace wherever its fd goes; it is made by the sandbox's root, as a
  // process of the sandbox could make it.
  Result<Fd> connect_port(const initpb::ConnectPort& c) const {
    if (host_network_) return Error::from_errno(EPERM, "connect: this sandbox shares the host's network");
    if (c.port() == 0 || c.port() > 65535) return Error::make(errc::invalid_argument, "connect: port out of range");
    Fd sock(::socket(c.ipv6() ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!sock) return Error::from_errno(errno, "socket");
    int r;
    if (c.ipv6()) {
      struct sockaddr_in6 a = {};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(static_cast<uint16_t>(c.port()));
      a.sin6_addr = in6addr_loopback;
      r = ::connect(sock.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);  // SAFETY: sockaddr_in6
    } else {
      struct sockaddr_in a = {};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(c.port()));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      r = ::connect(sock.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);  // SAFETY: sockaddr_in
    }
    if (r != 0 && errno != EINPROGRESS) return Error::from_errno(errno, "connect");
    return sock;
  }

  void send(const initpb::InitMessage& msg, std::span<const int> fds = {}) {
    if (!control_) return;  // nobody connected: exits and events are dropped
    std::string bytes;
    msg.SerializeToString(&bytes);
    // A failed send means the engine is gone; the next read sees EOF and we exit.
    (void)sys::send_packet(control_.get(), bytes, fds);
  }

  // A brig process (re)connects: it becomes the one control channel.
  void on_accept() {
    Fd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (conn) control_ = std::move(conn);
  }

  void on_control() {
    auto packet = sys::recv_packet(control_.get());
    if (!packet) {
      // The brig process holding this sandbox is gone. A persistent sandbox waits for the
      // next one (its lifetime timer still runs); any other goes down with it.
      if (!listener_) ::_exit(0);
      control_.reset();
      return;
    }
    initpb::InitRequest req;
    initpb::InitMessage out;
    auto* resp = out.mutable_response();
    if (!req.ParseFromString(packet->data)) {
      resp->set_err(EPROTO);
      resp->set_error("malformed request");
      send(out);
      return;
    }
    resp->set_id(req.id());
    std::vector<Fd> fds;
    Result<> r = handle(req, resp, &fds);
    if (!r) {
      resp->clear_result();
      int e = r.error().sys_errno();
      resp->set_err(e ? e : (r.error().is(errc::invalid_argument) ? EINVAL : EIO));
      resp->set_error(r.error().message());
      fds.clear();
    }
    std::vector<int> raw;
    for (auto& f : fds) raw.push_back(f.get());
    send(out, raw);
  }

  Result<> handle(const initpb::InitRequest& req, initpb::InitResponse* resp, std::vector<Fd>* fds) {
    switch (req.op_case()) {
      case initpb::InitRequest::kSpawn: {
        BRIG_TRY_ASSIGN(started, spawn_process(req.spawn(), env_));
        auto& info = processes_[started.pid];
        info.set_pid(started.pid);
        info.set_cmd(req.spawn().cmd());
        *info.mutable_args() = req.spawn().args();
        info.set_cwd(req.spawn().cwd());
        info.set_tag(req.spawn().tag());
        info.set_pty(req.spawn().pty());
        resp->mutable_spawned()->set_pid(started.pid);
        *fds = std::move(started.fds);
        return ok();
      }
      case initpb::InitRequest::kSignal: {
        const auto& s = req.signal();
        if (s.pid() <= 1 || !processes_.count(s.pid()))
          return Error::from_errno(ESRCH, "signal: no such process " + std::to_string(s.pid()));
        if (s.signal() <= 0 || s.signal() >= NSIG) return Error::make(errc::invalid_argument, "invalid signal");
        int target = s.process_group() ? -s.pid() : s.pid();
        if (::kill(target, s.signal()) != 0 && !(s.process_group() && ::kill(s.pid(), s.signal()) == 0))
          return Error::from_errno(errno, "kill");
        return ok();
      }
      case initpb::InitRequest::kListProcesses:
        for (auto& [pid, info] : processes_) *resp->mutable_processes()->add_processes() = info;
        return ok();
      case initpb::InitRequest::kStat: {
        FsCreds creds(req.stat().user());
        BRIG_TRY_ASSIGN(e, stat_path(req.stat().path()));
        *resp->mutable_entry() = std::move(e);
        return ok();
      }
      case initpb::InitRequest::kListDir: {
        FsCreds creds(req.list_dir().user());
        BRIG_TRY_ASSIGN(l, list_dir(req.list_dir().path(), req.list_dir().depth()));
        *resp->mutable_listing() = std::move(l);
        return ok();
      }
      case initpb::InitRequest::kMakeDir: {
        FsCreds creds(req.make_dir().user());
        BRIG_TRY_ASSIGN(e, make_dirs(req.make_dir().path()));
        *resp->mutable_entry() = std::move(e);
        return ok();
      }
      case initpb::InitRequest::kMove: {
        FsCreds creds(req.move().user());
        BRIG_TRY_ASSIGN(e, move_path(req.move().from(), req.move().to()));
        *resp->mutable_entry() = std::move(e);
        return ok();
      }
      case initpb::InitRequest::kRemove: {
        FsCreds creds(req.remove().user());
        return remove_path(req.remove().path());
      }
      case initpb::InitRequest::kOpenFile: {
        const auto& o = req.open_file();
        FsCreds creds(o.user());
        BRIG_TRY_ASSIGN(fd, open_file(o.path(), o.write(), o.mode(), resp->mutable_opened()->mutable_entry()));
        fds->push_back(std::move(fd));
        return ok();
      }
      case initpb::InitRequest::kWatch: return add_watch(req.watch(), resp);
      case initpb::InitRequest::kUnwatch: {
        uint64_t id = req.unwatch().watch_id();
        for (auto it = watches_.begin(); it != watches_.end();) {
          if (it->second.id == id) {
            ::inotify_rm_watch(inotify_.get(), it->first);
            it = watches_.erase(it);
          } else {
            ++it;
          }
        }
        return ok();
      }
      case initpb::InitRequest::kSetLifetime:
        set_lifetime(req.set_lifetime().lifetime_ms());
        return ok();
      case initpb::InitRequest::kSetEnv:
        env_.clear();
        for (auto& [k, v] : req.set_env().env()) env_[k] = v;
        if (kernel_host_.pid > 0) (void)sys::send_packet(kernel_host_.control.get(), kernel_host_env_message(env_));
        return ok();
      case initpb::InitRequest::kArchive: {
        const auto& a = req.archive();
        BRIG_TRY_ASSIGN(format, parse_archive_format(a.format()));
        ArchiveLimits limits;
        limits.max_unpacked_bytes = limits_.archive_unpacked_bytes();
        if (a.max_bytes()) limits.max_bytes = a.max_bytes();
        if (a.max_entries()) limits.max_entries = a.max_entries();
        if (a.extract()) {
          BRIG_TRY_ASSIGN(pipes, start_import(a.path(), a.user(), format, limits));
          fds->push_back(std::move(pipes.first));
          fds->push_back(std::move(pipes.second));
        } else {
          BRIG_TRY_ASSIGN(out, start_export(a.path(), a.user(), format, limits));
          fds->push_back(std::move(out));
        }
        return ok();
      }
      case initpb::InitRequest::kOpenKernels: {
        BRIG_TRY_ASSIGN(conn, open_kernel_connection());
        fds->push_back(std::move(conn));
        return ok();
      }
      case initpb::InitRequest::kConnectPort: {
        BRIG_TRY_ASSIGN(sock, connect_port(req.connect_port()));
        fds->push_back(std::move(sock));
        return ok();
      }
      case initpb::InitRequest::OP_NOT_SET: break;
    }
    return Error::make(errc::invalid_argument, "unknown request");
  }

  static constexpr uint32_t kWatchMask =
      IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_ONLYDIR;

  Result<int> watch_dir(const std::string& path, initpb::User user) {
    if (watches_.size() >= limits_.watched_dirs())
      return Error::make(errc::limit_exceeded,
                         "too many watched directories (" + std::to_string(limits_.watched_dirs()) + " at most)");
    FsCreds creds(user);
    BRIG_TRY_ASSIGN(dir, open_dir_path(path));
    // Watch through our own verified fd, so no path is resolved a second time.
    std::string self = "/proc/self/fd/" + std::to_string(dir.get());
    int wd = ::inotify_add_watch(inotify_.get(), self.c_str(), kWatchMask);
    if (wd < 0) return Error::from_errno(errno, "inotify_add_watch '" + path + "'");
    return wd;
  }

  Result<> add_watch(const initpb::Watch& w, initpb::InitResponse* resp) {
    uint64_t id = ++next_watch_;
    BRIG_TRY_ASSIGN(wd, watch_dir(w.path(), w.user()));
    watches_[wd] = {id, "", w.recursive(), w.user()};
    roots_[id] = w.path();
    if (w.recursive()) {
      FsCreds creds(w.user());
      auto listing = list_dir(w.path(), kMaxListDepth);
      if (listing) {
        for (auto& e : listing->entries()) {
          if (e.type() != initpb::FILE_TYPE_DIR) continue;
          auto sub = watch_dir(e.path(), w.user());
          if (sub) watches_[*sub] = {id, e.path().substr(w.path().size() + 1), true, w.user()};
        }
      }
    }
    resp->mutable_watch_started()->set_watch_id(id);
    return ok();
  }

  // A directory appeared under a recursive watch. What is created in it before its own watch
  // exists would be missed (the inotify race), so it is watched first, then listed, and what
  // is already there is reported as created (at worst twice, never not at all).
  void watch_new_dir(const Watch& parent, const std::string& rel) {
    const std::string path = roots_[parent.id] + "/" + rel;
    auto sub = watch_dir(path, parent.user);
    if (!sub) return;
    watches_[*sub] = {parent.id, rel, true, parent.user};
    FsCreds creds(parent.user);
    auto listing = list_dir(path, 1);
    if (!listing) return;
    for (auto& e : listing->entries()) {
      initpb::InitMessage msg;
      auto* we = msg.mutable_watch_event();
      we->set_watch_id(parent.id);
      we->set_name(rel + "/" + e.name());
      we->set_op(initpb::WATCH_OP_CREATE);
      send(msg);
      if (e.type() == initpb::FILE_TYPE_DIR) watch_new_dir(parent, rel + "/" + e.name());
    }
  }

  void on_inotify() {
    alignas(struct inotify_event) char buf[16384];
    for (;;) {
      ssize_t n = ::read(inotify_.get(), buf, sizeof buf);
      if (n <= 0) return;
      for (char* p = buf; p < buf + n;) {
        auto* ev = reinterpret_cast<struct inotify_event*>(p);  // SAFETY: inotify records are aligned
        p += sizeof(struct inotify_event) + ev->len;
        auto it = watches_.find(ev->wd);
        if (it == watches_.end()) continue;
        if (ev->mask & IN_IGNORED) {
          watches_.erase(it);
          continue;
        }
        Watch w = it->second;
        std::string name = ev->len ? std::string(ev->name) : "";
        std::string rel = w.dir.empty() ? name : w.dir + "/" + name;
        initpb::InitMessage msg;
        auto* we = msg.mutable_watch_event();
        we->set_watch_id(w.id);
        we->set_name(rel);
        if (ev->mask & IN_CREATE) we->set_op(initpb::WATCH_OP_CREATE);
        else if (ev->mask & (IN_MODIFY | IN_CLOSE_WRITE)) we->set_op(initpb::WATCH_OP_WRITE);
        else if (ev->mask & IN_DELETE) we->set_op(initpb::WATCH_OP_REMOVE);
        else if (ev->mask & (IN_MOVED_FROM | IN_MOVED_TO)) we->set_op(initpb::WATCH_OP_RENAME);
        else if (ev->mask & IN_ATTRIB) we->set_op(initpb::WATCH_OP_CHMOD);
        else continue;
        send(msg);
        if (w.recursive && (ev->mask & IN_CREATE) && (ev->mask & IN_ISDIR)) watch_new_dir(w, rel);
      }
    }
  }

  void on_signals() {
    struct signalfd_siginfo si;
    while (::read(signals_.get(), &si, sizeof si) == sizeof si) {
      // SIGTERM, SIGINT or SIGHUP sent to the sandbox's PID 1 from the host go on to every
      // process in the sandbox, as an init should. Sandbox root can signal PID 1 too (its
      // sender pid is then visible, non-zero): that is not relayed to everyone else.
      if (si.ssi_signo != SIGCHLD && si.ssi_pid == 0 && si.ssi_code == SI_USER) ::kill(-1, static_cast<int>(si.ssi_signo));
    }
    // Reap everything: our processes, and orphans re-parented to us as PID 1.
    for (;;) {
      int status;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      if (pid == kernel_host_.pid) kernel_host_ = {};
      auto it = processes_.find(pid);
      if (it == processes_.end()) continue;
      processes_.erase(it);
      initpb::InitMessage msg;
      auto* ex = msg.mutable_exited();
      ex->set_pid(pid);
      if (WIFSIGNALED(status)) ex->set_signal(WTERMSIG(status));
      else ex->set_exit_code(WEXITSTATUS(status));
      send(msg);
    }
  }

  Fd control_, listener_, signals_, timer_, inotify_;
  std::map<std::string, std::string> env_;
  const initpb::InitLimits limits_;
  const bool host_network_;
  KernelHost kernel_host_;
  std::map<int, initpb::ProcessInfo> processes_;
  std::map<int, Watch> watches_;
  std::map<uint64_t, std::string> roots_;
  uint64_t next_watch_ = 0;
};

}  // namespace

void run_init(Fd control, InitConfig config) {
  Init init(std::move(control), std::move(config));
  init.run();
}

}  // namespace brig::init
