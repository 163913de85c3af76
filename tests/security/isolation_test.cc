// Isolation: from the host and between sandboxes. Root in a sandbox is root of that sandbox
// only; one sandbox sees nothing of another or of the host.
#include <linux/capability.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <set>

#include "security/security_helpers.h"

namespace brig::security {
namespace {

// The capabilities root in the sandbox keeps (the design's list, independently of caps.cc).
uint64_t expected_root_caps() {
  uint64_t caps = 0;
  for (int c : {CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP,
                CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_AUDIT_WRITE, CAP_SETFCAP})
    caps |= 1ull << c;
  return caps;
}

uint64_t hex_field(const std::string& out, const char* key) {
  return std::strtoull(field(out, key).c_str(), nullptr, 16);
}

// Root in the sandbox is uid 0 there, with a small fixed capability set: no CAP_SYS_ADMIN,
// CAP_SYS_PTRACE, CAP_NET_ADMIN, CAP_SYS_MODULE, CAP_DAC_READ_SEARCH or CAP_MKNOD.
// Source: security-cases.md §4.2 Judge0 CVE-2024-28185/-28189 ("never run the manager
// privileged"); §3.11 `madarco/agentbox#100` (E2B gives full caps); §4.3 amicontained / CDK
// capability checks.
TEST(Isolation, RootInSandboxIsNotHostRoot) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto id = sb.probe({"id"}, User::root);
  ASSERT_PROBE_RAN(id);
  EXPECT_EVIDENCE(id, "uid=0 euid=0 suid=0 gid=0 ");
  auto caps = sb.probe({"caps"}, User::root);
  ASSERT_PROBE_RAN(caps);
  EXPECT_EVIDENCE(caps, "sys_admin=0");
  EXPECT_EQ(hex_field(caps.out, "CapEff"), expected_root_caps()) << show(caps);
  EXPECT_EQ(hex_field(caps.out, "CapPrm"), expected_root_caps()) << show(caps);
  EXPECT_EQ(hex_field(caps.out, "CapBnd"), expected_root_caps()) << show(caps);
  EXPECT_EQ(hex_field(caps.out, "CapAmb"), 0u) << show(caps);
  // On the host, its processes run as an unprivileged uid of the sandbox's range.
  sandbox::ProcessSpec spec;
  spec.cmd = "/usr/local/bin/brig-probe";
  spec.args = {"sleep", "30"};
  spec.user = User::root;
  auto p = sb->spawn(spec);
  ASSERT_TRUE(p) << p.error().message();
  auto pids = processes_of_sandbox(sb.id());
  ASSERT_FALSE(pids.empty()) << "no host process found in the sandbox's cgroup";
  for (pid_t pid : pids) {
    uint32_t uid = host_uid_of(pid);
    if (uid == UINT32_MAX) continue;  // exited meanwhile
    EXPECT_GE(uid, 1u << 30) << "host pid " << pid << " of the sandbox runs as host uid " << uid;
  }
  EXPECT_TRUE(sb->signal(p->pid, SIGKILL, true));
}

// `user` has no capabilities at all (not even in the bounding set), and no privileged groups.
// Source: security-cases.md §4.3 amicontained (capabilities from inside); §4.2 isolate 2.5
// (`ioi/isolate:NEWS`: GID not dropped).
TEST(Isolation, UserHasNoCapabilities) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto caps = sb.probe({"caps"});
  ASSERT_PROBE_RAN(caps);
  EXPECT_EVIDENCE(caps, "CapInh=0000000000000000 CapPrm=0000000000000000 CapEff=0000000000000000 "
                        "CapBnd=0000000000000000 CapAmb=0000000000000000");
  auto id = sb.probe({"id"});
  EXPECT_EVIDENCE(id, "uid=1000 euid=1000 suid=1000 gid=1000 egid=1000 sgid=1000 groups=1000 ");
}

