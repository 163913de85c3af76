// The baseline seccomp policy, checked from inside: each test makes the real syscall (through
// brig-probe) and asserts the errno the policy promises. Where the kernel alone would also
// refuse, the test runs as root in the sandbox or picks arguments the kernel would accept, so
// the policy is what answers.
#include <signal.h>

#include "security/security_helpers.h"

namespace brig::security {
namespace {

// try-syscall NAME must be refused with `err` (as `user`).
void expect_denied(TestSandbox& sb, const std::string& name, const std::string& err, User user) {
  SCOPED_TRACE("try-syscall " + name + " as " + sandbox::user_name(user));
  auto r = sb.probe({"try-syscall", name}, user);
  EXPECT_PROBE_RAN(r);
  EXPECT_EVIDENCE(r, "syscall=" + name + " outcome=denied errno=" + err);
}

void expect_allowed(TestSandbox& sb, const std::string& name, User user) {
  SCOPED_TRACE("try-syscall " + name + " as " + sandbox::user_name(user));
  auto r = sb.probe({"try-syscall", name}, user);
  EXPECT_PROBE_RAN(r);
  EXPECT_EVIDENCE(r, "syscall=" + name + " outcome=allowed");
}

// The filter is installed (mode 2) and no_new_privs is set, for user and root.
// Source: security-cases.md §4.1 bubblewrap (`PR_SET_NO_NEW_PRIVS` always); §4.3 amicontained
// (`genuinetools/amicontained` reports the seccomp mode from inside).
TEST(Seccomp, FilterInstalledWithNoNewPrivs) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  for (User u : {User::user, User::root}) {
    SCOPED_TRACE(sandbox::user_name(u));
    auto s = sb.probe({"seccomp"}, u);
    EXPECT_EVIDENCE(s, "Seccomp=2 ");
    EXPECT_GE(field_num(s.out, "Seccomp_filters"), 1) << show(s);
    auto n = sb.probe({"nnp"}, u);
    EXPECT_EVIDENCE(n, "NoNewPrivs=1 prctl=1");
  }
}

// ptrace of PID 1 (brig-init, whose memory holds the control channel) and PTRACE_TRACEME.
// Source: security-cases.md §4.2 runc CVE-2019-5736 (GHSA-gxmr-w5mj-v8hh): the runtime's own
// process inside the container is the target; seccomp_policy.cc denies ptrace.
TEST(Seccomp, PtraceOfPid1Denied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  expect_denied(sb, "ptrace-attach-1", "EPERM", User::root);
  expect_denied(sb, "ptrace-attach-1", "EPERM", User::user);
  // TRACEME needs no privilege at all: only the policy refuses it.
  expect_denied(sb, "ptrace-traceme", "EPERM", User::user);
}

// mount(2) and the new mount API, even as root in the sandbox.
// Source: security-cases.md §4.1/§4.2 isolate 2.5 (`ioi/isolate:NEWS`: arbitrary deviceless
// filesystems could be mounted); §4.3 CDK (`cdk-team/CDK`: cgroup release_agent and procfs
// mounts need mount).
TEST(Seccomp, MountDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  for (const char* name : {"mount", "mount-proc", "umount-proc", "fsopen", "open_tree"})
    expect_denied(sb, name, "EPERM", User::root);
  expect_denied(sb, "mount", "EPERM", User::user);
  // And nothing got mounted: the mount table is what it was.
  auto m = sb.probe({"mounts"}, User::root);
  EXPECT_FALSE(has(m.out, "/tmp/brig-probe-proc")) << show(m);
}

// unshare(CLONE_NEWUSER) and clone(CLONE_NEWUSER): a nested user namespace would hand the
// attacker a full capability set over new namespaces (the first step of most container escapes).
// Source: security-cases.md §4.3 CDK (`cdk-team/CDK` auto-escape via CAP_SYS_ADMIN), amicontained;
// seccomp_policy.cc ("a user namespace regains capabilities").
TEST(Seccomp, UnshareUserNamespaceDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  for (User u : {User::user, User::root}) {
    expect_denied(sb, "unshare-user", "EPERM", u);
    expect_denied(sb, "unshare-net", "EPERM", u);
    expect_denied(sb, "unshare-mount", "EPERM", u);
    expect_denied(sb, "clone-newuser", "EPERM", u);
    expect_denied(sb, "setns", "EPERM", u);
  }
}

// clone3 cannot be filtered by flags, so it is ENOSYS (libc falls back to clone, which is).
// Source: seccomp_policy.cc; security-cases.md §4.3 (amicontained blocked-syscall report).
TEST(Seccomp, Clone3ReturnsEnosysSoCloneFlagsAreChecked) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  expect_denied(sb, "clone3", "ENOSYS", User::user);
  // And ordinary process creation still works through the fallback.
  auto r = sb.sh("/bin/true && echo forked-ok");
  EXPECT_EQ(r.out, "forked-ok\n") << show(r);
}

