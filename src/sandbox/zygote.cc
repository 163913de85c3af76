#include "sandbox/zygote.h"

#include "sandbox/engine.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <span>

#include "init/init.h"
#include "isolate/net.h"
#include "isolate/rootfs.h"
#include "isolate/userns.h"
#include "sys/seqpacket.h"
#include "sys/syscalls.h"

namespace brig::sandbox {
namespace {

// The seccomp program, compiled once when the zygote starts and inherited by every init.
policy::SeccompProgram* g_policy = nullptr;

// The zygote is told apart from a user's `brig` by its whole argv: its name and a flag no verb
// has. It gets an empty environment (nothing of the daemon's reaches a sandbox).
constexpr const char* kZygoteArgv0 = "brig-zygote";
constexpr const char* kZygoteFlag = "--brig-zygote-socket=3";

constexpr int kSetupTimeoutMs = 10'000;

void report_step(int sock, const isolate::StepResult& step) {
  initpb::ZygoteReply reply;
  reply.set_err(step.err ? step.err : EIO);
  reply.set_error(std::string(step.step) + ": " + (strerrorname_np(step.err) ? strerrorname_np(step.err) : "?") +
                  " (" + std::strerror(step.err) + ")");
  std::string bytes;
  reply.SerializeToString(&bytes);
  (void)sys::send_packet(sock, bytes);
}

// In the sandbox's own root: /etc/resolv.conf names the host side of its veth, where its DNS
// is forwarded (or refused). Whatever the template had there (a file, a symlink) is replaced.
isolate::StepResult write_resolv_conf(const std::string& nameserver) {
  if (::unlink("/etc/resolv.conf") != 0 && errno != ENOENT) return isolate::StepResult::fail("unlink(/etc/resolv.conf)");
  int fd = ::open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return errno == ENOENT ? isolate::StepResult{} : isolate::StepResult::fail("open(/etc/resolv.conf)");
  const std::string text = "nameserver " + nameserver + "\n";
  ssize_t n = ::write(fd, text.data(), text.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) return isolate::StepResult::fail("write(/etc/resolv.conf)");
  return {};
}

// The sandbox's first process, in its new namespaces. Becomes brig-init; never returns.
[[noreturn]] void sandbox_child(const initpb::ZygoteRequest& req, Fd sock, Fd listener) {
  auto fail = [&](isolate::StepResult step) {
    report_step(sock.get(), step);
    ::_exit(1);
  };
  ::prctl(PR_SET_NAME, "brig-init");
  // The zygote ignores SIGCHLD (auto-reap); brig-init must see its children exit.
  ::signal(SIGCHLD, SIG_DFL);
  // The zygote sends the overlay once our cgroups and id maps are in place.
  auto setup = sys::recv_packet(sock.get());
  if (!setup || setup->fds.size() != 1) fail({"receive rootfs from zygote", EPROTO});
  Fd overlay = std::move(setup->fds[0]);
  const std::string nameserver = setup->data;  // the host side's address, when it has a network

  // Look up the mount point while our fsuid is still host root (its owner): it lies in a
  // root-only directory, and the lookup happens in our new mount namespace, so the mount we
  // put on it exists only here.
  Fd mount_point(::open(req.mount_point().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!mount_point) fail(isolate::StepResult::fail("open(mount point)"));
  // Until now we ran with the zygote's credentials (host root), which have no mapping in our
  // namespace; become the namespace's root (host uid_base) before creating anything.
  if (::setgroups(0, nullptr) != 0 || ::setresgid(0, 0, 0) != 0 || ::setresuid(0, 0, 0) != 0)
    fail(isolate::StepResult::fail("become root of the user namespace"));
  // Our cgroup is now the root of a new cgroup namespace: /proc/self/cgroup shows "/".
  if (::unshare(CLONE_NEWCGROUP) != 0) fail(isolate::StepResult::fail("unshare(CLONE_NEWCGROUP)"));
  if (::sethostname(req.sandbox_id().data(), req.sandbox_id().size()) != 0)
    fail(isolate::StepResult::fail("sethostname"));
  isolate::ApplyRootfsArgs args{overlay.get(), mount_point.get(), req.shm_bytes()};
  if (auto r = isolate::apply_rootfs(args); !r) fail(r);
  overlay.reset();
  mount_point.reset();
  if (!req.share_host_network())
    if (auto r = isolate::apply_loopback_up(); !r) fail(r);
  if (!nameserver.empty())
    if (auto r = write_resolv_conf(nameserver); !r) fail(r);

  // stdio of brig-init is /dev/null inside the sandbox; nothing of the host stays open.
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) fail(isolate::StepResult::fail("open(/dev/null)"));
  for (int fd = 0; fd < 3; ++fd)
    if (::dup2(null, fd) < 0) fail(isolate::StepResult::fail("dup2(/dev/null)"));
  // Only the control socket (fd 3) and the listener of a persistent sandbox (fd 4) survive.
  // Both are moved above 9 first, so no dup lands on its own number.
  int hi_sock = ::fcntl(sock.get(), F_DUPFD_CLOEXEC, 10);
  int hi_listen = listener ? ::fcntl(listener.get(), F_DUPFD_CLOEXEC, 10) : -1;
  if (hi_sock < 0 || ::dup3(hi_sock, 3, O_CLOEXEC) < 0) fail(isolate::StepResult::fail("dup3(control)"));
  if (listener && (hi_listen < 0 || ::dup3(hi_listen, 4, O_CLOEXEC) < 0)) fail(isolate::StepResult::fail("dup3(listener)"));
  (void)sock.release();
  (void)listener.release();
  sock.reset(3);
  if (hi_listen >= 0) listener.reset(4);
  if (sys::close_range(listener ? 5 : 4, ~0U, 0) != 0) fail(isolate::StepResult::fail("close_range"));

  // Nothing in the sandbox may ptrace brig-init or open /proc/1/{exe,root,fd} (its exe is the
  // host brig binary: CVE-2019-5736).
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) fail(isolate::StepResult::fail("prctl(PR_SET_DUMPABLE)"));
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(isolate::StepResult::fail("prctl(PR_SET_NO_NEW_PRIVS)"));
  struct sock_fprog prog = g_policy->as_fprog();
  if (sys::seccomp_set_filter(0, &prog) != 0) fail(isolate::StepResult::fail("seccomp(SET_MODE_FILTER)"));