// The idmapped template: root in the sandbox owns /etc (and may edit /etc/hosts), user owns
// /home/user, and user cannot edit root's files.
// Source: security-cases.md §3.10 (custom templates that work, `e2b-dev/E2B#685`), §4.2 Judge0
// CVE-2024-28189 (ownership must be right without privileged chown fix-ups).
TEST(Isolation, IdmappedRootfsOwnership) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  // Template files (owned by host root on disk) are root's in the sandbox...
  auto etc = sb.probe({"stat", "/etc"}, User::root);
  EXPECT_EVIDENCE(etc, "type=dir uid=0 gid=0 ");
  auto hostname = sb.probe({"stat", "/etc/hostname"}, User::root);
  EXPECT_EVIDENCE(hostname, "type=file uid=0 gid=0 ");
  // ...and /home/user is user's.
  auto home = sb.probe({"stat", "/home/user"}, User::user);
  EXPECT_EVIDENCE(home, "type=dir uid=1000 gid=1000 ");
  // Root edits /etc/hosts (created here: the minimal template has none) and a template file.
  auto root_edit = sb.probe({"append", "/etc/hosts", "127.0.0.2 brig-security-test"}, User::root);
  EXPECT_EVIDENCE(root_edit, "outcome=allowed");
  auto root_edit2 = sb.probe({"append", "/etc/hostname", "brig-security-test"}, User::root);
  EXPECT_EVIDENCE(root_edit2, "outcome=allowed");
  auto hosts = sb->read_file("/etc/hosts", User::user);
  ASSERT_TRUE(hosts) << hosts.error().message();
  EXPECT_TRUE(has(*hosts, "127.0.0.2 brig-security-test")) << *hosts;
  auto hosts_st = sb.probe({"stat", "/etc/hosts"}, User::user);
  EXPECT_EVIDENCE(hosts_st, "type=file uid=0 gid=0 ");
  // user can do neither, and owns what it writes in its home.
  auto user_edit = sb.probe({"append", "/etc/hosts", "127.0.0.3 evil"}, User::user);
  EXPECT_EVIDENCE(user_edit, "outcome=denied errno=EACCES");
  auto user_edit2 = sb.probe({"append", "/etc/hostname", "evil"}, User::user);
  EXPECT_EVIDENCE(user_edit2, "outcome=denied errno=EACCES");
  auto user_home = sb.probe({"write", "/home/user/mine", "1"}, User::user);
  EXPECT_EVIDENCE(user_home, "errno=none");
  // The template on the host is untouched (the changes went to the sandbox's writable layer).
  struct stat st;
  EXPECT_NE(::stat((brig::testing::test_rootfs() + "/etc/hosts").c_str(), &st), 0) << "the host template was modified";
  std::ifstream in(brig::testing::test_rootfs() + "/etc/hostname");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_FALSE(has(content, "brig-security-test")) << "the host template was modified";
}

// The hostname is the sandbox id (a UTS namespace per sandbox), not the host's.
// Source: security-cases.md §4.1 Firecracker snapshot docs (clones must not share identity).
TEST(Isolation, HostnameIsSandboxId) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto r = sb.probe({"hostname"});
  ASSERT_PROBE_RAN(r);
  EXPECT_EQ(field(r.out, "hostname"), sb.id()) << show(r);
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  EXPECT_NE(field(r.out, "hostname"), std::string(host));
}

// The network is loopback only: one interface, no route anywhere.
// Source: security-cases.md §3.5 / §4.2 "Egress allowlist not enforced" (`anthropics/claude-code#78608`:
// negative tests for every egress rule, raw IP, IPv6); Judge0 CVE-2024-29021.
TEST(Isolation, NetworkIsLoopbackOnly) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto dev = sb.probe({"netdev"});
  ASSERT_PROBE_RAN(dev);
  EXPECT_EQ(dev.out, "ifaces=lo\n") << show(dev);
  for (const char* ip : {"1.1.1.1", "10.0.0.1", "192.168.1.1", "172.17.0.1"}) {
    auto r = sb.probe({"connect", ip, "443"});
    EXPECT_EVIDENCE(r, "outcome=failed errno=ENETUNREACH") << " to " << ip;
  }
  // Loopback inside works (a sandbox's own services).
  auto self = sb.probe({"loopback"});
  EXPECT_EVIDENCE(self, "outcome=connected");
}