// bpf(2): eBPF verifier bugs are a recurring escape route.
// Source: security-cases.md §4.1 gVisor/Firecracker seccomp allowlists; §4.3 syzkaller.
TEST(Seccomp, BpfDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  expect_denied(sb, "bpf", "EPERM", User::root);
  expect_denied(sb, "bpf", "EPERM", User::user);
}

// perf_event_open(2): allowed to unprivileged users by the kernel (self-monitoring).
// Source: security-cases.md §4.1 Firecracker `test_seccomp.py` / seccomp allowlists.
TEST(Seccomp, PerfEventOpenDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  expect_denied(sb, "perf_event_open", "EPERM", User::user);
}

// userfaultfd(2) with UFFD_USER_MODE_ONLY (allowed unprivileged by the kernel): used to widen
// race windows in kernel exploits.
// Source: security-cases.md §4.3 syzkaller / kernel-facing surface; seccomp_policy.cc.
TEST(Seccomp, UserfaultfdDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  expect_denied(sb, "userfaultfd", "EPERM", User::user);
}

// io_uring_setup(2): io_uring runs operations outside syscall filtering and can open AF_VSOCK.
// Source: security-cases.md §4.1/§4.2 isolate 2.6 (`ioi/isolate:NEWS`: io_uring is now blocked).
TEST(Seccomp, IoUringSetupDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  expect_denied(sb, "io_uring_setup", "EPERM", User::user);
  expect_denied(sb, "io_uring_setup", "EPERM", User::root);
}

// keyctl/add_key/request_key: kernel keyrings are not namespaced.
// Source: security-cases.md §4.1 (gVisor/Firecracker allowlists exclude keyrings); seccomp_policy.cc.
TEST(Seccomp, KeyringSyscallsDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  for (const char* name : {"keyctl", "add_key", "request_key"}) expect_denied(sb, name, "EPERM", User::user);
}

// TIOCSTI pushes keystrokes into a terminal; on fd 0 in pipe mode and in PTY mode.
// Source: security-cases.md §4.2 bubblewrap CVE-2017-5226 (`containers/bubblewrap:README.md`).
TEST(Seccomp, TiocstiDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  // Pipe mode: stdin is /dev/null (the kernel alone would say ENOTTY), and every process is in a
  // new session without a controlling terminal, so /dev/tty cannot be opened.
  auto r = sb.probe({"tiocsti"});
  EXPECT_PROBE_RAN(r);
  EXPECT_EVIDENCE(r, "fd0=EPERM ");
  EXPECT_EQ(field(r.out, "devtty_open"), "ENXIO") << show(r);
  // PTY mode: fd 0 is the sandbox's own terminal, where the kernel would allow it.
  sandbox::ProcessSpec spec;
  spec.cmd = "/usr/local/bin/brig-probe";
  spec.args = {"tiocsti"};
  spec.pty = true;
  RunOptions options;
  options.timeout = std::chrono::seconds(30);
  auto p = sb->run(spec, options);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->status.exit_code, 0) << show(*p);
  EXPECT_EVIDENCE(*p, "fd0=EPERM ");
  EXPECT_EVIDENCE(*p, "isatty0=1");
  EXPECT_FALSE(has(p->out, "allowed")) << show(*p);
  // The raw try-syscall form too, as root.
  expect_denied(sb, "tiocsti", "EPERM", User::root);
}

// 32-bit syscalls via int $0x80 (i386 ABI): their numbers differ, so they would slip past every
// rule; the policy kills the process with SIGSYS.
// Source: security-cases.md §4.1/§4.2 isolate 2.6 (`ioi/isolate:NEWS`: non-native-arch syscalls
// are rejected by default).
TEST(Seccomp, Int80SyscallKilledBySigsys) {
  BRIG_REQUIRE_SANDBOX_ENV();
  // Control on the host: without a filter, does this kernel run i386 syscalls at all?
  auto host = run_on_host({brig::testing::probe_path(), "int80"});
  if (host.signal != 0)
    GTEST_SKIP() << "the kernel has no IA32 emulation (the host probe died with signal " << host.signal
                 << "); int $0x80 cannot reach seccomp";
  ASSERT_TRUE(has(host.out, "outcome=allowed")) << "host control: " << host.out;
  TestSandbox sb;
  for (User u : {User::user, User::root}) {
    auto r = sb.probe({"int80"}, u);
    EXPECT_EQ(r.status.signal, SIGSYS) << show(r);
    EXPECT_FALSE(has(r.out, "outcome=allowed")) << show(r);
  }
}

