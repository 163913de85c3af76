// Escapes towards the host: its files, its binaries, its processes, its services.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <thread>

#include "security/security_helpers.h"

namespace brig::security {
namespace {

using namespace std::chrono_literals;

// The host binaries a sandbox must never be able to change: brig, the probe, and this test
// binary (brig-init is forked from it, so it is brig-init's executable).
std::map<std::string, std::string> host_binary_digests() {
  std::map<std::string, std::string> out;
  for (auto& path : {brig::testing::brig_binary(), brig::testing::probe_path(), host_readlink("/proc/self/exe")})
    if (!path.empty()) out[path] = file_digest(path);
  return out;
}

// Reading host files through /proc/1/root (PID 1 is brig-init) and other /proc links of it.
// Source: security-cases.md §4.2 runc CVE-2019-5736 (GHSA-gxmr-w5mj-v8hh) and CVE-2024-21626
// (GHSA-xr7r-f8xq-vfvv): the runtime's process in the container is the bridge to the host.
TEST(HostEscape, ReadHostFilesViaProc1Root) {
  BRIG_REQUIRE_SANDBOX_ENV();
  HostTempFile marker("/tmp/brig-sec-host-marker-", "host only\n");
  TestSandbox sb;
  for (User u : {User::root, User::user}) {
    SCOPED_TRACE(sandbox::user_name(u));
    for (const std::string& path : std::vector<std::string>{"/proc/1/root" + marker.path, "/proc/1/root/etc/hostname",
                                   "/proc/1/cwd/etc/hostname", "/proc/1/environ", "/proc/1/mem"}) {
      auto r = sb.probe({"read", path}, u);
      EXPECT_PROBE_RAN(r);
      EXPECT_EVIDENCE(r, "outcome=denied") << " reading " << path;
    }
    for (const std::string& path : std::vector<std::string>{"/proc/1/root", "/proc/1/fd", "/proc/1/map_files"}) {
      auto r = sb.probe({"ls", path}, u);
      EXPECT_EVIDENCE(r, "outcome=denied") << " listing " << path;
    }
    for (const std::string& path : std::vector<std::string>{"/proc/1/root", "/proc/1/cwd", "/proc/1/exe"}) {
      auto r = sb.probe({"readlink", path}, u);
      EXPECT_EVIDENCE(r, "outcome=denied") << " readlink " << path;
    }
    // The host-only file is not anywhere in the sandbox's view.
    for (const std::string& path : std::vector<std::string>{marker.path, "/proc/self/root" + marker.path}) {
      auto r = sb.probe({"read", path}, u);
      EXPECT_EVIDENCE(r, "outcome=denied errno=ENOENT") << " reading " << path;
    }
  }
}

// Only fds 0-2 are open in a sandboxed process (user, root, stdin pipe, PTY): no leaked fd to
// a host directory, cgroup or control socket.
// Source: security-cases.md §4.2 runc CVE-2024-21626 (GHSA-xr7r-f8xq-vfvv: an fd to the host
// /sys/fs/cgroup leaked into `runc init`; "close all fds before exec").
TEST(HostEscape, ProcSelfFdShowsOnlyStdio) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  for (User u : {User::user, User::root}) {
    auto r = sb.probe({"fds"}, u);
    EXPECT_EQ(r.out, "fds=0,1,2\n") << sandbox::user_name(u) << ": " << show(r);
  }
  sandbox::ProcessSpec spec;
  spec.cmd = "/usr/local/bin/brig-probe";
  spec.args = {"fds"};
  spec.stdin_pipe = true;  // stdin is a pipe from brig (closed at once: no stdin_data)
  RunOptions with_stdin;
  with_stdin.timeout = 30s;
  auto piped = sb->run(spec, with_stdin);
  ASSERT_TRUE(piped) << piped.error().message();
  EXPECT_EQ(piped->out, "fds=0,1,2\n") << show(*piped);
  spec.stdin_pipe = false;
  spec.pty = true;
  RunOptions pty_options;
  pty_options.timeout = 30s;
  auto pty = sb->run(spec, pty_options);
  ASSERT_TRUE(pty) << pty.error().message();
  EXPECT_EQ(field(pty->out, "fds"), "0,1,2") << show(*pty);
  // Through a shell too (what a user's command usually is).
  auto sh = sb.sh("exec /usr/local/bin/brig-probe fds");
  EXPECT_EQ(sh.out, "fds=0,1,2\n") << show(sh);
}

// A working directory of /proc/self/fd/N must not give a path to host files: the spawn fails
// (no such directory fd) or the process is somewhere inside the sandbox.
// Source: security-cases.md §4.2 runc CVE-2024-21626 "Leaky Vessels" (GHSA-xr7r-f8xq-vfvv; test
// with `-w /proc/self/fd/{3..10}`; Metasploit `runc_cwd_priv_esc`).
TEST(HostEscape, CwdOnLeakedProcSelfFdRefused) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  // Control: an ordinary cwd works and is not "escaped".
  sandbox::ProcessSpec spec;
  spec.cmd = "/usr/local/bin/brig-probe";
  spec.args = {"cwd"};
  spec.cwd = "/tmp";
  RunOptions options;
  options.timeout = 30s;
  auto control = sb->run(spec, options);
  ASSERT_TRUE(control) << control.error().message();
  ASSERT_EQ(field(control->out, "cwd"), "/tmp") << show(*control);
  ASSERT_EQ(field(control->out, "escaped"), "0") << show(*control);