  initpb::ZygoteReply ready;
  std::string bytes;
  ready.SerializeToString(&bytes);
  if (!sys::send_packet(sock.get(), bytes)) ::_exit(1);
  init::InitConfig config;
  config.lifetime_ms = req.lifetime_ms();
  config.listener = std::move(listener);
  config.kernels.assign(req.kernels().begin(), req.kernels().end());
  config.limits = req.limits();
  config.host_network = req.share_host_network();
  init::run_init(std::move(sock), std::move(config));
}

Result<> wait_ready(int sock) {
  struct pollfd p = {sock, POLLIN, 0};
  int n;
  do n = ::poll(&p, 1, kSetupTimeoutMs);
  while (n < 0 && errno == EINTR);
  if (n == 0) return Error::make(errc::timed_out, "sandbox init did not start within 10 s");
  BRIG_TRY_ASSIGN(packet, sys::recv_packet(sock));
  initpb::ZygoteReply reply;
  if (!reply.ParseFromString(packet.data)) return Error::make(errc::protocol, "malformed init reply");
  if (reply.err()) return Error(std::error_code(reply.err(), std::generic_category()), "sandbox setup: " + reply.error());
  return ok();
}

// A root-only listening socket at `path` (host side, in brig's state dir), or none.
Result<Fd> listen_control_socket(const std::string& path) {
  if (path.empty()) return Fd();
  return sys::seqpacket_listen(path);
}

// The zygote side of one create.
int64_t monotonic_ns() {
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

isolate::NetSetup net_setup(const initpb::ZygoteRequest& req) {
  auto cidr = [](const initpb::Cidr& c) { return Ipv4Cidr{c.addr(), static_cast<uint8_t>(std::min<uint32_t>(c.prefix(), 32))}; };
  const auto& n = req.network();
  isolate::NetSetup setup;
  setup.owner = req.sandbox_id();
  setup.subnet = cidr(n.subnet());
  for (auto& c : n.allow()) setup.policy.allow.push_back(cidr(c));
  for (auto& c : n.deny()) setup.policy.deny.push_back(cidr(c));
  setup.policy.dns = n.dns();
  setup.policy.proxy_port = static_cast<uint16_t>(std::min<uint32_t>(n.proxy_port(), 65535));
  setup.policy.dns_stub_port = static_cast<uint16_t>(std::min<uint32_t>(n.dns_stub_port(), 65535));
  setup.dns_upstream = n.dns_upstream();
  return setup;
}

// The zygote side of one create: clone the sandbox's first process. This happens in the zygote
// itself, never in a forked helper: a fork child may not be single-threaded (ThreadSanitizer's
// runtime, for one, starts a background thread in every fork child), and a raw clone3 from a
// process with a second thread copies whatever lock that thread held. The zygote was exec'd and
// never starts a thread. The child waits for its rootfs, which the helper sends once the child's
// cgroups and id maps are in place, so it does nothing that counts before then.
struct Cloned {
  pid_t pid = 0;
  Fd pidfd;
  Fd control;  // our end of the child's channel
  int64_t began_ns = 0;
};

Result<Cloned> clone_init(const initpb::ZygoteRequest& req, std::vector<Fd>& cgroup_fds) {
  const int64_t began = monotonic_ns();
  BRIG_TRY_ASSIGN(pair, sys::seqpacket_pair());
  auto& [ours, theirs] = pair;
  BRIG_TRY_ASSIGN(listener, listen_control_socket(req.control_socket()));

  int pidfd = -1;
  struct clone_args args = {};
  args.flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_PIDFD;
  if (!req.share_host_network()) args.flags |= CLONE_NEWNET;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);  // SAFETY: the kernel writes an int here
  // The zygote ignores SIGCHLD, so the kernel reaps the init when it exits (its pidfd still
  // reports the exit).
  args.exit_signal = SIGCHLD;
  if (req.cgroup_dir_fd()) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(cgroup_fds.at(0).get());
  }
  pid_t pid = sys::clone3(&args);
  if (pid < 0) return Error::from_errno(errno, "clone3");
  if (pid == 0) {
    ours.reset();
    sandbox_child(req, std::move(theirs), std::move(listener));
  }
  return Cloned{pid, Fd(pidfd), std::move(ours), began};
}