// Two sandboxes: a file written in A is not in B (by path, in /tmp, /home/user or /).
// Source: security-cases.md §4.2 isolate 2.6 (`ioi/isolate:NEWS`: side channels between boxes).
TEST(Isolation, SandboxesCannotReadEachOthersFiles) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox a, b;
  for (const char* path : {"/tmp/a-secret", "/home/user/a-secret", "/var/tmp/a-secret"}) {
    auto w = a.probe({"write", path, "1"});
    ASSERT_EVIDENCE(w, "errno=none");
    auto own = a.probe({"read", path});
    EXPECT_EVIDENCE(own, "outcome=read bytes=1048576");
    auto other = b.probe({"read", path});
    EXPECT_EVIDENCE(other, "outcome=denied errno=ENOENT") << " B reading A's " << path;
    auto api = b->read_file(path, User::root);
    EXPECT_FALSE(api) << "B's file API found A's " << path;
  }
  // Nor through /proc: B sees none of A's processes.
  sandbox::ProcessSpec spec;
  spec.cmd = "/usr/local/bin/brig-probe";
  spec.args = {"sleep", "30"};
  auto sleeper = a->spawn(spec);
  ASSERT_TRUE(sleeper);
  auto ps = b.probe({"ps"});
  EXPECT_EQ(field_num(ps.out, "procs"), 2) << "B sees more than its init and itself: " << show(ps);
}

// /dev/shm is private per sandbox: a file in A's /dev/shm is absent in B's.
// Source: security-cases.md §4.1/§4.2 isolate 2.6 (`ioi/isolate:NEWS`: "/dev/shm had been shared
// between boxes, a side channel").
TEST(Isolation, DevShmIsPrivatePerSandbox) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox a, b;
  const std::string path = "/dev/shm/brig-shm-" + random_hex(12);
  auto w = a.probe({"write", path, "1"});
  ASSERT_EVIDENCE(w, "errno=none");
  auto own = a.probe({"read", path});
  EXPECT_EVIDENCE(own, "outcome=read bytes=1048576");
  auto other = b.probe({"read", path});
  EXPECT_EVIDENCE(other, "outcome=denied errno=ENOENT");
  auto ls = b.probe({"ls", "/dev/shm"});
  EXPECT_EVIDENCE(ls, "entries= count=0");
  // And the host's /dev/shm is not theirs either.
  struct stat st;
  EXPECT_NE(::stat(path.c_str(), &st), 0) << "A's /dev/shm file appeared on the host";
  ::unlink(path.c_str());  // (only exists if the test failed)
}

// System V shared memory is per IPC namespace: the host's segments and another sandbox's are
// invisible.
// Source: security-cases.md §4.2 isolate 2.6 (shared IPC between boxes as a side channel).
TEST(Isolation, SysvIpcIsPrivate) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox a, b;
  auto random_key = [] { return static_cast<key_t>(0x62000000u | std::stoul(random_hex(6), nullptr, 16)); };
  auto key_text = [](key_t k) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%x", static_cast<unsigned>(k));
    return std::string(buf);
  };
  const key_t host_key = random_key();
  int host_id = ::shmget(host_key, 4096, IPC_CREAT | IPC_EXCL | 0666);
  ASSERT_GE(host_id, 0);
  auto from_a = a.probe({"sysv-shm-find", key_text(host_key)}, User::root);
  ::shmctl(host_id, IPC_RMID, nullptr);
  EXPECT_EVIDENCE(from_a, "outcome=denied errno=ENOENT");

  const key_t box_key = random_key();
  auto made = a.probe({"sysv-shm-create", key_text(box_key)});
  ASSERT_EVIDENCE(made, "outcome=allowed");
  auto again = a.probe({"sysv-shm-find", key_text(box_key)});
  EXPECT_EVIDENCE(again, "outcome=allowed");
  auto from_b = b.probe({"sysv-shm-find", key_text(box_key)}, User::root);
  EXPECT_EVIDENCE(from_b, "outcome=denied errno=ENOENT");
  int leaked = ::shmget(box_key, 0, 0);
  EXPECT_LT(leaked, 0) << "A's segment is visible on the host";
  if (leaked >= 0) ::shmctl(leaked, IPC_RMID, nullptr);
}