  int refused = 0;
  for (User u : {User::user, User::root}) {
    for (int fd = 3; fd <= 10; ++fd) {
      spec.user = u;
      spec.cwd = "/proc/self/fd/" + std::to_string(fd);
      SCOPED_TRACE(std::string(sandbox::user_name(u)) + " cwd=" + spec.cwd);
      auto r = sb->run(spec, options);
      if (!r) {
        ++refused;
        continue;
      }
      // It started: its cwd must be inside the sandbox's tree, never a host directory.
      EXPECT_EQ(r->status.exit_code, 0) << show(*r);
      EXPECT_EVIDENCE(*r, "escaped=0");
      EXPECT_TRUE(field(r->out, "cwd").starts_with("/")) << "cwd not under the sandbox root: " << show(*r);
    }
  }
  RecordProperty("refused_spawns", refused);
  EXPECT_TRUE(sb->alive());
}

// Rewriting the sandbox's view of its own executables: /proc/self/exe and /proc/1/exe
// (brig-init, whose executable is a host binary), also via an O_PATH fd reopened for writing.
// Source: security-cases.md §4.2 runc CVE-2019-5736 (GHSA-gxmr-w5mj-v8hh; PoCs
// `twistlock/RunC-CVE-2019-5736`, `Frichetten/CVE-2019-5736-PoC`).
TEST(HostEscape, RewriteProcSelfExeAndProc1Exe) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto digests = host_binary_digests();
  TestSandbox sb;
  for (User u : {User::root, User::user}) {
    SCOPED_TRACE(sandbox::user_name(u));
    auto r = sb.probe({"exe-write"}, u);
    ASSERT_PROBE_RAN(r);
    EXPECT_NE(field(r.out, "init"), "opened") << show(r);
    EXPECT_FALSE(field(r.out, "init").empty()) << show(r);
    EXPECT_NE(field(r.out, "init_opath_reopen"), "opened") << show(r);
    // brig-init's executable is not even named to the sandbox.
    EXPECT_TRUE(field(r.out, "init_readlink").starts_with("E")) << show(r);
    // brig-init is non-dumpable: the kernel then gives its /proc files to (host) root, which
    // is unmapped in the sandbox (65534), instead of to its uid (sandbox root).
    auto st = sb.probe({"stat", "/proc/1/environ"}, u);
    EXPECT_EVIDENCE(st, "outcome=allowed type=file uid=65534 ");
  }
  EXPECT_EQ(host_binary_digests(), digests) << "a host binary changed";
}

