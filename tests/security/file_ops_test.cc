// brig's own file operations (Sandbox::read_file/write_file/...) run with privileges the
// sandbox's processes do not have, on paths the sandbox controls: symlinks, hard links, FIFOs
// and /proc magic links planted inside must not turn them against the host or against files
// the requesting user may not touch.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <thread>

#include "security/security_helpers.h"

namespace brig::security {
namespace {

using namespace std::chrono_literals;

std::string err_of(const Result<std::string>& r) { return r ? "ok" : errno_name(r.error().sys_errno()); }
std::string err_of(const Result<>& r) { return r ? "ok" : errno_name(r.error().sys_errno()); }
std::string msg_of(const Result<std::string>& r) { return r ? "read " + std::to_string(r->size()) + " bytes" : r.error().message(); }
std::string msg_of(const Result<>& r) { return r ? "succeeded" : r.error().message(); }

// Plants a symlink as `user` with the probe (the attacker is the sandbox's own code).
void plant_symlink(TestSandbox& sb, const std::string& target, const std::string& link, User u = User::user) {
  auto r = sb.probe({"symlink", target, link}, u);
  ASSERT_EVIDENCE(r, "outcome=allowed");
}

// Runs `fn` on a thread and waits at most `limit`: a file operation that hangs fails the test
// (the sandbox is killed at the end of the test, which unblocks it).
template <class F>
auto bounded(F fn, std::chrono::seconds limit) -> std::optional<decltype(fn())> {
  auto task = std::make_shared<std::packaged_task<decltype(fn())()>>(std::move(fn));
  auto fut = task->get_future();
  std::thread([task] { (*task)(); }).detach();
  if (fut.wait_for(limit) != std::future_status::ready) return std::nullopt;
  return fut.get();
}

// read_file of a symlink to /proc/self/root/etc/shadow: brig's process resolving it must not
// follow the magic link (even as root in the sandbox).
// Source: security-cases.md §4.2 "Preview / file download paths" (`superserve-ai/sandbox#114`:
// single-file download followed symlinks into /proc).
TEST(FileOps, ReadRefusesSymlinkToProcSelfRoot) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  // Control: the file exists and root may read it directly.
  auto direct = sb->read_file("/etc/shadow", User::root);
  ASSERT_TRUE(direct) << direct.error().message();
  plant_symlink(sb, "/proc/self/root/etc/shadow", "/home/user/shadow-via-proc");
  for (User u : {User::root, User::user}) {
    auto r = sb->read_file("/home/user/shadow-via-proc", u);
    EXPECT_FALSE(r) << sandbox::user_name(u) << " read the magic-link target: " << msg_of(r);
  }
  // The magic links named directly, too.
  for (const char* path : {"/proc/self/root/etc/shadow", "/proc/self/cwd/etc/shadow", "/proc/thread-self/root/etc/shadow"}) {
    auto r = sb->read_file(path, User::root);
    EXPECT_FALSE(r) << path << ": " << msg_of(r);
  }
}

// stat and list describe a symlink by what it resolves to (as E2B's envd does). brig-init,
// which resolves it, must not follow a magic link to describe its own fds or root: such a link
// is reported as dangling, while an ordinary link is followed to its absolute target.
// Source: security-cases.md §4.2 (`superserve-ai/sandbox#114`: symlinks into /proc).
TEST(FileOps, StatOfASymlinkDoesNotFollowMagicLinks) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  plant_symlink(sb, "/proc/self/fd/3", "/home/user/fd-link");
  plant_symlink(sb, "/proc/self/root/etc", "/home/user/root-link");
  plant_symlink(sb, "../../etc", "/home/user/etc-link");
  for (User u : {User::root, User::user}) {
    for (const char* magic : {"/home/user/fd-link", "/home/user/root-link"}) {
      auto e = sb->stat(magic, u);
      ASSERT_TRUE(e) << magic << ": " << e.error().message();
      EXPECT_EQ(e->type, sandbox::FileType::symlink);
      EXPECT_EQ(e->resolved_target, "") << magic << " was followed by " << sandbox::user_name(u);
      EXPECT_EQ(e->target_type, sandbox::FileType::unknown);
    }
    auto ok = sb->stat("/home/user/etc-link", u);
    ASSERT_TRUE(ok) << ok.error().message();
    EXPECT_EQ(ok->symlink_target, "../../etc");
    EXPECT_EQ(ok->resolved_target, "/etc");
    EXPECT_EQ(ok->target_type, sandbox::FileType::dir);
    EXPECT_EQ(ok->target_mode, 0755u);
  }
}