// The PID namespace shows the sandbox's processes only, with brig-init as 1.
// Source: security-cases.md §4.1 Firecracker jailer (PID ns); §4.3 amicontained (namespaces).
TEST(Isolation, PidNamespaceHidesHostProcesses) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto r = sb.probe({"ps"}, User::root);
  ASSERT_PROBE_RAN(r);
  auto pids = split_list(field(r.out, "pids"));
  ASSERT_FALSE(pids.empty()) << show(r);
  EXPECT_EQ(pids.front(), "1");
  EXPECT_EQ(pids.size(), 2u) << "more than brig-init and the probe: " << show(r);
  auto id = sb.probe({"id"});
  EXPECT_EVIDENCE(id, " ppid=1 ");
  // Every process is in its own session (setsid), so no terminal is shared with brig-init.
  EXPECT_EQ(field(id.out, "sid"), field(id.out, "pid")) << show(id);
}

// /dev holds only the harmless nodes: no disks, no /dev/mem, /dev/kmsg, /dev/fuse, /dev/net/tun.
// Source: security-cases.md §4.2 `superserve-ai/sandbox#114` (device files); §4.3 CDK / deepce
// (device-based escapes).
TEST(Isolation, DevHasOnlyMinimalNodes) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto r = sb.probe({"ls", "/dev"}, User::root);
  ASSERT_PROBE_RAN(r);
  const std::set<std::string> allowed = {"fd",  "full",   "null",  "ptmx",   "pts",     "random", "shm",
                                         "stderr", "stdin", "stdout", "tty", "urandom", "zero"};
  auto entries = split_list(field(r.out, "entries"));
  for (auto& e : entries) EXPECT_TRUE(allowed.count(e)) << "unexpected /dev/" << e;
  for (const char* must : {"null", "zero", "urandom", "pts", "shm"})
    EXPECT_NE(std::find(entries.begin(), entries.end(), must), entries.end()) << "/dev/" << must << " missing";
  // The private devpts has no host terminals in it.
  auto pts = sb.probe({"ls", "/dev/pts"}, User::root);
  EXPECT_EVIDENCE(pts, "entries=ptmx count=1");
}

// The environment holds what brig sets and nothing of the host process's environment.
// Source: security-cases.md §4.2 "Judge0 env leak" (`judge0/judge0#564`: printenv showed the
// worker's environment).
TEST(Isolation, EnvironmentDoesNotLeakHostVariables) {
  BRIG_REQUIRE_SANDBOX_ENV();
  ::setenv("BRIG_SECURITY_HOST_CANARY", "secret", 1);
  auto spec = TestSandbox::default_spec();
  spec.env = {{"SANDBOX_WIDE", "1"}};
  TestSandbox sb(spec);
  auto r = sb.probe({"env"});
  ASSERT_PROBE_RAN(r);
  auto names = split_list(field(r.out, "env"));
  std::set<std::string> got(names.begin(), names.end());
  EXPECT_EQ(got, (std::set<std::string>{"HOME", "LOGNAME", "PATH", "SANDBOX_WIDE", "USER"})) << show(r);
  ::unsetenv("BRIG_SECURITY_HOST_CANARY");
}