// x32 ABI syscalls (__X32_SYSCALL_BIT) are killed with SIGSYS too.
// Source: security-cases.md §4.2 isolate 2.6 (non-native-arch syscalls rejected).
TEST(Seccomp, X32SyscallKilledBySigsys) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto r = sb.probe({"x32"});
  EXPECT_EQ(r.status.signal, SIGSYS) << show(r);
  EXPECT_FALSE(has(r.out, "outcome=allowed")) << show(r);
}

// AF_VSOCK sockets (the host-guest channel of VMs) and socketpair(AF_VSOCK).
// Source: security-cases.md §4.1/§4.2 isolate 2.6 (io_uring -> AF_VSOCK).
TEST(Seccomp, VsockSocketDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  expect_denied(sb, "socket-vsock", "EAFNOSUPPORT", User::user);
  expect_denied(sb, "socketpair-vsock", "EAFNOSUPPORT", User::user);
}

// Rare socket families: AF_PACKET (raw link layer) and AF_ALG (kernel crypto, open to
// unprivileged users by the kernel); unix/inet stay usable.
// Source: security-cases.md §4.3 CDK evaluate (sockets); seccomp_policy.cc family allowlist.
TEST(Seccomp, ExoticSocketFamiliesDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  expect_denied(sb, "socket-packet", "EAFNOSUPPORT", User::root);
  expect_denied(sb, "socket-alg", "EAFNOSUPPORT", User::user);
  expect_allowed(sb, "socket-unix", User::user);
  expect_allowed(sb, "socket-inet", User::user);
}

// open_by_handle_at / name_to_handle_at: the "shocker" escape opened host files by inode handle.
// Source: security-cases.md §4.3 CDK / deepce (Docker escape checks); seccomp_policy.cc.
TEST(Seccomp, OpenByHandleAtDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  expect_denied(sb, "open_by_handle_at", "EPERM", User::root);
  expect_denied(sb, "name_to_handle_at", "EPERM", User::user);
}

// Kernel code loading and kexec.
// Source: security-cases.md §4.1 Firecracker `test_seccomp.py` ("malicious" binaries killed by
// the filter); seccomp_policy.cc.
TEST(Seccomp, KernelModuleAndKexecDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  for (const char* name : {"init_module", "finit_module", "delete_module", "kexec_load"})
    expect_denied(sb, name, "EPERM", User::root);
}

// process_vm_readv/writev and kcmp (allowed by the kernel on one's own process).
// Source: security-cases.md §4.1 gVisor defense in depth; seccomp_policy.cc cross-process inspection.
TEST(Seccomp, ProcessVmReadvDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  expect_denied(sb, "process_vm_readv", "EPERM", User::user);
  expect_denied(sb, "process_vm_writev", "EPERM", User::user);
  expect_denied(sb, "kcmp", "EPERM", User::user);
}

// personality(ADDR_NO_RANDOMIZE) weakens ASLR; PER_LINUX itself is allowed.
// Source: seccomp_policy.cc; security-cases.md §4.1 (Firecracker seccomp allowlists).
TEST(Seccomp, PersonalityAddrNoRandomizeDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  expect_denied(sb, "personality", "EPERM", User::user);
  expect_allowed(sb, "personality-linux", User::user);
}

// Host-global state, as root in the sandbox (who keeps CAP_SYS_CHROOT, so chroot is only
// stopped by the policy): chroot, pivot_root, reboot, syslog, acct, settimeofday, swapon, iopl.
// Source: security-cases.md §4.1 Firecracker jailer (chroot) and `test_seccomp.py`; seccomp_policy.cc.
TEST(Seccomp, HostStateSyscallsDeniedAsRoot) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  for (const char* name : {"chroot", "pivot_root", "reboot", "syslog", "acct", "settimeofday", "swapon", "iopl",
                           "fanotify_init"})
    expect_denied(sb, name, "EPERM", User::root);
}

}  // namespace
}  // namespace brig::security