// The CVE-2019-5736 route through the runtime's own exec: a command whose interpreter is
// "#!/proc/self/exe" makes the process that execs it (brig-init's child) run *its own*
// executable inside the sandbox. The sandbox then grabs that executable through
// /proc/PID/exe (O_PATH) and tries to reopen it for writing after the process is gone.
struct ShebangOutcome {
  bool spawned = false;        // brig exec'd the "#!/proc/self/exe" command
  std::string spawn_error;
  std::string grab_first;      // "grabbed=1 target=..." or "grabbed=0 ..."
  RunResult grab;              // the probe's full result
  std::string host_exe;        // this test binary (brig-init's executable) on the host
};

ShebangOutcome run_shebang_proc_self_exe(TestSandbox& sb) {
  ShebangOutcome o;
  o.host_exe = host_readlink("/proc/self/exe");
  // An LD_PRELOAD that is a FIFO holds the exec'd binary in its dynamic loader, so the attack
  // does not depend on winning a race.
  auto fifo = sb.probe({"mkfifo", "/tmp/stall.fifo"}, User::root);
  EXPECT_EVIDENCE(fifo, "outcome=allowed");
  EXPECT_TRUE(sb->write_file("/tmp/hijack", "#!/proc/self/exe\n", User::root, 0755));
  sandbox::ProcessSpec hijack;
  hijack.cmd = "/tmp/hijack";
  hijack.env = {{"LD_PRELOAD", "/tmp/stall.fifo"}};
  auto proc = sb->spawn(hijack);
  if (!proc) {
    o.spawn_error = proc.error().message();
    return o;
  }
  o.spawned = true;
  sandbox::ProcessSpec grab;
  grab.cmd = "/usr/local/bin/brig-probe";
  grab.args = {"exe-grab", std::to_string(proc->pid), "5"};
  auto g = sb->spawn(grab);
  EXPECT_TRUE(g) << g.error().message();
  if (!g) return o;
  // Wait for the first line (the fd is held), then end the hijacked process as runc would exit.
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (out.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    struct pollfd p = {g->stdout_fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(g->stdout_fd.get(), buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  o.grab_first = out.substr(0, out.find('\n'));
  EXPECT_TRUE(sb->signal(proc->pid, SIGKILL, true));
  char buf[4096];
  ssize_t n;
  while ((n = ::read(g->stdout_fd.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  auto ex = sb->wait_exit(g->pid, 30s);
  if (ex && *ex) o.grab.status = **ex;
  o.grab.out = out;
  return o;
}

// Part 1: whatever the sandbox gets hold of, it cannot write the host binary.
// Source: security-cases.md §4.2 runc CVE-2019-5736 (GHSA-gxmr-w5mj-v8hh; `lxc/lxc` commit 6400238).
TEST(HostEscape, ShebangProcSelfExeCannotOverwriteHostBinary) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto digests = host_binary_digests();
  TestSandbox sb;
  auto o = run_shebang_proc_self_exe(sb);
  if (!o.spawned) {
    // brig refused to exec it: nothing to grab.
    SUCCEED() << "spawn refused: " << o.spawn_error;
  } else {
    EXPECT_EQ(field(o.grab.out, "writable"), "0") << "grab: " << show(o.grab);
    EXPECT_FALSE(field(o.grab.out, "grabbed").empty()) << "the grab probe printed nothing: " << show(o.grab);
  }
  EXPECT_EQ(host_binary_digests(), digests) << "a host binary changed";
}

// Part 2: the lesson of the CVE is stronger: never exec a host binary inside the sandbox's
// mount namespace without a sealed copy (runc and LXC re-exec from a memfd). The sandbox must
// not get a handle on the host file that is brig-init's executable.
// Source: security-cases.md §4.2 runc CVE-2019-5736 ("Never exec a host binary inside the
// sandbox mount ns without a sealed copy"; `lxc/lxc` commit 6400238).
TEST(HostEscape, ShebangProcSelfExeDoesNotExposeHostBinary) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto o = run_shebang_proc_self_exe(sb);
  if (!o.spawned) {
    SUCCEED() << "spawn refused: " << o.spawn_error;
    return;
  }
  std::string target = field(o.grab_first, "target");
  EXPECT_FALSE(has(o.grab_first, "grabbed=1") && target == o.host_exe)
      << "the sandbox holds an fd to the host file " << o.host_exe
      << " (brig-init's executable, exec'd inside the sandbox via #!/proc/self/exe): " << o.grab_first
      << "\n" << show(o.grab);
}

// A setuid-root binary made by root in the sandbox gives `user` nothing (no_new_privs, nosuid).
// Source: security-cases.md §4.1 bubblewrap (`PR_SET_NO_NEW_PRIVS` always); §4.3 CDK evaluate.
TEST(HostEscape, SetuidBinaryGivesNoPrivileges) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  for (const std::string& dst : std::vector<std::string>{"/tmp/suid-probe", "/home/user/suid-probe"}) {
    SCOPED_TRACE(dst);
    auto mk = sb.probe({"make-setuid", "/usr/local/bin/brig-probe", dst}, User::root);
    ASSERT_EVIDENCE(mk, "outcome=allowed uid=0 mode=4755");
    auto r = sb.run({dst, "setuid-check"}, User::user);
    ASSERT_PROBE_RAN(r);
    EXPECT_EVIDENCE(r, "exe_uid=0 exe_mode=4755");  // the bit is there...
    EXPECT_EVIDENCE(r, "uid=1000 euid=1000 suid=1000");  // ...and did nothing
  }
}

// Signals to host processes: the sandbox's PID namespace has no host pids, even for root
// (which keeps CAP_KILL).
// Source: security-cases.md §4.1 Firecracker jailer (PID ns); §4.3 CDK evaluate.
TEST(HostEscape, SignalsToHostPidsFail) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto ps = sb.probe({"ps"});
  ASSERT_PROBE_RAN(ps);
  auto visible = split_list(field(ps.out, "pids"));
  std::vector<pid_t> targets = {::getpid()};
  if (pid_t z = find_zygote()) targets.push_back(z);
  for (pid_t host_pid : targets) {
    ASSERT_EQ(std::find(visible.begin(), visible.end(), std::to_string(host_pid)), visible.end())
        << "host pid " << host_pid << " happens to exist in the sandbox too; cannot test";
    for (User u : {User::root, User::user}) {
      auto r = sb.probe({"kill", std::to_string(host_pid), "0"}, u);
      EXPECT_EVIDENCE(r, "outcome=denied errno=ESRCH") << " host pid " << host_pid;
    }
  }
  auto r = sb.probe({"kill", std::to_string(::getpid()), std::to_string(SIGKILL)}, User::root);
  EXPECT_EVIDENCE(r, "outcome=denied errno=ESRCH");
}

// A service listening on the host's loopback is not reachable (the sandbox's 127.0.0.1 is its own).
// Source: security-cases.md §4.2 Judge0 CVE-2024-29021 (GHSA-q7vg-26pg-v5hr: SSRF reached an
// internal service; "the control plane must not be reachable from sandboxes").
TEST(HostEscape, HostLoopbackServiceUnreachable) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;  // first, so the engine's zygote cannot inherit the listener
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(s, 0);
  struct sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(s, 16), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(::getsockname(s, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  const std::string port = std::to_string(ntohs(sa.sin_port));
  // Control: the listener answers on the host.
  auto host = run_on_host({brig::testing::probe_path(), "connect", "127.0.0.1", port});
  ASSERT_EQ(host.out, "outcome=connected\n") << "host control failed";
  for (User u : {User::user, User::root}) {
    auto r = sb.probe({"connect", "127.0.0.1", port}, u);
    EXPECT_PROBE_RAN(r);
    EXPECT_EVIDENCE(r, "outcome=failed errno=ECONNREFUSED");
  }
  ::close(s);
}

// A service on the host's other interfaces (and the cloud metadata address) is not reachable.
// Source: security-cases.md §4.2 Judge0 CVE-2024-29021 (GHSA-q7vg-26pg-v5hr: "deny RFC1918 and
// metadata ranges by default").
TEST(HostEscape, HostExternalInterfaceAndMetadataUnreachable) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  std::string host_ip;
  struct ifaddrs* ifs = nullptr;
  if (::getifaddrs(&ifs) == 0) {
    for (auto* i = ifs; i; i = i->ifa_next) {
      if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK)) continue;
      char buf[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
      host_ip = buf;
      break;
    }
    ::freeifaddrs(ifs);
  }
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(s, 0);
  struct sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(s, 16), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(::getsockname(s, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  const std::string port = std::to_string(ntohs(sa.sin_port));
  if (!host_ip.empty()) {
    auto host = run_on_host({brig::testing::probe_path(), "connect", host_ip, port});
    ASSERT_EQ(host.out, "outcome=connected\n") << "host control to " << host_ip << " failed";
    auto r = sb.probe({"connect", host_ip, port});
    EXPECT_EVIDENCE(r, "outcome=failed errno=ENETUNREACH") << " connecting to the host at " << host_ip;
  }
  auto md = sb.probe({"connect", "169.254.169.254", "80"});
  EXPECT_EVIDENCE(md, "outcome=failed errno=ENETUNREACH");
  auto v6 = sb.probe({"connect", "2001:4860:4860::8888", "53"});
  EXPECT_PROBE_RAN(v6);
  EXPECT_EVIDENCE(v6, "outcome=failed errno=");
  ::close(s);
}

// Host unix sockets: abstract ones (per network namespace) and path ones (per mount namespace).
// Source: security-cases.md §4.1 bubblewrap README ("any socket bound in (e.g. D-Bus) is an
// escalation path").
TEST(HostEscape, HostUnixSocketsUnreachable) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  const std::string abstract = "brig-sec-" + random_hex(12);
  const std::string path = "/tmp/brig-sec-" + random_hex(12) + ".sock";
  int a = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int p = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(a, 0);
  ASSERT_GE(p, 0);
  struct sockaddr_un sa = {};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path + 1, abstract.data(), abstract.size());
  ASSERT_EQ(::bind(a, reinterpret_cast<sockaddr*>(&sa),
                   static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + abstract.size())), 0);
  ASSERT_EQ(::listen(a, 4), 0);
  struct sockaddr_un sp = {};
  sp.sun_family = AF_UNIX;
  std::memcpy(sp.sun_path, path.data(), path.size());
  ASSERT_EQ(::bind(p, reinterpret_cast<sockaddr*>(&sp), sizeof sp), 0);
  ASSERT_EQ(::listen(p, 4), 0);
  // Controls on the host.
  ASSERT_EQ(run_on_host({brig::testing::probe_path(), "unix-connect", "@" + abstract}).out, "outcome=connected\n");
  ASSERT_EQ(run_on_host({brig::testing::probe_path(), "unix-connect", path}).out, "outcome=connected\n");
  for (User u : {User::user, User::root}) {
    auto ra = sb.probe({"unix-connect", "@" + abstract}, u);
    EXPECT_EVIDENCE(ra, "outcome=failed errno=ECONNREFUSED");
    auto rp = sb.probe({"unix-connect", path}, u);
    EXPECT_EVIDENCE(rp, "outcome=failed errno=ENOENT");
  }
  ::close(a);
  ::close(p);
  ::unlink(path.c_str());
}