// The mount table inside shows the sandbox's own filesystems only: an overlay root, its
// /proc, /dev and /dev/shm, and no host filesystem, host path or cgroup/sysfs.
// Source: security-cases.md §4.3 CDK evaluate (mounts), amicontained; §4.1 Firecracker
// `test_jail.py` (assert the jail layout).
TEST(Isolation, MountTableHasNoHostPaths) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto r = sb.probe({"mounts"}, User::root);
  ASSERT_PROBE_RAN(r);
  auto types = split_list(field(r.out, "fstypes"));
  EXPECT_NE(std::find(types.begin(), types.end(), "overlay"), types.end()) << show(r);
  for (const char* bad : {"ext4", "xfs", "btrfs", "sysfs", "cgroup", "cgroup2", "nfs", "9p", "virtiofs"})
    EXPECT_EQ(std::find(types.begin(), types.end(), bad), types.end()) << "host filesystem type " << bad << ": " << show(r);
  auto points = field(r.out, "points");
  for (const std::string& host : std::vector<std::string>{brig::testing::test_rootfs(), shared_engine().state_dir(), std::string("/work"),
                                 std::string("/var/cache/brig")})
    EXPECT_FALSE(has(points, host)) << "host path " << host << " is mounted inside: " << points;
  auto list = split_list(points);
  EXPECT_NE(std::find(list.begin(), list.end(), "/"), list.end()) << points;
  // Mount options and sources name no host path either (overlay layers are given as fds).
  auto raw = sb.probe({"cat", "/proc/self/mountinfo"}, User::root);
  ASSERT_PROBE_RAN(raw);
  for (const std::string& host : std::vector<std::string>{brig::testing::test_rootfs(), shared_engine().state_dir(),
                                                          "/work/", "/var/cache/brig", "/var/lib/brig"})
    EXPECT_FALSE(has(raw.out, host)) << "host path " << host << " appears in the sandbox's mountinfo:\n" << raw.out;
}

// Signals from inside to PID 1 (brig-init), even from root with CAP_KILL, cannot stop or kill
// it: the sandbox's control channel keeps answering.
// Source: security-cases.md §4.2 runc CVE-2019-5736 (the runtime's own process inside the
// container is a target); §3.17 (`OpenHands/OpenHands#13578`: a control plane that hangs).
TEST(Isolation, SignalsToInitFromInsideCannotStopSandbox) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  for (int sig : {SIGSTOP, SIGTSTP, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGSEGV, SIGKILL}) {
    auto r = sb.probe({"kill", "1", std::to_string(sig)}, User::root);
    EXPECT_PROBE_RAN(r);
    auto user = sb.probe({"kill", "1", std::to_string(sig)}, User::user);
    EXPECT_EVIDENCE(user, "outcome=denied errno=EPERM") << " user sending signal " << sig << " to PID 1";
  }
  // Still alive and serving, promptly.
  RunOptions options;
  options.timeout = std::chrono::seconds(10);
  auto r = sb.probe({"echo", "alive"}, User::user, options);
  EXPECT_EQ(r.out, "alive\n") << show(r);
  EXPECT_TRUE(sb->alive());
  auto f = sb->read_file("/etc/hostname", User::root);
  EXPECT_TRUE(f) << f.error().message();
}

// The API's signal() only reaches processes brig started: not PID 1, not pids it does not know.
// Source: security-cases.md §4.1 E2B (internal control routes must not be reachable/usable);
// §4.2 runc CVE-2019-5736 (the runtime process).
TEST(Isolation, SignalApiCannotTargetInit) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  for (bool group : {true, false}) {
    EXPECT_FALSE(sb->signal(1, SIGKILL, group)) << "signal(1) accepted";
    EXPECT_FALSE(sb->signal(0, SIGKILL, group)) << "signal(0) accepted";
    EXPECT_FALSE(sb->signal(-1, SIGKILL, group)) << "signal(-1) accepted";
    EXPECT_FALSE(sb->signal(4242, SIGKILL, group)) << "signal to an unknown pid accepted";
  }
  EXPECT_TRUE(sb->alive());
  auto r = sb.probe({"echo", "alive"});
  EXPECT_EQ(r.out, "alive\n") << show(r);
}

}  // namespace
}  // namespace brig::security