// read_file of a symlink to /proc/1/root (and /proc/1/cwd, /proc/self/fd/N): PID 1 is
// brig-init; its fds include the control channel.
// Source: security-cases.md §4.2 `superserve-ai/sandbox#114` (symlinks into /proc); runc
// CVE-2024-21626 (GHSA-xr7r-f8xq-vfvv: /proc/self/fd/N to a leaked fd).
TEST(FileOps, ReadRefusesSymlinkToProc1Root) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  plant_symlink(sb, "/proc/1/root/etc/passwd", "/home/user/init-root");
  plant_symlink(sb, "/proc/1/cwd/etc/passwd", "/home/user/init-cwd");
  for (User u : {User::root, User::user}) {
    for (const char* path : {"/home/user/init-root", "/home/user/init-cwd", "/proc/1/root/etc/passwd"}) {
      auto r = sb->read_file(path, u);
      EXPECT_FALSE(r) << sandbox::user_name(u) << " " << path << ": " << msg_of(r);
    }
  }
  for (int fd = 0; fd <= 10; ++fd) {
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    auto r = sb->read_file(path, User::root);
    EXPECT_FALSE(r) << path << ": " << msg_of(r);
    auto w = sb->write_file(path, "x", User::root);
    EXPECT_FALSE(w) << "write " << path << ": " << msg_of(w);
  }
  EXPECT_TRUE(sb->alive());
  auto ok = sb.probe({"echo", "ok"});
  EXPECT_EQ(ok.out, "ok\n") << "the sandbox's control channel was disturbed: " << show(ok);
}

// read_file, as `user`, of a symlink the user planted to /etc/shadow is EACCES: brig's own
// privileges must not read it for them.
// Source: security-cases.md §4.2 Judge0 CVE-2024-28185 (GHSA-h9g2-45c8-89cf: privileged host
// code followed a symlink planted in the box).
TEST(FileOps, ReadSymlinkToShadowAsUserIsEacces) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  plant_symlink(sb, "/etc/shadow", "/home/user/shadow-link");
  auto r = sb->read_file("/home/user/shadow-link", User::user);
  EXPECT_EQ(err_of(r), "EACCES") << msg_of(r);
  auto direct = sb->read_file("/etc/shadow", User::user);
  EXPECT_EQ(err_of(direct), "EACCES") << msg_of(direct);
  auto st = sb->stat("/etc/shadow", User::user);
  ASSERT_TRUE(st) << st.error().message();
  // open_read as well (the streaming path).
  auto fd = sb->open_read("/home/user/shadow-link", User::user);
  EXPECT_FALSE(fd) << "open_read gave user an fd to /etc/shadow";
  // Control: root may follow the same link (it stays inside the sandbox).
  auto as_root = sb->read_file("/home/user/shadow-link", User::root);
  EXPECT_TRUE(as_root) << as_root.error().message();
}

// A relative symlink climbing out with ../../.. resolves inside the sandbox root only; an
// absolute one too. A host-only file is never reached, a sandbox-only one is.
// Source: security-cases.md §4.2 Judge0 CVE-2024-28185 ("use O_NOFOLLOW/openat2(RESOLVE_BENEATH)");
// `superserve-ai/sandbox#114`.
TEST(FileOps, DotDotSymlinkStaysInsideSandboxRoot) {
  BRIG_REQUIRE_SANDBOX_ENV();
  HostTempFile host_file("/tmp/brig-sec-host-only-", "host secret\n");
  const std::string& host_only = host_file.path;
  TestSandbox sb;
  ASSERT_TRUE(sb->write_file("/etc/brig-inside-marker", "inside " + sb.id(), User::root));
  const std::string up = "../../../../../../../../../../..";
  plant_symlink(sb, up + "/etc/brig-inside-marker", "/home/user/up-inside");
  plant_symlink(sb, up + host_only, "/home/user/up-host");
  plant_symlink(sb, host_only, "/home/user/abs-host");
  auto inside = sb->read_file("/home/user/up-inside", User::user);
  ASSERT_TRUE(inside) << inside.error().message();
  EXPECT_EQ(*inside, "inside " + sb.id());
  for (const char* link : {"/home/user/up-host", "/home/user/abs-host"}) {
    for (User u : {User::user, User::root}) {
      auto r = sb->read_file(link, u);
      EXPECT_EQ(err_of(r), "ENOENT") << link << " as " << sandbox::user_name(u) << ": " << msg_of(r);
      if (r) {
        EXPECT_NE(*r, "host secret\n") << "read a host file through " << link;
      }
    }
  }
  // The plain path with ".." components, too.
  auto dotted = sb->read_file("/home/user/" + up + host_only, User::root);
  EXPECT_EQ(err_of(dotted), "ENOENT") << msg_of(dotted);
}

