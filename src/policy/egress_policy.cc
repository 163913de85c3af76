#include "policy/egress_policy.h"

#include "policy/seccomp_build.h"

#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <memory>

#include "base/fd.h"

namespace brig::policy {

const std::vector<AllowedSyscall>& egress_allowed_syscalls() {
  static const std::vector<AllowedSyscall> list = {
      // The event loop (Boost.Asio's epoll reactor) and its wake-ups.
      {"epoll_create1", "the reactor"},
      {"epoll_ctl", "the reactor"},
      {"epoll_wait", "the reactor"},
      {"epoll_pwait", "the reactor"},
      {"eventfd2", "the reactor's interrupter"},
      {"timerfd_create", "the reactor's timers"},
      {"timerfd_settime", "the reactor's timers"},
      {"timerfd_gettime", "the reactor's timers"},
      {"poll", "c-ares and glibc may poll one descriptor"},
      {"ppoll", "c-ares and glibc may poll one descriptor"},
      // Sockets: connections from sandboxes, to destinations, to the upstream resolver.
      {"accept4", "connections from sandboxes (CLOEXEC)"},
      {"connect", "destinations and the upstream resolver"},
      {"socket", "destinations and the upstream resolver (AF_INET/AF_INET6 only, below)"},
      {"getsockopt", "SO_ORIGINAL_DST, SO_ERROR"},
      {"setsockopt", "TCP_NODELAY, non-blocking setup"},
      {"getsockname", "the local end of a connection"},
      {"getpeername", "the sandbox a connection comes from"},
      {"shutdown", "half-close"},
      {"recvfrom", "DNS datagrams"},
      {"recvmsg", "DNS datagrams and the control channel"},
      {"sendto", "DNS datagrams"},
      {"sendmsg", "DNS datagrams and the control channel"},
      {"sendmmsg", "DNS datagrams"},
      {"read", "sockets and pipes"},
      {"readv", "sockets"},
      {"write", "sockets, pipes, the log on stderr"},
      {"writev", "sockets (c-ares), the log"},
      {"splice", "relaying bytes between two sockets through a pipe"},
      {"pipe2", "the relay's pipes (CLOEXEC)"},
      {"close", "every descriptor"},
      {"fcntl", "non-blocking and close-on-exec flags"},
      {"ioctl", "FIONBIO and FIONREAD (Asio)"},
      // Memory.
      {"brk", "malloc"},
      {"mmap", "malloc"},
      {"munmap", "malloc"},
      {"mremap", "realloc"},
      {"madvise", "malloc trimming"},
      {"mprotect", "malloc arenas"},
      // Time, randomness, threads' bookkeeping, signals, exit.
      {"clock_gettime", "timers (when the vDSO is not used)"},
      {"gettimeofday", "timers (when the vDSO is not used)"},
      {"clock_nanosleep", "short waits"},
      {"nanosleep", "short waits"},
      {"getrandom", "OpenSSL and c-ares randomness"},
      {"futex", "locks inside the C++ runtime"},
      {"sched_yield", "locks inside the C++ runtime"},
      {"getpid", "logging, OpenSSL"},
      {"gettid", "logging"},
      {"rt_sigaction", "ignoring SIGPIPE"},
      {"rt_sigprocmask", "glibc"},
      {"rt_sigreturn", "signal delivery"},
      {"restart_syscall", "interrupted waits"},
      {"tgkill", "abort() on a broken invariant"},
      {"exit", "thread exit"},
      {"exit_group", "process exit"},
      {"fstat", "stdio on the log"},
      {"newfstatat", "stdio on the log"},
      {"lseek", "stdio on the log"},
      {"prlimit64", "reading the descriptor limit"},
  };
  return list;
}

namespace {

// A sanitizer's runtime (ASan, TSan: test builds only) makes calls of its own (its threads, its
// reports reading /proc/self/maps): there the filter logs what it would kill, and lets files open.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr uint32_t kDefaultAction = SCMP_ACT_LOG;
constexpr bool kSanitizer = true;
#else
constexpr uint32_t kDefaultAction = SCMP_ACT_KILL_PROCESS;
constexpr bool kSanitizer = false;
#endif

}  // namespace

Result<SeccompProgram> compile_egress_policy() {
  BRIG_TRY_ASSIGN(ctx, build::new_filter(kDefaultAction));
  using build::add;
  for (const auto& s : egress_allowed_syscalls()) {
    int nr = seccomp_syscall_resolve_name(s.syscall);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if (std::string_view(s.syscall) == "socket") {
      for (int af : {AF_INET, AF_INET6})
        BRIG_TRY(add(ctx.get(), SCMP_ACT_ALLOW, nr, {SCMP_A0(SCMP_CMP_EQ, static_cast<uint64_t>(af))}, "socket"));
      continue;
    }
    BRIG_TRY(add(ctx.get(), SCMP_ACT_ALLOW, nr, {}, s.syscall));
  }
  // Other socket families: refused (not killed), so a library probing for one sees EAFNOSUPPORT.
  for (int af = 0; af <= AF_MAX; ++af) {
    if (af == AF_INET || af == AF_INET6) continue;
    scmp_arg_cmp arg = af == AF_MAX ? SCMP_A0(SCMP_CMP_GE, static_cast<uint64_t>(AF_MAX))
                                    : SCMP_A0(SCMP_CMP_EQ, static_cast<uint64_t>(af));
    BRIG_TRY(add(ctx.get(), SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), {arg}, "socket family"));
  }
  for (const char* name : {"open", "openat", "openat2"}) {
    if (kSanitizer) break;
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;
    BRIG_TRY(add(ctx.get(), SCMP_ACT_ERRNO(EACCES), nr, {}, name));
  }
  return build::export_program(ctx.get(), "brig-egress-seccomp");
}

Result<> install_seccomp(const SeccompProgram& prog) {
  struct sock_fprog fprog = prog.as_fprog();
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog) != 0)
    return Error::from_errno(errno, "seccomp(SET_MODE_FILTER)");
  return ok();
}

}  // namespace brig::policy