// Kernel knobs that turn into host code execution (core_pattern, modprobe) or host actions
// (sysrq), and kernel memory: not writable/readable even by root in the sandbox.
// Source: security-cases.md §4.3 CDK (`cdk-team/CDK`: core_pattern / procfs escapes), deepce.
TEST(HostEscape, ProcSysKernelKnobsNotWritable) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  for (const char* path : {"/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe", "/proc/sysrq-trigger",
                           "/proc/sys/vm/drop_caches", "/proc/sys/kernel/hostname"}) {
    auto r = sb.probe({"open-write", path}, User::root);
    EXPECT_PROBE_RAN(r);
    EXPECT_EVIDENCE(r, "outcome=denied") << " opening " << path << " for writing";
  }
  for (const char* path : {"/proc/kcore", "/proc/kmsg"}) {
    auto r = sb.probe({"read", path}, User::root);
    EXPECT_EVIDENCE(r, "outcome=denied") << " reading " << path;
  }
}

// Device nodes: root in the sandbox cannot create a block device node to open the host disk.
// Source: security-cases.md §4.3 CDK (device mount escapes), deepce.
TEST(HostEscape, MknodBlockDeviceDenied) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto r = sb.probe({"try-syscall", "mknod"}, User::root);
  EXPECT_EVIDENCE(r, "syscall=mknod outcome=denied errno=EPERM");
  auto s = sb.probe({"stat", "/tmp/brig-probe-sda"}, User::root);
  EXPECT_EVIDENCE(s, "outcome=denied errno=ENOENT");
}