// A hard link, made by `user`, to /etc/shadow: refused by the kernel (protected_hardlinks), or
// if made, still unreadable by user through the probe and through brig's file API.
// Source: security-cases.md §4.2 Judge0 CVE-2024-28189 (GHSA-3xpw-36v7-2cmg: the chown patch was
// bypassed); "fuzz the FS API with ... hard links" (`superserve-ai/sandbox#114`).
TEST(FileOps, HardlinkToShadowUnreadableForUser) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto ln = sb.probe({"hardlink", "/etc/shadow", "/tmp/shadow-hardlink"}, User::user);
  ASSERT_PROBE_RAN(ln);
  if (has(ln.out, "outcome=allowed")) {
    auto r = sb.probe({"read", "/tmp/shadow-hardlink"}, User::user);
    EXPECT_EVIDENCE(r, "outcome=denied errno=EACCES");
    auto f = sb->read_file("/tmp/shadow-hardlink", User::user);
    EXPECT_EQ(err_of(f), "EACCES") << msg_of(f);
  } else {
    EXPECT_EVIDENCE(ln, "outcome=denied errno=EPERM");
  }
  // The same against brig's file API with a link made by root (who may): user still cannot read.
  auto root_ln = sb.probe({"hardlink", "/etc/shadow", "/home/user/shadow-root-link"}, User::root);
  EXPECT_EVIDENCE(root_ln, "outcome=allowed");
  auto f = sb->read_file("/home/user/shadow-root-link", User::user);
  EXPECT_EQ(err_of(f), "EACCES") << msg_of(f);
  auto w = sb->write_file("/home/user/shadow-root-link", "user::0:0:::::\n", User::user);
  EXPECT_EQ(err_of(w), "EACCES") << msg_of(w);
}

// write_file, as `user`, through a symlink to /etc/passwd is refused and /etc/passwd is unchanged.
// Source: security-cases.md §4.2 Judge0 CVE-2024-28185 (GHSA-h9g2-45c8-89cf: a file write
// through a planted symlink).
TEST(FileOps, WriteThroughSymlinkToEtcPasswdDeniedForUser) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto before = sb->read_file("/etc/passwd", User::root);
  ASSERT_TRUE(before) << before.error().message();
  plant_symlink(sb, "/etc/passwd", "/home/user/passwd-link");
  auto w = sb->write_file("/home/user/passwd-link", "evil::0:0::/:/bin/sh\n", User::user);
  EXPECT_EQ(err_of(w), "EACCES") << msg_of(w);
  auto ow = sb->open_write("/home/user/passwd-link", User::user);
  EXPECT_FALSE(ow) << "open_write gave user a writable fd to /etc/passwd";
  auto after = sb->read_file("/etc/passwd", User::root);
  ASSERT_TRUE(after);
  EXPECT_EQ(*after, *before) << "/etc/passwd changed";
  // move() of the link over /etc/passwd is refused as well (user cannot write /etc).
  auto mv = sb->move("/home/user/passwd-link", "/etc/passwd", User::user);
  EXPECT_FALSE(mv) << "user moved a file over /etc/passwd";
}

// write_file as root through symlinks a user planted towards host paths: a magic link to the
// host via /proc/1/root is refused, and an absolute host path lands inside the sandbox only.
// Source: security-cases.md §4.2 Judge0 CVE-2024-28185 (host code running as root wrote through a
// symlink planted in the box).
TEST(FileOps, RootWriteThroughPlantedSymlinkStaysInside) {
  BRIG_REQUIRE_SANDBOX_ENV();
  const std::string host_path = "/tmp/brig-sec-pwned-" + random_hex(12);
  TestSandbox sb;
  plant_symlink(sb, "/proc/1/root" + host_path, "/home/user/evil-magic");
  plant_symlink(sb, host_path, "/home/user/evil-abs");
  plant_symlink(sb, "../../../../../../../.." + host_path, "/home/user/evil-rel");
  auto magic = sb->write_file("/home/user/evil-magic", "pwned", User::root);
  EXPECT_FALSE(magic) << "write through a /proc magic link succeeded";
  for (const char* link : {"/home/user/evil-abs", "/home/user/evil-rel"}) {
    auto w = sb->write_file(link, "pwned", User::root);
    EXPECT_TRUE(w) << link << ": " << msg_of(w);
  }
  struct stat st;
  EXPECT_NE(::stat(host_path.c_str(), &st), 0) << "the sandbox created " << host_path << " on the host";
  ::unlink(host_path.c_str());
  // It is inside the sandbox instead.
  auto inside = sb->read_file(host_path, User::root);
  ASSERT_TRUE(inside) << inside.error().message();
  EXPECT_EQ(*inside, "pwned");
}