// The helper side of one create (a fork of the zygote, so creates run side by side): place the
// child in its cgroups (v1), write its id maps, build its rootfs and hand it over, wait until it
// is ready. On failure the child is killed.
Result<Zygote::Created> finish_sandbox(const initpb::ZygoteRequest& req, Cloned& child, std::vector<Fd>& cgroup_fds) {
  const pid_t pid = child.pid;
  auto abort = [&](Error e) {
    (void)sys::pidfd_send_signal(child.pidfd.get(), SIGKILL);
    return e;
  };
  if (!req.cgroup_dir_fd()) {
    const std::string pid_text = std::to_string(pid);
    for (auto& fd : cgroup_fds)
      if (::write(fd.get(), pid_text.data(), pid_text.size()) < 0)
        return abort(Error::from_errno(errno, "write(cgroup.procs)"));
  }
  if (auto r = isolate::write_id_maps(pid, req.uid_base()); !r) return abort(r.error());
  std::optional<isolate::NetAddress> net;
  if (req.has_network()) {
    auto a = isolate::attach_network(pid, net_setup(req));
    if (!a) return abort(a.error());
    net = *a;
  }
  // From here a failure kills the init (its namespace takes the veth along) and drops the
  // network's firewall objects.
  auto abort_net = [&](Error e) {
    (void)abort(e);
    if (net) (void)isolate::release_network(*net, req.sandbox_id());
    return e;
  };
  isolate::RootfsSpec rootfs{{req.layers().begin(), req.layers().end()}, req.uid_base(), req.disk_image(), req.upper_dir()};
  auto overlay = isolate::prepare_rootfs(pid, rootfs);
  if (!overlay) return abort_net(overlay.error().wrap("rootfs"));
  int fds[1] = {overlay->get()};
  const std::string nameserver = net ? ipv4_text(net->host_ip) : "";
  if (auto r = sys::send_packet(child.control.get(), nameserver, fds); !r) return abort_net(r.error());
  overlay->reset();
  if (auto r = wait_ready(child.control.get()); !r) return abort_net(r.error());
  Zygote::Created created{pid, std::move(child.pidfd), std::move(child.control), child.began_ns, monotonic_ns()};
  if (net) created.net_index = net->index;
  return created;
}