// No sysfs and no cgroupfs inside: the cgroup release_agent escape has nothing to write to.
// Source: security-cases.md §4.2 runc CVE-2024-21626 (the leaked fd was to the host
// /sys/fs/cgroup); §4.3 CDK (cgroup release_agent).
TEST(HostEscape, NoSysfsOrCgroupfs) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto ls = sb.probe({"ls", "/sys"}, User::root);
  EXPECT_EVIDENCE(ls, "entries= count=0");
  for (const char* path : {"/sys/fs/cgroup/memory/release_agent", "/sys/fs/cgroup/release_agent",
                           "/sys/kernel/uevent_helper"}) {
    auto r = sb.probe({"read", path}, User::root);
    EXPECT_EVIDENCE(r, "outcome=denied errno=ENOENT") << " reading " << path;
  }
  auto m = sb.probe({"mounts"}, User::root);
  ASSERT_PROBE_RAN(m);
  for (const char* fstype : {"sysfs", "cgroup", "cgroup2"})
    for (auto& t : split_list(field(m.out, "fstypes"))) EXPECT_NE(t, fstype) << show(m);
}

// File capabilities set by root in the sandbox give `user` nothing (no_new_privs, nosuid).
// Source: security-cases.md §4.1 bubblewrap (`PR_SET_NO_NEW_PRIVS` always); §4.3 amicontained
// (capabilities report).
TEST(HostEscape, FileCapabilitiesGiveNoPrivileges) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto mk = sb.probe({"make-filecap", "/usr/local/bin/brig-probe", "/tmp/fcap-probe"}, User::root);
  ASSERT_PROBE_RAN(mk);
  if (has(mk.out, "step=setxattr outcome=denied"))
    GTEST_SKIP() << "file capabilities cannot be set in this sandbox at all: " << mk.out;
  ASSERT_EVIDENCE(mk, "outcome=allowed");
  auto r = sb.run({"/tmp/fcap-probe", "caps"}, User::user);
  ASSERT_PROBE_RAN(r);
  EXPECT_EVIDENCE(r, "CapPrm=0000000000000000 CapEff=0000000000000000");
  EXPECT_EVIDENCE(r, "sys_admin=0");
}

}  // namespace
}  // namespace brig::security