// read_file of a FIFO is refused at once (no hang of brig-init), and so is write_file.
// Source: security-cases.md §4.2 `superserve-ai/sandbox#114` (FIFOs in download paths).
TEST(FileOps, ReadOfFifoRefusedWithoutHang) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto mk = sb.probe({"mkfifo", "/home/user/fifo"}, User::user);
  ASSERT_EVIDENCE(mk, "outcome=allowed");
  auto s = sb.shared();
  auto r = bounded([s] { return s->read_file("/home/user/fifo", User::user); }, 10s);
  ASSERT_TRUE(r.has_value()) << "read_file of a FIFO hung";
  EXPECT_FALSE(*r) << "read_file of a FIFO returned " << msg_of(*r);
  auto w = bounded([s] { return s->write_file("/home/user/fifo", "x", User::user); }, 10s);
  ASSERT_TRUE(w.has_value()) << "write_file of a FIFO hung";
  EXPECT_FALSE(*w) << "write_file of a FIFO succeeded";
  // A symlink to the FIFO is no way around it.
  plant_symlink(sb, "/home/user/fifo", "/home/user/fifo-link");
  auto rl = bounded([s] { return s->read_file("/home/user/fifo-link", User::root); }, 10s);
  ASSERT_TRUE(rl.has_value()) << "read_file of a symlink to a FIFO hung";
  EXPECT_FALSE(*rl);
  // brig-init still serves requests.
  auto ok = sb.probe({"echo", "ok"});
  EXPECT_EQ(ok.out, "ok\n") << show(ok);
}

// Device nodes are not regular files: read_file of /dev/zero or /dev/urandom (endless) and
// write_file to /dev/null are refused.
// Source: security-cases.md §4.2 `superserve-ai/sandbox#114` (device files, size caps).
TEST(FileOps, DeviceNodesRefused) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto s = sb.shared();
  for (const char* dev : {"/dev/zero", "/dev/urandom", "/dev/tty", "/dev/ptmx"}) {
    std::string path = dev;
    auto r = bounded([s, path] { return s->read_file(path, User::root, 1 << 20); }, 10s);
    ASSERT_TRUE(r.has_value()) << "read_file of " << dev << " hung";
    EXPECT_FALSE(*r) << "read_file of " << dev << " returned " << msg_of(*r);
  }
  auto w = sb->write_file("/dev/null", "x", User::root);
  EXPECT_FALSE(w) << "write_file to /dev/null succeeded";
  auto d = sb->read_file("/tmp", User::root);
  EXPECT_FALSE(d) << "read_file of a directory succeeded";
}

// A file readable by root's *group* only (0640 root:root) is not readable by `user` through
// brig's file API: brig's process must drop every group, not only switch uid.
// Source: security-cases.md §4.1/§4.2 isolate 2.5 (`ioi/isolate:NEWS`: "GID was not dropped when
// opening the meta file").
TEST(FileOps, UserCannotReadRootGroupFileViaFileApi) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  ASSERT_TRUE(sb->write_file("/srv/root-group-secret", "group secret", User::root, 0640));
  auto st = sb->stat("/srv/root-group-secret", User::root);
  ASSERT_TRUE(st) << st.error().message();
  ASSERT_EQ(st->mode & 0777, 0640u);
  ASSERT_EQ(st->gid, 0u);
  auto r = sb->read_file("/srv/root-group-secret", User::user);
  EXPECT_EQ(err_of(r), "EACCES") << msg_of(r);
  // The probe as user agrees (no supplementary groups).
  auto p = sb.probe({"read", "/srv/root-group-secret"}, User::user);
  EXPECT_EVIDENCE(p, "outcome=denied errno=EACCES");
  auto id = sb.probe({"id"}, User::user);
  EXPECT_EVIDENCE(id, "uid=1000 euid=1000 suid=1000 gid=1000 egid=1000 sgid=1000 groups=1000 ");
}