void send_reply(int sock, const initpb::ZygoteReply& reply, std::span<const int> fds = {}) {
  std::string bytes;
  reply.SerializeToString(&bytes);
  (void)sys::send_packet(sock, bytes, fds);
}

void send_error(int sock, uint64_t request_id, int err, const std::string& message) {
  initpb::ZygoteReply reply;
  reply.set_request_id(request_id);
  reply.set_err(err ? err : EIO);
  reply.set_error(message);
  send_reply(sock, reply);
}

// In a fresh helper process: finish one create, answered on `out`; never returns.
[[noreturn]] void create_helper(pid_t zygote, const initpb::ZygoteRequest& req, Cloned child,
                                std::vector<Fd>& cgroup_fds, Fd out) {
  ::prctl(PR_SET_NAME, "brig-zygote-c");
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != zygote) {  // the zygote died before we got here
    (void)sys::pidfd_send_signal(child.pidfd.get(), SIGKILL);
    ::_exit(0);
  }
  auto created = finish_sandbox(req, child, cgroup_fds);
  if (!created) {
    send_error(out.get(), req.request_id(), created.error().sys_errno(), created.error().message());
    ::_exit(0);
  }
  initpb::ZygoteReply reply;
  reply.set_request_id(req.request_id());
  reply.set_init_pid(created->init_pid);
  reply.set_began_ns(created->began_ns);
  reply.set_ready_ns(created->ready_ns);
  if (created->net_index) {
    reply.set_has_network(true);
    reply.set_net_index(*created->net_index);
  }
  int fds[2] = {created->pidfd.get(), created->control.get()};
  send_reply(out.get(), reply, fds);
  ::_exit(0);
}

// Creates in flight in the zygote at once; more requests wait in the engine's socket.
constexpr size_t kMaxHelpers = 64;

struct Helper {
  Fd reply;  // the helper's one answer arrives here, then EOF
  uint64_t request_id = 0;
};

// Passes a helper's answer on to the engine, or says the helper died without one.
void forward(int engine, Helper& h) {
  auto packet = sys::recv_packet(h.reply.get());
  if (!packet) return send_error(engine, h.request_id, EIO, "sandbox create: the zygote's helper ended without an answer");
  std::vector<int> fds;
  for (auto& fd : packet->fds) fds.push_back(fd.get());
  if (auto r = sys::send_packet(engine, packet->data, fds); !r)
    send_error(engine, h.request_id, EIO, "sandbox create: " + r.error().message());
}

