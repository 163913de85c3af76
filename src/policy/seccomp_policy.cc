#include "policy/seccomp_policy.h"

#include "policy/seccomp_build.h"

#include <linux/sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>

#include "base/fd.h"

namespace brig::policy {

const std::vector<SeccompRule>& baseline_rules() {
  static const std::vector<SeccompRule> rules = {
      // Kernel code loading and replacement.
      {"init_module", EPERM, "loads kernel code"},
      {"finit_module", EPERM, "loads kernel code"},
      {"delete_module", EPERM, "unloads kernel code"},
      {"kexec_load", EPERM, "replaces the running kernel"},
      {"kexec_file_load", EPERM, "replaces the running kernel"},
      // Large kernel attack surfaces with a history of escapes.
      {"bpf", EPERM, "eBPF verifier bugs are a recurring escape route"},
      {"perf_event_open", EPERM, "perf is a large attack surface and leaks host activity"},
      {"userfaultfd", EPERM, "used to widen race windows in kernel exploits"},
      {"io_uring_setup", EPERM, "io_uring bypasses syscall filtering and can open AF_VSOCK (isolate 2.6)"},
      {"io_uring_enter", EPERM, "io_uring: see io_uring_setup"},
      {"io_uring_register", EPERM, "io_uring: see io_uring_setup"},
      {"add_key", EPERM, "kernel keyrings are not namespaced"},
      {"keyctl", EPERM, "kernel keyrings are not namespaced"},
      {"request_key", EPERM, "kernel keyrings are not namespaced"},
      // Namespaces and mounts: the sandbox's layout is fixed by brig.
      {"unshare", EPERM, "nested namespaces (a user namespace regains capabilities)"},
      {"setns", EPERM, "joining other namespaces"},
      {"clone3", ENOSYS, "its flags cannot be inspected; ENOSYS makes libc fall back to clone"},
      {"mount", EPERM, "the mount layout is fixed"},
      {"umount2", EPERM, "the mount layout is fixed (unmounting could reveal what is under it)"},
      {"pivot_root", EPERM, "the mount layout is fixed"},
      {"move_mount", EPERM, "new mount API: the mount layout is fixed"},
      {"open_tree", EPERM, "new mount API: the mount layout is fixed"},
      {"fsopen", EPERM, "new mount API: the mount layout is fixed"},
      {"fsconfig", EPERM, "new mount API: the mount layout is fixed"},
      {"fsmount", EPERM, "new mount API: the mount layout is fixed"},
      {"fspick", EPERM, "new mount API: the mount layout is fixed"},
      {"mount_setattr", EPERM, "new mount API: the mount layout is fixed"},
      {"chroot", EPERM, "chroot tricks against processes outside it"},
      // Cross-process inspection.
      {"ptrace", EPERM, "tracing other processes (and brig-init); debuggers do not work here"},
      {"process_vm_readv", EPERM, "reads another process's memory"},
      {"process_vm_writev", EPERM, "writes another process's memory"},
      {"kcmp", EPERM, "compares kernel objects of other processes"},
      // Host-global state.
      {"reboot", EPERM, "host power state"},
      {"swapon", EPERM, "host swap"},
      {"swapoff", EPERM, "host swap"},
      {"acct", EPERM, "host process accounting"},
      {"settimeofday", EPERM, "host clock"},
      {"clock_settime", EPERM, "host clock"},
      {"clock_adjtime", EPERM, "host clock"},
      {"adjtimex", EPERM, "host clock"},
      {"syslog", EPERM, "reads the host kernel log"},
      {"quotactl", EPERM, "host disk quotas"},
      {"quotactl_fd", EPERM, "host disk quotas"},
      {"lookup_dcookie", EPERM, "profiling interface"},
      {"iopl", EPERM, "raw I/O port access"},
      {"ioperm", EPERM, "raw I/O port access"},
      {"vhangup", EPERM, "hangs up the controlling terminal of others"},
      {"name_to_handle_at", EPERM, "file handles bypass path checks (the 'shocker' escape)"},
      {"open_by_handle_at", EPERM, "file handles bypass path checks (the 'shocker' escape)"},
      {"fanotify_init", EPERM, "watches whole filesystems"},
      {"nfsservctl", EPERM, "obsolete kernel NFS server control"},
      {"uselib", EPERM, "obsolete"},
      {"ustat", EPERM, "obsolete"},
      {"sysfs", EPERM, "obsolete"},
      {"_sysctl", EPERM, "obsolete"},
      {"personality", EPERM, "ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC and friends weaken ASLR (other personas allowed)"},
  };
  return rules;
}

namespace {

using build::add;

// Address families a sandbox may open. Everything else (AF_VSOCK, AF_PACKET, AF_ALG, AF_KEY,
// AF_BLUETOOTH, ... ) is a rarely used kernel surface; EAFNOSUPPORT makes callers fall back.
bool family_allowed(int af) {
  return af == AF_UNIX || af == AF_INET || af == AF_INET6 || af == AF_NETLINK;
}

}  // namespace

Result<SeccompProgram> compile_baseline_policy() {
  BRIG_TRY_ASSIGN(ctx, build::new_filter(SCMP_ACT_ALLOW));

  for (const auto& rule : baseline_rules()) {
    int nr = seccomp_syscall_resolve_name(rule.syscall);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if (std::string_view(rule.syscall) == "personality") continue;  // handled below
    uint32_t action = rule.errno_value ? SCMP_ACT_ERRNO(rule.errno_value) : SCMP_ACT_KILL_PROCESS;
    BRIG_TRY(add(ctx.get(), action, nr, {}, rule.syscall));
  }

  // personality(2): refuse the flags that weaken ASLR or make data executable. The query
  // value 0xffffffff has the top bit set, which no real persona has, so it stays allowed.
  for (uint64_t flag : {0x0040000ull /* ADDR_NO_RANDOMIZE */, 0x0100000ull /* MMAP_PAGE_ZERO */,
                        0x0200000ull /* ADDR_COMPAT_LAYOUT */, 0x0400000ull /* READ_IMPLIES_EXEC */}) {
    BRIG_TRY(add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality),
                 {SCMP_A0(SCMP_CMP_MASKED_EQ, flag | 0x80000000ull, flag)}, "personality"));
  }
  // clone(2) with CLONE_NEWUSER (or any namespace flag): nested namespaces.
  constexpr uint64_t kNsFlags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET |
                                CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;  // CLONE_NEWTIME is clone3-only
  for (uint64_t flag = 1; flag; flag <<= 1) {
    if (!(kNsFlags & flag)) continue;
    BRIG_TRY(add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone),
                 {SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)}, "clone(namespace flag)"));
  }
  // ioctl(TIOCSTI) pushes input into a terminal (CVE-2017-5226); TIOCLINUX can too.
  for (unsigned long req : {TIOCSTI, TIOCLINUX}) {
    BRIG_TRY(add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl),
                 {SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, req)}, "ioctl(TIOCSTI/TIOCLINUX)"));
  }
  // socket(2) / socketpair(2): only the families above.
  for (int af = 0; af < AF_MAX; ++af) {
    if (family_allowed(af)) continue;
    BRIG_TRY(add(ctx.get(), SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket),
                 {SCMP_A0(SCMP_CMP_EQ, static_cast<uint64_t>(af))}, "socket(family)"));
    BRIG_TRY(add(ctx.get(), SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socketpair),
                 {SCMP_A0(SCMP_CMP_EQ, static_cast<uint64_t>(af))}, "socketpair(family)"));
  }
  BRIG_TRY(add(ctx.get(), SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket),
               {SCMP_A0(SCMP_CMP_GE, static_cast<uint64_t>(AF_MAX))}, "socket(family)"));

  return build::export_program(ctx.get(), "brig-seccomp");
}

}  // namespace brig::policy