// Files created by the API as `user` belong to user, never to root (no root-owned files in
// the user's home that user cannot then manage; no privilege carried into the file).
// Source: security-cases.md §4.2 Judge0 CVE-2024-28189 (GHSA-3xpw-36v7-2cmg: ownership fix-ups
// by privileged code were the bug).
TEST(FileOps, FilesCreatedAsUserAreOwnedByUser) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  ASSERT_TRUE(sb->write_file("/home/user/new/dir/file", "x", User::user, 0644));
  auto st = sb->stat("/home/user/new/dir/file", User::user);
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_EQ(st->uid, 1000u);
  EXPECT_EQ(st->gid, 1000u);
  auto dir = sb->stat("/home/user/new/dir", User::user);
  ASSERT_TRUE(dir);
  EXPECT_EQ(dir->uid, 1000u);
  // As seen by a process too.
  auto p = sb.probe({"stat", "/home/user/new/dir/file"}, User::user);
  EXPECT_EVIDENCE(p, "uid=1000 gid=1000");
  // user may not create files where only root may write.
  auto w = sb->write_file("/etc/brig-user-file", "x", User::user);
  EXPECT_EQ(err_of(w), "EACCES") << msg_of(w);
}

// The other file operations refuse /proc magic links too: stat, list_dir, make_dir, move,
// remove, watch and open_write through /proc/1/root, /proc/self/root or a symlink to them.
// Source: security-cases.md §4.2 `superserve-ai/sandbox#114` ("fuzz the FS and archive API
// with symlinks"); Judge0 CVE-2024-28185 (host code following planted links).
TEST(FileOps, OtherOperationsRefuseMagicLinks) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  plant_symlink(sb, "/proc/1/root/etc", "/home/user/init-etc");
  plant_symlink(sb, "/proc/self/root/etc", "/home/user/self-etc");
  for (const std::string& base : std::vector<std::string>{"/proc/1/root/etc", "/proc/self/root/etc", "/home/user/init-etc/.", "/home/user/self-etc/."}) {
    SCOPED_TRACE(base);
    auto ls = sb->list_dir(base, 1, User::root);
    EXPECT_FALSE(ls) << "list_dir listed " << (ls ? ls->size() : 0) << " entries";
    auto st = sb->stat(base + "/passwd", User::root);
    EXPECT_FALSE(st) << "stat succeeded";
    auto md = sb->make_dir(base + "/brig-newdir", User::root);
    EXPECT_FALSE(md) << "make_dir succeeded";
    auto ow = sb->open_write(base + "/brig-newfile", User::root);
    EXPECT_FALSE(ow) << "open_write succeeded";
    auto mv = sb->move("/etc/hostname", base + "/brig-moved", User::root);
    EXPECT_FALSE(mv) << "move succeeded";
    auto rm = sb->remove(base + "/hostname", User::root);
    EXPECT_FALSE(rm) << "remove succeeded";
    auto w = sb->watch(base, false, User::root);
    EXPECT_FALSE(w) << "watch succeeded";
  }
  // Nothing above touched the real /etc.
  auto host = sb->stat("/etc/hostname", User::root);
  EXPECT_TRUE(host) << "remove through a magic link removed /etc/hostname";
  auto nd = sb->stat("/etc/brig-newdir", User::root);
  EXPECT_FALSE(nd) << "make_dir through a magic link created /etc/brig-newdir";
}

// read_file of a huge (sparse) file stops at the limit instead of reading gigabytes into the
// host process.
// Source: security-cases.md §4.2 `superserve-ai/sandbox#114` (zip/tar bombs; "zip needed output caps").
TEST(FileOps, ReadOfHugeSparseFileIsCapped) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto mk = sb.run({"/usr/bin/truncate", "-s", "64G", "/home/user/sparse"});
  ASSERT_EQ(mk.status.exit_code, 0) << show(mk);
  auto s = sb.shared();
  auto r = bounded([s] { return s->read_file("/home/user/sparse", User::user, 4 << 20); }, 30s);
  ASSERT_TRUE(r.has_value()) << "read_file of a 64 GiB sparse file did not return within 30 s";
  ASSERT_FALSE(*r) << "read_file returned " << (*r)->size() << " bytes past a 4 MiB limit";
  EXPECT_TRUE(r->error().is(errc::limit_exceeded)) << r->error().message();
}

}  // namespace
}  // namespace brig::security