[[noreturn]] void zygote_main(Fd sock) {
  ::prctl(PR_SET_NAME, "brig-zygote");
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() == 1) ::_exit(0);  // the engine died before we got here
  // Inits and helpers are our children; let the kernel reap them
  // (the inits' pidfds still report their exit).
  ::signal(SIGCHLD, SIG_IGN);
  initpb::ZygoteReply hello;
  auto policy = policy::compile_baseline_policy();
  if (policy) {
    g_policy = new policy::SeccompProgram(std::move(*policy));
  } else {
    hello.set_err(EINVAL);
    hello.set_error("seccomp policy: " + policy.error().message());
  }
  std::string hello_bytes;
  hello.SerializeToString(&hello_bytes);
  if (!sys::send_packet(sock.get(), hello_bytes) || !policy) ::_exit(1);
  // One poll loop over the engine's socket and the helpers' answers. Each create runs in a
  // helper forked from this single-threaded process, so creates of different sandboxes
  // proceed side by side; the zygote itself only reads requests and passes answers on.
  const pid_t self = ::getpid();
  std::vector<Helper> helpers;
  std::vector<struct pollfd> polled;
  for (;;) {
    const bool room = helpers.size() < kMaxHelpers;
    polled.assign(1, {sock.get(), static_cast<short>(room ? POLLIN : 0), 0});
    for (auto& h : helpers) polled.push_back({h.reply.get(), POLLIN, 0});
    int n = ::poll(polled.data(), polled.size(), -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ::_exit(1);
    for (size_t i = helpers.size(); i-- > 0;) {
      if (!polled[i + 1].revents) continue;
      forward(sock.get(), helpers[i]);
      helpers.erase(helpers.begin() + static_cast<std::ptrdiff_t>(i));
    }
    const short ev = polled[0].revents;
    if (!ev) continue;
    if (!room || !(ev & POLLIN)) ::_exit(0);  // hang-up or error: the engine is gone
    auto packet = sys::recv_packet(sock.get());
    if (!packet) ::_exit(0);  // the engine is gone
    initpb::ZygoteRequest req;
    if (!req.ParseFromString(packet->data)) {
      send_error(sock.get(), 0, EPROTO, "malformed zygote request");
      continue;
    }
    auto pair = sys::seqpacket_pair();
    if (!pair) {
      send_error(sock.get(), req.request_id(), pair.error().sys_errno(), "sandbox create: " + pair.error().message());
      continue;
    }
    auto child = clone_init(req, packet->fds);
    if (!child) {
      send_error(sock.get(), req.request_id(), child.error().sys_errno(), "sandbox create: " + child.error().message());
      continue;
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      (void)sys::pidfd_send_signal(child->pidfd.get(), SIGKILL);
      send_error(sock.get(), req.request_id(), errno, std::string("sandbox create: fork: ") + std::strerror(errno));
      continue;
    }
    if (pid == 0) {
      // The helper keeps only what its create needs: no engine socket, no other answers.
      sock.reset();
      for (auto& h : helpers) h.reply.reset();
      pair->first.reset();
      create_helper(self, req, std::move(*child), packet->fds, std::move(pair->second));
    }
    // The helper holds the child's pidfd and channel now; if it dies, the channel closes and
    // the child, waiting for its rootfs, exits.
    pair->second.reset();
    helpers.push_back({std::move(pair->first), req.request_id()});
  }
}

}  // namespace

void run_zygote_if_requested(int argc, char** argv) {
  if (argc != 2 || std::strcmp(argv[0], kZygoteArgv0) != 0 || std::strcmp(argv[1], kZygoteFlag) != 0) return;
  zygote_main(Fd(3));
}

namespace {

// A sealed, in-memory copy of this program. The zygote is exec'd from it, so brig-init (forked
// from the zygote) has no host file as its executable: `#!/proc/self/exe` in the sandbox finds
// an anonymous, unwritable copy, never the brig binary on the host (runc CVE-2019-5736).
Result<Fd> sealed_copy_of_self() {
  Fd mem(::memfd_create("brig-init", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!mem) return Error::from_errno(errno, "memfd_create");
  Fd self(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  if (!self) return Error::from_errno(errno, "open(/proc/self/exe)");
  for (;;) {
    ssize_t n = ::sendfile(mem.get(), self.get(), nullptr, 1 << 30);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno(errno, "sendfile(memfd)");
    if (n == 0) break;
  }
  if (::fcntl(mem.get(), F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0)
    return Error::from_errno(errno, "fcntl(F_ADD_SEALS)");
  return mem;
}

}  // namespace

Result<std::unique_ptr<Zygote>> Zygote::start(size_t max_parallel_creates) {
  BRIG_TRY_ASSIGN(image, sealed_copy_of_self());
  BRIG_TRY_ASSIGN(pair, sys::seqpacket_pair());
  pid_t pid = ::fork();
  if (pid < 0) return Error::from_errno(errno, "fork(zygote)");
  if (pid == 0) {
    // Only stdio, the socket (fd 3, kept across exec) and the image (fd 4) stay open.
    // Move both above 4 first: dup2 onto an fd's own number would keep its CLOEXEC flag.
    int sock = ::fcntl(pair.second.get(), F_DUPFD_CLOEXEC, 10);
    int mem = ::fcntl(image.get(), F_DUPFD_CLOEXEC, 10);
    if (sock < 0 || mem < 0 || ::dup2(sock, 3) < 0 || ::dup3(mem, 4, O_CLOEXEC) < 0) ::_exit(127);
    sys::close_range(5, ~0U, 0);
    char* argv[] = {const_cast<char*>(kZygoteArgv0), const_cast<char*>(kZygoteFlag), nullptr};
    char* envp[] = {nullptr};
    ::fexecve(4, argv, envp);
    ::_exit(127);
  }
  pair.second.reset();
  auto zygote = std::unique_ptr<Zygote>(
      new Zygote(pid, std::move(pair.first), std::clamp<size_t>(max_parallel_creates, 1, kMaxHelpers)));
  BRIG_TRY(wrap(wait_ready(zygote->sock_.get()), "start zygote"));
  return zygote;
}

Zygote::~Zygote() {
  sock_.reset();
  int status;
  ::waitpid(pid_, &status, 0);
}

Result<Zygote::Created> Zygote::create(const initpb::ZygoteRequest& request, std::vector<Fd> cgroup_fds) {
  uint64_t id;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return in_flight_ < max_parallel_ || gone_; });
    if (gone_) return Error::make(errc::protocol, "the zygote is gone");
    ++in_flight_;
    id = ++next_id_;
    waiting_.insert(id);
  }
  struct Slot {
    Zygote& z;
    uint64_t id;
    ~Slot() {
      {
        std::lock_guard lock(z.mu_);
        --z.in_flight_;
        z.waiting_.erase(id);
        z.replies_.erase(id);
      }
      z.cv_.notify_all();
    }
  } slot{*this, id};
  initpb::ZygoteRequest req = request;
  req.set_request_id(id);
  std::string bytes;
  req.SerializeToString(&bytes);
  std::vector<int> raw;
  for (auto& fd : cgroup_fds) raw.push_back(fd.get());
  // One datagram per request: concurrent sends never interleave.
  BRIG_TRY(sys::send_packet(sock_.get(), bytes, raw));
  cgroup_fds.clear();
  sys::Packet packet;
  {
    // Answers come in any order; whoever is waiting reads the socket, one at a time, and files
    // each answer under its request id.
    std::unique_lock lock(mu_);
    for (;;) {
      if (auto it = replies_.find(id); it != replies_.end()) {
        packet = std::move(it->second);
        replies_.erase(it);
        break;
      }
      if (gone_) return Error::make(errc::protocol, "the zygote is gone");
      if (reading_) {
        cv_.wait(lock);
        continue;
      }
      reading_ = true;
      lock.unlock();
      auto got = sys::recv_packet(sock_.get());
      lock.lock();
      reading_ = false;
      if (!got) {
        gone_ = true;
      } else {
        initpb::ZygoteReply r;
        if (r.ParseFromString(got->data) && waiting_.count(r.request_id())) replies_[r.request_id()] = std::move(*got);
      }
      cv_.notify_all();
    }
  }
  initpb::ZygoteReply reply;
  if (!reply.ParseFromString(packet.data)) return Error::make(errc::protocol, "malformed zygote reply");
  if (reply.err()) return Error(std::error_code(reply.err(), std::generic_category()), reply.error());
  if (packet.fds.size() != 2) return Error::make(errc::protocol, "zygote reply without fds");
  Created created{reply.init_pid(), std::move(packet.fds[0]), std::move(packet.fds[1]), reply.began_ns(), reply.ready_ns()};
  if (reply.has_network()) created.net_index = reply.net_index();
  return created;
}

}  // namespace brig::sandbox
