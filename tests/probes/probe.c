// brig-probe: a static, dependency-free binary that runs *inside* a sandbox and reports what
// the sandbox let it do. Each subcommand prints one line of evidence ("key=value ...") and
// exits 0 once it ran; a usage error exits 2. Tests assert the evidence line, so a sandbox
// that failed to start (no line at all) can never make a test pass.
//
// Conventions:
//   outcome=allowed            the operation succeeded
//   outcome=denied errno=NAME  it failed with errno NAME (by name, e.g. EPERM)
//   outcome=killed ...         never printed: a killed probe prints nothing, the test sees
//                              the signal in RunResult
//
// Plain C (gnu11) on purpose: built with -static against glibc only, so it runs in any
// rootfs, and every syscall it tries is visible in one place.
//
// Subcommands (see each cmd_* function):
//   state      fds | caps | nnp | seccomp | id | hostname | mounts | ps | netdev | env
//              ls-root | ls PATH | stat PATH | cat PATH | df PATH | cwd | chdir PATH
//   policy     try-syscall NAME (see try_syscall) | int80 | x32 | tiocsti
//   resources  memhog MB | forkbomb N | write PATH MB | spin | sleep SECONDS
//   files      read PATH | open-write PATH | append PATH TEXT | readlink PATH
//              symlink TARGET LINK | hardlink TARGET LINK | mkfifo PATH
//              make-setuid SRC DST | make-filecap SRC DST | setuid-check
//   escapes    exe-write | exe-grab PID SECONDS | kill PID SIG
//   network    connect IP PORT | loopback | unix-connect NAME|@ABSTRACT | udp IP PORT
//              http-get IP PORT | tcp-hold IP PORT SECONDS MARKER | ipv6
//   ipc        sysv-shm-create KEY | sysv-shm-find KEY
//   misc       echo ARGS...
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <arpa/inet.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef __X32_SYSCALL_BIT
#define __X32_SYSCALL_BIT 0x40000000
#endif

// ---- output helpers ---------------------------------------------------------------------

static const char* errname(int err) {
  if (err == 0) return "none";
  const char* n = strerrorname_np(err);
  return n ? n : "EUNKNOWN";
}

// Prints "outcome=allowed" for rc >= 0, else "outcome=denied errno=NAME" (with a prefix).
static int report(const char* prefix, long rc, int err) {
  if (rc >= 0)
    printf("%soutcome=allowed\n", prefix);
  else
    printf("%soutcome=denied errno=%s\n", prefix, errname(err));
  fflush(stdout);
  return 0;
}

static int usage(const char* msg) {
  fprintf(stderr, "brig-probe: usage: %s\n", msg);
  return 2;
}

// Reads a small file into buf (NUL-terminated). Returns bytes read or -1 (errno set).
static ssize_t slurp(const char* path, char* buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t n = 0;
  while (n + 1 < cap) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      errno = e;
      return -1;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  buf[n] = 0;
  close(fd);
  return (ssize_t)n;
}

// The value of "Key:\t..." in /proc/self/status (trimmed), or "?".
static void status_field(const char* key, char* out, size_t cap) {
  static char buf[16384];
  snprintf(out, cap, "?");
  if (slurp("/proc/self/status", buf, sizeof buf) < 0) return;
  size_t klen = strlen(key);
  for (char* line = buf; line && *line;) {
    char* nl = strchr(line, '\n');
    if (nl) *nl = 0;
    if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
      const char* v = line + klen + 1;
      while (*v == ' ' || *v == '\t') ++v;
      snprintf(out, cap, "%s", v);
      if (nl) *nl = '\n';
      return;
    }
    if (nl) *nl = '\n';
    line = nl ? nl + 1 : NULL;
  }
}

static int cmp_str(const void* a, const void* b) {
  return strcmp(*(const char* const*)a, *(const char* const*)b);
}

// Prints "<key>=a,b,c" of a directory's entries (sorted, without . and ..).
static int list_dir_line(const char* key, const char* path) {
  DIR* d = opendir(path);
  if (!d) {
    printf("%s=? outcome=denied errno=%s\n", key, errname(errno));
    fflush(stdout);
    return 0;
  }
  char* names[4096];
  size_t n = 0;
  struct dirent* e;
  while ((e = readdir(d)) && n < 4096) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof names[0], cmp_str);
  printf("%s=", key);
  for (size_t i = 0; i < n; ++i) {
    printf("%s%s", i ? "," : "", names[i]);
    free(names[i]);
  }
  printf(" count=%zu\n", n);
  fflush(stdout);
  return 0;
}

// ---- identity and process state ---------------------------------------------------------

// fds: the open fds of this process, from /proc/self/fd ("fds=0,1,2").
static int cmd_fds(void) {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return report("fds=? ", -1, errno);
  int self = dirfd(d);
  int fds[1024];
  size_t n = 0;
  struct dirent* e;
  while ((e = readdir(d)) && n < 1024) {
    if (e->d_name[0] == '.') continue;
    int fd = atoi(e->d_name);
    if (fd != self) fds[n++] = fd;
  }
  closedir(d);
  for (size_t i = 1; i < n; ++i)  // insertion sort: n is tiny
    for (size_t j = i; j > 0 && fds[j - 1] > fds[j]; --j) {
      int t = fds[j];
      fds[j] = fds[j - 1];
      fds[j - 1] = t;
    }
  printf("fds=");
  for (size_t i = 0; i < n; ++i) printf("%s%d", i ? "," : "", fds[i]);
  // Where each extra fd points, to make a leak diagnosable.
  for (size_t i = 0; i < n; ++i) {
    if (fds[i] <= 2) continue;
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fds[i]);
    ssize_t len = readlink(link, target, sizeof target - 1);
    target[len > 0 ? len : 0] = 0;
    printf(" fd%d=%s", fds[i], target);
  }
  printf("\n");
  fflush(stdout);
  return 0;
}

// caps: the capability sets of this process (hex, as in /proc/self/status).
static int cmd_caps(void) {
  char inh[64], prm[64], eff[64], bnd[64], amb[64];
  status_field("CapInh", inh, sizeof inh);
  status_field("CapPrm", prm, sizeof prm);
  status_field("CapEff", eff, sizeof eff);
  status_field("CapBnd", bnd, sizeof bnd);
  status_field("CapAmb", amb, sizeof amb);
  unsigned long long e = strtoull(eff, NULL, 16);
  printf("CapInh=%s CapPrm=%s CapEff=%s CapBnd=%s CapAmb=%s sys_admin=%d\n", inh, prm, eff, bnd,
         amb, (int)((e >> CAP_SYS_ADMIN) & 1));
  fflush(stdout);
  return 0;
}

static int cmd_nnp(void) {
  char v[64];
  status_field("NoNewPrivs", v, sizeof v);
  printf("NoNewPrivs=%s prctl=%d\n", v, prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
  fflush(stdout);
  return 0;
}

static int cmd_seccomp(void) {
  char mode[64], filters[64];
  status_field("Seccomp", mode, sizeof mode);
  status_field("Seccomp_filters", filters, sizeof filters);
  printf("Seccomp=%s Seccomp_filters=%s\n", mode, filters);
  fflush(stdout);
  return 0;
}

static int cmd_id(void) {
  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  getresuid(&ru, &eu, &su);
  getresgid(&rg, &eg, &sg);
  gid_t groups[256];
  int n = getgroups(256, groups);
  printf("uid=%u euid=%u suid=%u gid=%u egid=%u sgid=%u groups=", ru, eu, su, rg, eg, sg);
  for (int i = 0; i < n; ++i) printf("%s%u", i ? "," : "", groups[i]);
  printf(" pid=%d ppid=%d sid=%d\n", getpid(), getppid(), getsid(0));
  fflush(stdout);
  return 0;
}

static int cmd_hostname(void) {
  struct utsname u;
  if (uname(&u) != 0) return report("hostname=? ", -1, errno);
  printf("hostname=%s domainname=%s\n", u.nodename, u.domainname);
  fflush(stdout);
  return 0;
}

// mounts: how many mounts this process sees and of which filesystem types.
static int cmd_mounts(void) {
  FILE* f = fopen("/proc/self/mountinfo", "re");
  if (!f) return report("mounts=? ", -1, errno);
  char line[4096];
  char* types[256];
  size_t ntypes = 0, count = 0;
  char points[8192] = "";
  while (fgets(line, sizeof line, f)) {
    ++count;
    // "id parent maj:min root mountpoint opts [optional...] - fstype source superopts"
    char* fields[8] = {0};
    char* save = NULL;
    char* tok = strtok_r(line, " ", &save);
    for (int i = 0; tok && i < 5; ++i, tok = strtok_r(NULL, " ", &save)) fields[i] = tok;
    char* fstype = NULL;
    for (; tok; tok = strtok_r(NULL, " ", &save))
      if (!strcmp(tok, "-")) {
        fstype = strtok_r(NULL, " ", &save);
        break;
      }
    if (fields[4] && strlen(points) + strlen(fields[4]) + 2 < sizeof points) {
      if (points[0]) strcat(points, ",");
      strcat(points, fields[4]);
    }
    if (!fstype) continue;
    int seen = 0;
    for (size_t i = 0; i < ntypes; ++i) seen |= !strcmp(types[i], fstype);
    if (!seen && ntypes < 256) types[ntypes++] = strdup(fstype);
  }
  fclose(f);
  qsort(types, ntypes, sizeof types[0], cmp_str);
  printf("mounts=%zu fstypes=", count);
  for (size_t i = 0; i < ntypes; ++i) printf("%s%s", i ? "," : "", types[i]);
  printf(" points=%s\n", points);
  fflush(stdout);
  return 0;
}

// ps: the pids this process can see in /proc ("procs=3 pids=1,7,8").
static int cmd_ps(void) {
  DIR* d = opendir("/proc");
  if (!d) return report("procs=? ", -1, errno);
  int pids[4096];
  size_t n = 0;
  struct dirent* e;
  while ((e = readdir(d)) && n < 4096) {
    char* end;
    long v = strtol(e->d_name, &end, 10);
    if (*end == 0 && v > 0) pids[n++] = (int)v;
  }
  closedir(d);
  for (size_t i = 1; i < n; ++i)
    for (size_t j = i; j > 0 && pids[j - 1] > pids[j]; --j) {
      int t = pids[j];
      pids[j] = pids[j - 1];
      pids[j - 1] = t;
    }
  printf("procs=%zu pids=", n);
  for (size_t i = 0; i < n; ++i) printf("%s%d", i ? "," : "", pids[i]);
  printf("\n");
  fflush(stdout);
  return 0;
}

// netdev: the network interfaces in /proc/net/dev ("ifaces=lo").
static int cmd_netdev(void) {
  FILE* f = fopen("/proc/net/dev", "re");
  if (!f) return report("ifaces=? ", -1, errno);
  char line[512];
  int first = 1;
  printf("ifaces=");
  while (fgets(line, sizeof line, f)) {
    char* colon = strchr(line, ':');
    if (!colon || strchr(line, '|')) continue;  // the two header lines
    *colon = 0;
    char* name = line;
    while (*name == ' ') ++name;
    printf("%s%s", first ? "" : ",", name);
    first = 0;
  }
  fclose(f);
  printf("\n");
  fflush(stdout);
  return 0;
}

// ---- the seccomp policy -----------------------------------------------------------------

static int try_syscall(const char* name) {
  char prefix[128];
  snprintf(prefix, sizeof prefix, "syscall=%s ", name);
  long rc = -1;
  errno = 0;

  if (!strcmp(name, "ptrace-attach-1")) {
    rc = syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, 1, 0, 0);
  } else if (!strcmp(name, "ptrace-traceme")) {
    rc = syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0);
  } else if (!strcmp(name, "mount")) {
    rc = mount("none", "/tmp", "tmpfs", 0, "size=1m");
  } else if (!strcmp(name, "mount-proc")) {
    mkdir("/tmp/brig-probe-proc", 0700);
    rc = mount("proc", "/tmp/brig-probe-proc", "proc", 0, NULL);
  } else if (!strcmp(name, "umount-proc")) {
    rc = umount2("/proc", MNT_DETACH);
  } else if (!strcmp(name, "fsopen")) {
    rc = syscall(SYS_fsopen, "tmpfs", 0);
  } else if (!strcmp(name, "open_tree")) {
    rc = syscall(SYS_open_tree, AT_FDCWD, "/tmp", 1 /* OPEN_TREE_CLONE */);
  } else if (!strcmp(name, "unshare-user")) {
    rc = unshare(CLONE_NEWUSER);
  } else if (!strcmp(name, "unshare-net")) {
    rc = unshare(CLONE_NEWNET);
  } else if (!strcmp(name, "unshare-mount")) {
    rc = unshare(CLONE_NEWNS);
  } else if (!strcmp(name, "clone-newuser")) {
    rc = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (rc == 0) _exit(0);  // the child of a clone that should never have happened
    if (rc > 0) waitpid((pid_t)rc, NULL, 0);
  } else if (!strcmp(name, "clone3")) {
    struct {
      uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    } args = {0};
    args.exit_signal = SIGCHLD;
    rc = syscall(SYS_clone3, &args, sizeof args);
    if (rc == 0) _exit(0);
    if (rc > 0) waitpid((pid_t)rc, NULL, 0);
  } else if (!strcmp(name, "setns")) {
    int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return report(prefix, -1, errno);
    errno = 0;
    rc = setns(fd, 0);
    int e = errno;
    close(fd);
    errno = e;
  } else if (!strcmp(name, "bpf")) {
    // BPF_MAP_CREATE of a tiny array map.
    uint32_t attr[32] = {0};
    attr[0] = 2;  // BPF_MAP_TYPE_ARRAY
    attr[1] = 4;  // key_size
    attr[2] = 4;  // value_size
    attr[3] = 1;  // max_entries
    rc = syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, attr, sizeof attr);
  } else if (!strcmp(name, "perf_event_open")) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof attr;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    rc = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
  } else if (!strcmp(name, "userfaultfd")) {
    // UFFD_USER_MODE_ONLY is allowed unprivileged by the kernel: only seccomp stops it.
    rc = syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
  } else if (!strcmp(name, "io_uring_setup")) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    rc = syscall(SYS_io_uring_setup, 8, &p);
  } else if (!strcmp(name, "keyctl")) {
    rc = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
  } else if (!strcmp(name, "add_key")) {
    rc = syscall(SYS_add_key, "user", "brig-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING);
  } else if (!strcmp(name, "request_key")) {
    rc = syscall(SYS_request_key, "user", "brig-probe", NULL, KEY_SPEC_PROCESS_KEYRING);
  } else if (!strcmp(name, "init_module")) {
    static char image[64];
    rc = syscall(SYS_init_module, image, sizeof image, "");
  } else if (!strcmp(name, "finit_module")) {
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    rc = syscall(SYS_finit_module, fd, "", 0);
    int e = errno;
    if (fd >= 0) close(fd);
    errno = e;
  } else if (!strcmp(name, "delete_module")) {
    rc = syscall(SYS_delete_module, "brig_probe_no_such_module", O_NONBLOCK);
  } else if (!strcmp(name, "kexec_load")) {
    // An impossible architecture in the flags: EINVAL if the call ever got through.
    rc = syscall(SYS_kexec_load, 0, 0, NULL, 0xffff0000ul);
  } else if (!strcmp(name, "socket-vsock")) {
    rc = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  } else if (!strcmp(name, "socket-packet")) {
    rc = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  } else if (!strcmp(name, "socket-alg")) {
    // AF_ALG is open to unprivileged users by the kernel: only seccomp stops it.
    rc = socket(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  } else if (!strcmp(name, "socketpair-vsock")) {
    int sv[2];
    rc = socketpair(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  } else if (!strcmp(name, "socket-unix")) {
    rc = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  } else if (!strcmp(name, "socket-inet")) {
    rc = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  } else if (!strcmp(name, "socket-raw")) {
    rc = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
  } else if (!strcmp(name, "personality")) {
    rc = personality(PER_LINUX | ADDR_NO_RANDOMIZE);
  } else if (!strcmp(name, "personality-linux")) {
    rc = personality(PER_LINUX);
  } else if (!strcmp(name, "open_by_handle_at")) {
    struct {
      unsigned int handle_bytes;
      int handle_type;
      unsigned char f_handle[8];
    } h = {8, 1, {2, 0, 0, 0, 0, 0, 0, 0}};  // the "shocker" handle of inode 2 (a root dir)
    rc = syscall(SYS_open_by_handle_at, AT_FDCWD, &h, O_RDONLY);
  } else if (!strcmp(name, "name_to_handle_at")) {
    struct {
      unsigned int handle_bytes;
      int handle_type;
      unsigned char f_handle[128];
    } h = {128, 0, {0}};
    int mount_id;
    rc = syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &h, &mount_id, 0);
  } else if (!strcmp(name, "chroot")) {
    rc = chroot("/tmp");
  } else if (!strcmp(name, "reboot")) {
    // An invalid magic: if the call ever got through it fails EINVAL instead of acting.
    rc = syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, 0, LINUX_REBOOT_CMD_CAD_OFF, NULL);
  } else if (!strcmp(name, "syslog")) {
    rc = syscall(SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
  } else if (!strcmp(name, "pivot_root")) {
    rc = syscall(SYS_pivot_root, "/tmp", "/tmp");
  } else if (!strcmp(name, "process_vm_readv")) {
    // Reading our own memory: the kernel allows it, only seccomp stops it.
    char src[16] = "brig", dst[16] = "";
    struct iovec local = {dst, sizeof dst}, remote = {src, sizeof src};
    rc = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
  } else if (!strcmp(name, "process_vm_writev")) {
    char src[16] = "brig", dst[16] = "";
    struct iovec local = {src, sizeof src}, remote = {dst, sizeof dst};
    rc = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
  } else if (!strcmp(name, "kcmp")) {
    rc = syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, 0, 0);
  } else if (!strcmp(name, "tiocsti")) {
    char c = '#';
    rc = ioctl(0, TIOCSTI, &c);
  } else if (!strcmp(name, "mknod")) {
    rc = mknod("/tmp/brig-probe-sda", S_IFBLK | 0600, makedev(8, 0));
  } else if (!strcmp(name, "acct")) {
    rc = syscall(SYS_acct, NULL);
  } else if (!strcmp(name, "settimeofday")) {
    rc = syscall(SYS_settimeofday, NULL, NULL);
  } else if (!strcmp(name, "swapon")) {
    rc = syscall(SYS_swapon, "/tmp/brig-probe-no-swap", 0);
  } else if (!strcmp(name, "iopl")) {
    rc = syscall(SYS_iopl, 3);
  } else if (!strcmp(name, "fanotify_init")) {
    rc = syscall(SYS_fanotify_init, 0, O_RDONLY);
  } else {
    return usage("try-syscall: unknown syscall name");
  }
  return report(prefix, rc, errno);
}

// int80: getpid through the i386 ABI (int $0x80). The baseline policy kills non-native ABIs
// with SIGSYS, so reaching the printf means the sandbox let a 32-bit syscall through.
static int cmd_int80(void) {
  long ret;
  __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L /* i386 __NR_getpid */) : "memory");
  printf("abi=i386 ret=%ld outcome=allowed\n", ret);
  fflush(stdout);
  return 0;
}

// x32: getpid with __X32_SYSCALL_BIT (the x32 ABI). Killed by SIGSYS under the policy; on a
// kernel without x32 support and no filter it fails with ENOSYS (still "survived").
static int cmd_x32(void) {
  long ret = syscall(__X32_SYSCALL_BIT | 39 /* x32 getpid */);
  int err = errno;
  printf("abi=x32 ret=%ld errno=%s outcome=allowed\n", ret, ret < 0 ? errname(err) : "none");
  fflush(stdout);
  return 0;
}

// tiocsti: pushes a character into the terminal input of fd 0 and of /dev/tty (CVE-2017-5226).
static int cmd_tiocsti(void) {
  char c = '#';
  int rc0 = ioctl(0, TIOCSTI, &c);
  int e0 = errno;
  int tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  int etty_open = errno;
  int rct = -1, etty = 0;
  if (tty >= 0) {
    rct = ioctl(tty, TIOCSTI, &c);
    etty = errno;
    close(tty);
  }
  printf("fd0=%s devtty_open=%s devtty=%s isatty0=%d\n", rc0 == 0 ? "allowed" : errname(e0),
         tty >= 0 ? "ok" : errname(etty_open),
         tty < 0 ? "unopened" : (rct == 0 ? "allowed" : errname(etty)), isatty(0));
  fflush(stdout);
  return 0;
}

// ---- resources --------------------------------------------------------------------------

// memhog MB: allocates and touches MB MiB, printing progress every 16 MiB.
static int cmd_memhog(const char* mb_arg) {
  long mb = atol(mb_arg);
  if (mb <= 0) return usage("memhog MB");
  long touched = 0;
  for (long i = 0; i < mb; ++i) {
    char* p = malloc(1 << 20);
    if (!p) {
      printf("touched=%ld outcome=denied errno=%s\n", touched, errname(errno));
      fflush(stdout);
      return 0;
    }
    memset(p, 0xa5, 1 << 20);
    ++touched;
    if (touched % 16 == 0) {
      printf("touched=%ld\n", touched);
      fflush(stdout);
    }
  }
  printf("touched=%ld outcome=allowed\n", touched);
  fflush(stdout);
  return 0;
}

// forkbomb N: forks up to N sleeping children; reports how many it got and why it stopped.
static int cmd_forkbomb(const char* n_arg) {
  long n = atol(n_arg);
  if (n <= 0 || n > 100000) return usage("forkbomb N");
  pid_t* kids = calloc((size_t)n, sizeof(pid_t));
  long forked = 0;
  int err = 0;
  pid_t parent = getpid();
  for (long i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid < 0) {
      err = errno;
      break;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
      if (getppid() != parent) _exit(0);
      for (;;) pause();
    }
    kids[forked++] = pid;
  }
  printf("forked=%ld errno=%s\n", forked, errname(err));
  fflush(stdout);
  for (long i = 0; i < forked; ++i) kill(kids[i], SIGKILL);
  for (long i = 0; i < forked; ++i) waitpid(kids[i], NULL, 0);
  return 0;
}

// write PATH MB: writes MB MiB (of non-zero bytes) to PATH; stops at the first error.
static int cmd_write(const char* path, const char* mb_arg) {
  long mb = atol(mb_arg);
  if (mb <= 0) return usage("write PATH MB");
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    printf("written=0 bytes=0 outcome=denied errno=%s\n", errname(errno));
    fflush(stdout);
    return 0;
  }
  static char chunk[1 << 16];
  memset(chunk, 'b', sizeof chunk);
  unsigned long long bytes = 0, goal = (unsigned long long)mb << 20;
  int err = 0;
  while (bytes < goal) {
    ssize_t w = write(fd, chunk, sizeof chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    bytes += (unsigned long long)w;
  }
  if (!err && fsync(fd) != 0 && errno != EINVAL) err = errno;
  if (close(fd) != 0 && !err) err = errno;
  printf("written=%llu bytes=%llu errno=%s\n", bytes >> 20, bytes, errname(err));
  fflush(stdout);
  return 0;
}

// ---- files ------------------------------------------------------------------------------

// read PATH: reads the whole file ("outcome=read bytes=N").
static int cmd_read(const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    printf("outcome=denied errno=%s\n", errname(errno));
    fflush(stdout);
    return 0;
  }
  char buf[65536];
  unsigned long long total = 0;
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      printf("outcome=denied bytes=%llu errno=%s\n", total, errname(errno));
      fflush(stdout);
      close(fd);
      return 0;
    }
    if (r == 0) break;
    total += (unsigned long long)r;
  }
  close(fd);
  printf("outcome=read bytes=%llu\n", total);
  fflush(stdout);
  return 0;
}

// cat PATH: prints the file (up to 64 KiB) after a "bytes=N" line, for tests that inspect it.
static int cmd_cat(const char* path) {
  static char buf[65536];
  ssize_t n = slurp(path, buf, sizeof buf);
  if (n < 0) return report("", -1, errno);
  printf("bytes=%zd\n%s", n, buf);
  if (n > 0 && buf[n - 1] != '\n') printf("\n");
  fflush(stdout);
  return 0;
}

// open-write PATH: opens an existing file for writing without writing or truncating.
static int cmd_open_write(const char* path) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    printf("outcome=denied errno=%s\n", errname(errno));
  } else {
    printf("outcome=opened\n");
    close(fd);
  }
  fflush(stdout);
  return 0;
}

// append PATH TEXT: appends TEXT and a newline to PATH (created 0644 if missing).
static int cmd_append(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return report("", -1, errno);
  size_t len = strlen(text);
  char* line = malloc(len + 2);
  memcpy(line, text, len);
  line[len] = '\n';
  ssize_t w = write(fd, line, len + 1);
  int err = errno;
  free(line);
  close(fd);
  return report("", w == (ssize_t)(len + 1) ? 0 : -1, err);
}

static int cmd_readlink(const char* path) {
  char target[PATH_MAX];
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) {
    printf("outcome=denied errno=%s\n", errname(errno));
  } else {
    target[n] = 0;
    printf("outcome=allowed target=%s\n", target);
  }
  fflush(stdout);
  return 0;
}

static int cmd_stat(const char* path) {
  struct stat st;
  if (lstat(path, &st) != 0) return report("", -1, errno);
  const char* type = S_ISREG(st.st_mode)    ? "file"
                     : S_ISDIR(st.st_mode)  ? "dir"
                     : S_ISLNK(st.st_mode)  ? "symlink"
                     : S_ISFIFO(st.st_mode) ? "fifo"
                     : S_ISCHR(st.st_mode)  ? "chr"
                     : S_ISBLK(st.st_mode)  ? "blk"
                                            : "other";
  printf("outcome=allowed type=%s uid=%u gid=%u mode=%04o size=%lld\n", type, st.st_uid,
         st.st_gid, st.st_mode & 07777, (long long)st.st_size);
  fflush(stdout);
  return 0;
}

// (The call is made before errno is read: argument evaluation order is unspecified.)
static int cmd_symlink(const char* target, const char* path) {
  int rc = symlink(target, path);
  return report("", rc, errno);
}

static int cmd_hardlink(const char* target, const char* path) {
  int rc = link(target, path);
  return report("", rc, errno);
}

static int cmd_mkfifo(const char* path) {
  int rc = mkfifo(path, 0666);
  return report("", rc, errno);
}

// make-setuid SRC DST: copies SRC to DST, owned by root, mode 04755 (run as root).
static int cmd_make_setuid(const char* src, const char* dst) {
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0) return report("step=open-src ", -1, errno);
  int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  if (out < 0) return report("step=open-dst ", -1, errno);
  char buf[65536];
  ssize_t r;
  while ((r = read(in, buf, sizeof buf)) > 0)
    if (write(out, buf, (size_t)r) != r) return report("step=copy ", -1, errno);
  close(in);
  if (fchown(out, 0, 0) != 0) return report("step=chown ", -1, errno);
  if (fchmod(out, 04755) != 0) return report("step=chmod ", -1, errno);
  close(out);
  struct stat st;
  if (stat(dst, &st) != 0) return report("step=stat ", -1, errno);
  printf("outcome=allowed uid=%u mode=%04o\n", st.st_uid, st.st_mode & 07777);
  fflush(stdout);
  return 0;
}

// make-filecap SRC DST: copies SRC to DST and gives it file capabilities (security.capability:
// CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH, permitted + effective). Needs CAP_SETFCAP (root).
static int cmd_make_filecap(const char* src, const char* dst) {
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0) return report("step=open-src ", -1, errno);
  int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  if (out < 0) return report("step=open-dst ", -1, errno);
  char buf[65536];
  ssize_t r;
  while ((r = read(in, buf, sizeof buf)) > 0)
    if (write(out, buf, (size_t)r) != r) return report("step=copy ", -1, errno);
  close(in);
  struct {
    uint32_t magic_etc;
    struct {
      uint32_t permitted, inheritable;
    } data[2];
  } cap;
  memset(&cap, 0, sizeof cap);
  cap.magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE;
  cap.data[0].permitted = (1u << CAP_SYS_ADMIN) | (1u << CAP_DAC_READ_SEARCH);
  if (fsetxattr(out, "security.capability", &cap, sizeof cap, 0) != 0) return report("step=setxattr ", -1, errno);
  close(out);
  ssize_t n = getxattr(dst, "security.capability", buf, sizeof buf);
  if (n < 0) return report("step=getxattr ", -1, errno);
  printf("outcome=allowed xattr_bytes=%zd\n", n);
  fflush(stdout);
  return 0;
}

// setuid-check: run from a setuid-root copy; reports whether the bit took effect.
static int cmd_setuid_check(void) {
  uid_t ru, eu, su;
  getresuid(&ru, &eu, &su);
  struct stat st;
  int have = stat("/proc/self/exe", &st) == 0;
  printf("uid=%u euid=%u suid=%u exe_uid=%d exe_mode=%04o\n", ru, eu, su,
         have ? (int)st.st_uid : -1, have ? st.st_mode & 07777 : 0);
  fflush(stdout);
  return 0;
}

// cwd: where this process's working directory is, and whether walking ".." from it leaves
// the sandbox root (runc CVE-2024-21626: a cwd on a leaked host fd).
static int cmd_cwd(void) {
  char buf[PATH_MAX];
  const char* cwd = getcwd(buf, sizeof buf);
  int cwd_err = errno;
  struct stat root, here;
  if (stat("/", &root) != 0) return report("cwd=? ", -1, errno);
  int escaped = 0;
  for (int i = 0; i < 64; ++i) {
    if (stat(".", &here) != 0) break;
    if (here.st_dev == root.st_dev && here.st_ino == root.st_ino) break;
    struct stat up;
    if (stat("..", &up) != 0) break;
    if (up.st_dev == here.st_dev && up.st_ino == here.st_ino) {  // a root that is not ours
      escaped = 1;
      break;
    }
    if (chdir("..") != 0) break;
  }
  // Entries of the top we reached, to show what was reachable.
  printf("cwd=%s escaped=%d ", cwd ? cwd : errname(cwd_err), escaped);
  fflush(stdout);
  return list_dir_line("top", ".");
}

// chdir PATH: changes into PATH, then reports as `cwd` does.
static int cmd_chdir(const char* path) {
  if (chdir(path) != 0) return report("", -1, errno);
  return cmd_cwd();
}

// ---- escapes through /proc/*/exe (runc CVE-2019-5736) --------------------------------------

static const char* try_open_write(const char* path) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);  // never O_TRUNC, never written
  if (fd >= 0) {
    close(fd);
    return "opened";
  }
  return errname(errno);
}

static int cmd_exe_write(void) {
  char self_target[PATH_MAX] = "", init_target[PATH_MAX] = "";
  ssize_t n = readlink("/proc/1/exe", init_target, sizeof init_target - 1);
  int init_rl = n < 0 ? errno : 0;
  if (n > 0) init_target[n] = 0;
  n = readlink("/proc/self/exe", self_target, sizeof self_target - 1);
  if (n > 0) self_target[n] = 0;
  const char* self_res = try_open_write("/proc/self/exe");
  const char* init_res = try_open_write("/proc/1/exe");
  // The CVE's actual route: an O_PATH fd to the exe, reopened for writing through /proc/self/fd.
  const char* init_path_res;
  int opath = open("/proc/1/exe", O_PATH | O_CLOEXEC);
  if (opath < 0) {
    init_path_res = errname(errno);
  } else {
    char via[64];
    snprintf(via, sizeof via, "/proc/self/fd/%d", opath);
    init_path_res = try_open_write(via);
  }
  printf("self=%s init=%s init_opath_reopen=%s init_readlink=%s\n", self_res, init_res,
         init_path_res, init_rl ? errname(init_rl) : init_target);
  fflush(stdout);
  return 0;
}

// exe-grab PID SECONDS: the CVE-2019-5736 exploit step. Takes an O_PATH fd to the executable
// of process PID (in runc's case the runtime, exec'd into the container), prints
// "grabbed target=...", then for SECONDS keeps trying to reopen it for writing through
// /proc/self/fd (the exploit waits for the runtime to exit, which lifts ETXTBSY). Nothing is
// ever written or truncated. The final line reports whether a writable fd was obtained.
static int cmd_exe_grab(const char* pid_arg, const char* seconds_arg) {
  long pid = atol(pid_arg), seconds = atol(seconds_arg);
  if (pid <= 0 || seconds <= 0) return usage("exe-grab PID SECONDS");
  char path[64], target[PATH_MAX] = "";
  snprintf(path, sizeof path, "/proc/%ld/exe", pid);
  int fd = open(path, O_PATH | O_CLOEXEC);
  if (fd < 0) {
    printf("grabbed=0 outcome=denied errno=%s\n", errname(errno));
    fflush(stdout);
    return 0;
  }
  char via[64];
  snprintf(via, sizeof via, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(via, target, sizeof target - 1);
  target[n > 0 ? n : 0] = 0;
  printf("grabbed=1 target=%s\n", target);
  fflush(stdout);
  int rfd = open(via, O_RDONLY | O_CLOEXEC);
  int readable = rfd >= 0;
  if (rfd >= 0) close(rfd);
  int writable = 0, last_err = 0, exited = 0;
  time_t end = time(NULL) + seconds;
  while (time(NULL) < end) {
    int w = open(via, O_WRONLY | O_CLOEXEC);  // never O_TRUNC, never written
    if (w >= 0) {
      writable = 1;
      close(w);
      break;
    }
    last_err = errno;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) exited = 1;
    if (exited && last_err != ETXTBSY) break;  // the final answer once the process is gone
    usleep(20000);
  }
  printf("writable=%d readable=%d last_errno=%s target_exited=%d target=%s\n", writable, readable,
         errname(last_err), exited, target);
  fflush(stdout);
  close(fd);
  return 0;
}

// df PATH: the size of the filesystem holding PATH, in bytes.
static int cmd_df(const char* path) {
  struct statvfs v;
  if (statvfs(path, &v) != 0) return report("", -1, errno);
  printf("size=%llu avail=%llu\n", (unsigned long long)v.f_blocks * v.f_frsize,
         (unsigned long long)v.f_bavail * v.f_frsize);
  fflush(stdout);
  return 0;
}

// env: the names of the environment variables ("env=HOME,PATH,...").
static int cmd_env(void) {
  extern char** environ;
  printf("env=");
  for (char** e = environ; *e; ++e) {
    const char* eq = strchr(*e, '=');
    int len = eq ? (int)(eq - *e) : (int)strlen(*e);
    printf("%s%.*s", e == environ ? "" : ",", len, *e);
  }
  printf("\n");
  fflush(stdout);
  return 0;
}

// ---- network and IPC --------------------------------------------------------------------

// connect HOST PORT: a TCP connect (IPv4 or IPv6 literal) with a 5 s bound.
static int cmd_connect(const char* host, const char* port_arg) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  int port = atoi(port_arg);
  struct sockaddr_in* v4 = (struct sockaddr_in*)&ss;
  struct sockaddr_in6* v6 = (struct sockaddr_in6*)&ss;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    len = sizeof *v4;
  } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    len = sizeof *v6;
  } else {
    return usage("connect IP PORT (a literal address)");
  }
  int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) return report("step=socket ", -1, errno);
  int rc = connect(s, (struct sockaddr*)&ss, len);
  int err = rc == 0 ? 0 : errno;
  if (rc != 0 && err == EINPROGRESS) {
    struct pollfd p = {s, POLLOUT, 0};
    int pr = poll(&p, 1, 5000);
    if (pr == 0) {
      err = ETIMEDOUT;
    } else {
      socklen_t elen = sizeof err;
      getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &elen);
    }
  }
  close(s);
  if (err == 0)
    printf("outcome=connected\n");
  else
    printf("outcome=failed errno=%s\n", errname(err));
  fflush(stdout);
  return 0;
}

// A blocking TCP connection to an IPv4 literal within 5 s, or -errno.
static int tcp_open(const char* host, const char* port_arg) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)atoi(port_arg));
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return -EINVAL;
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -errno;
  struct timeval tv = {5, 0};
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(s, (struct sockaddr*)&sa, sizeof sa) != 0) {
    int err = errno == EINPROGRESS ? ETIMEDOUT : errno;
    close(s);
    return -err;
  }
  return s;
}

// udp IP PORT: sends "ping" from a connected UDP socket and waits 2 s for any reply.
static int cmd_udp(const char* host, const char* port_arg) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)atoi(port_arg));
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return usage("udp IP PORT (an IPv4 literal)");
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return report("step=socket ", -1, errno);
  if (connect(s, (struct sockaddr*)&sa, sizeof sa) != 0 || send(s, "ping", 4, 0) != 4) {
    printf("outcome=failed errno=%s\n", errname(errno));
    close(s);
    return 0;
  }
  struct pollfd p = {s, POLLIN, 0};
  int pr = poll(&p, 1, 2000);
  char buf[256];
  if (pr == 0) {
    printf("outcome=timeout\n");
  } else {
    ssize_t n = recv(s, buf, sizeof buf - 1, 0);
    if (n < 0) {
      printf("outcome=failed errno=%s\n", errname(errno));
    } else {
      buf[n] = 0;
      for (ssize_t i = 0; i < n; i++)
        if (buf[i] <= ' ' || buf[i] > '~') buf[i] = '_';
      printf("outcome=reply data=%s\n", buf);
    }
  }
  close(s);
  fflush(stdout);
  return 0;
}

// http-get IP PORT: GET / over HTTP/1.0; prints the status line's code and the body's first
// word (the test servers answer with a word that names them).
static int cmd_http_get(const char* host, const char* port_arg) {
  int s = tcp_open(host, port_arg);
  if (s < 0) {
    printf("outcome=failed errno=%s\n", errname(-s));
    fflush(stdout);
    return 0;
  }
  const char req[] = "GET / HTTP/1.0\r\n\r\n";
  if (write(s, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
    printf("outcome=failed errno=%s\n", errname(errno));
    close(s);
    return 0;
  }
  char buf[4096];
  size_t got = 0;
  for (;;) {
    ssize_t n = read(s, buf + got, sizeof buf - 1 - got);
    if (n <= 0) break;
    got += (size_t)n;
    if (got == sizeof buf - 1) break;
  }
  buf[got] = 0;
  close(s);
  int code = 0;
  sscanf(buf, "HTTP/%*s %d", &code);
  char word[64] = "";
  const char* body = strstr(buf, "\r\n\r\n");
  if (body) sscanf(body + 4, "%63s", word);
  printf("outcome=%s status=%d body=%s\n", code ? "response" : "failed", code, word[0] ? word : "-");
  fflush(stdout);
  return 0;
}

// tcp-hold IP PORT SECONDS MARKER: one connection to an echo server. After the first echo it
// creates the file MARKER (so a test knows the connection is up), then sends a line every
// 100 ms and reads its echo, for SECONDS at most; prints when and how the connection broke.
static int cmd_tcp_hold(const char* host, const char* port_arg, const char* seconds_arg, const char* marker) {
  int s = tcp_open(host, port_arg);
  if (s < 0) {
    printf("outcome=failed step=connect errno=%s\n", errname(-s));
    fflush(stdout);
    return 0;
  }
  struct timeval tv = {1, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  long limit_ms = atol(seconds_arg) * 1000;
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  int echoes = 0;
  for (;;) {
    char buf[64];
    if (write(s, "ping\n", 5) != 5) {
      printf("outcome=cut after=%d step=write errno=%s\n", echoes, errname(errno));
      break;
    }
    ssize_t n = read(s, buf, sizeof buf);
    if (n <= 0) {
      printf("outcome=cut after=%d step=read errno=%s\n", echoes, n == 0 ? "EOF" : errname(errno));
      break;
    }
    if (++echoes == 1) {
      int m = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      if (m >= 0) close(m);
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    if (elapsed > limit_ms) {
      printf("outcome=open echoes=%d\n", echoes);
      break;
    }
    usleep(100 * 1000);
  }
  close(s);
  fflush(stdout);
  return 0;
}

// ipv6: what IPv6 the sandbox has: addresses other than ::1 (/proc/net/if_inet6) and routes
// other than loopback ones (/proc/net/ipv6_route).
static int cmd_ipv6(void) {
  int addrs = 0, routes = 0;
  char line[512];
  FILE* f = fopen("/proc/net/if_inet6", "re");
  if (f) {
    while (fgets(line, sizeof line, f))
      if (strncmp(line, "00000000000000000000000000000001", 32) != 0) addrs++;
    fclose(f);
  }
  f = fopen("/proc/net/ipv6_route", "re");
  if (f) {
    while (fgets(line, sizeof line, f)) {
      size_t n = strlen(line);
      while (n && (line[n - 1] == '\n' || line[n - 1] == ' ')) line[--n] = 0;
      const char* dev = strrchr(line, ' ');
      if (dev && strcmp(dev + 1, "lo") != 0) routes++;
    }
    fclose(f);
  }
  printf("v6_addresses=%d v6_routes=%d\n", addrs, routes);
  fflush(stdout);
  return 0;
}

// loopback: listens on 127.0.0.1 (an ephemeral port) and connects to itself.
static int cmd_loopback(void) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0) return report("step=socket ", -1, errno);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (bind(l, (struct sockaddr*)&sa, sizeof sa) != 0 || listen(l, 1) != 0 ||
      getsockname(l, (struct sockaddr*)&sa, &len) != 0)
    return report("step=listen ", -1, errno);
  char port[16];
  snprintf(port, sizeof port, "%d", ntohs(sa.sin_port));
  int rc = cmd_connect("127.0.0.1", port);
  close(l);
  return rc;
}

// unix-connect NAME: connects to a unix socket; "@name" is an abstract one (net-ns scoped).
static int cmd_unix_connect(const char* name) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t n = strlen(name);
  if (n >= sizeof sa.sun_path) return usage("unix-connect NAME (too long)");
  memcpy(sa.sun_path, name, n);
  if (name[0] == '@') sa.sun_path[0] = 0;
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return report("step=socket ", -1, errno);
  int rc = connect(s, (struct sockaddr*)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
  int err = errno;
  close(s);
  if (rc == 0)
    printf("outcome=connected\n");
  else
    printf("outcome=failed errno=%s\n", errname(err));
  fflush(stdout);
  return 0;
}

// sysv-shm-create KEY / sysv-shm-find KEY: System V shared memory (IPC namespace scoped).
static int cmd_sysv_shm(const char* key_arg, int create) {
  key_t key = (key_t)strtol(key_arg, NULL, 0);
  int id = shmget(key, 4096, create ? IPC_CREAT | 0666 : 0);
  if (id < 0) {
    printf("outcome=denied errno=%s\n", errname(errno));
  } else {
    printf("outcome=allowed shmid=%d\n", id);
  }
  fflush(stdout);
  return 0;
}

static int cmd_kill(const char* pid_arg, const char* sig_arg) {
  int rc = kill((pid_t)atol(pid_arg), atoi(sig_arg));
  return report("", rc, errno);
}

// ---- main -------------------------------------------------------------------------------

int main(int argc, char** argv) {
  if (argc < 2) return usage("brig-probe SUBCOMMAND [ARGS...]");
  const char* cmd = argv[1];
#define NEED(n, msg) \
  if (argc < 2 + (n)) return usage(msg)
  if (!strcmp(cmd, "fds")) return cmd_fds();
  if (!strcmp(cmd, "caps")) return cmd_caps();
  if (!strcmp(cmd, "nnp")) return cmd_nnp();
  if (!strcmp(cmd, "seccomp")) return cmd_seccomp();
  if (!strcmp(cmd, "id")) return cmd_id();
  if (!strcmp(cmd, "hostname")) return cmd_hostname();
  if (!strcmp(cmd, "mounts")) return cmd_mounts();
  if (!strcmp(cmd, "ps")) return cmd_ps();
  if (!strcmp(cmd, "netdev")) return cmd_netdev();
  if (!strcmp(cmd, "ls-root")) return list_dir_line("entries", "/");
  if (!strcmp(cmd, "ls")) {
    NEED(1, "ls PATH");
    return list_dir_line("entries", argv[2]);
  }
  if (!strcmp(cmd, "try-syscall")) {
    NEED(1, "try-syscall NAME");
    return try_syscall(argv[2]);
  }
  if (!strcmp(cmd, "int80")) return cmd_int80();
  if (!strcmp(cmd, "x32")) return cmd_x32();
  if (!strcmp(cmd, "tiocsti")) return cmd_tiocsti();
  if (!strcmp(cmd, "memhog")) {
    NEED(1, "memhog MB");
    return cmd_memhog(argv[2]);
  }
  if (!strcmp(cmd, "forkbomb")) {
    NEED(1, "forkbomb N");
    return cmd_forkbomb(argv[2]);
  }
  if (!strcmp(cmd, "write")) {
    NEED(2, "write PATH MB");
    return cmd_write(argv[2], argv[3]);
  }
  if (!strcmp(cmd, "read")) {
    NEED(1, "read PATH");
    return cmd_read(argv[2]);
  }
  if (!strcmp(cmd, "cat")) {
    NEED(1, "cat PATH");
    return cmd_cat(argv[2]);
  }
  if (!strcmp(cmd, "open-write")) {
    NEED(1, "open-write PATH");
    return cmd_open_write(argv[2]);
  }
  if (!strcmp(cmd, "append")) {
    NEED(2, "append PATH TEXT");
    return cmd_append(argv[2], argv[3]);
  }
  if (!strcmp(cmd, "readlink")) {
    NEED(1, "readlink PATH");
    return cmd_readlink(argv[2]);
  }
  if (!strcmp(cmd, "stat")) {
    NEED(1, "stat PATH");
    return cmd_stat(argv[2]);
  }
  if (!strcmp(cmd, "symlink")) {
    NEED(2, "symlink TARGET LINK");
    return cmd_symlink(argv[2], argv[3]);
  }
  if (!strcmp(cmd, "hardlink")) {
    NEED(2, "hardlink TARGET LINK");
    return cmd_hardlink(argv[2], argv[3]);
  }
  if (!strcmp(cmd, "mkfifo")) {
    NEED(1, "mkfifo PATH");
    return cmd_mkfifo(argv[2]);
  }
  if (!strcmp(cmd, "make-setuid")) {
    NEED(2, "make-setuid SRC DST");
    return cmd_make_setuid(argv[2], argv[3]);
  }
  if (!strcmp(cmd, "make-filecap")) {
    NEED(2, "make-filecap SRC DST");
    return cmd_make_filecap(argv[2], argv[3]);
  }
  if (!strcmp(cmd, "setuid-check")) return cmd_setuid_check();
  if (!strcmp(cmd, "cwd")) return cmd_cwd();
  if (!strcmp(cmd, "chdir")) {
    NEED(1, "chdir PATH");
    return cmd_chdir(argv[2]);
  }
  if (!strcmp(cmd, "exe-write")) return cmd_exe_write();
  if (!strcmp(cmd, "exe-grab")) {
    NEED(2, "exe-grab PID SECONDS");
    return cmd_exe_grab(argv[2], argv[3]);
  }
  if (!strcmp(cmd, "df")) {
    NEED(1, "df PATH");
    return cmd_df(argv[2]);
  }
  if (!strcmp(cmd, "env")) return cmd_env();
  if (!strcmp(cmd, "connect")) {
    NEED(2, "connect IP PORT");
    return cmd_connect(argv[2], argv[3]);
  }
  if (!strcmp(cmd, "loopback")) return cmd_loopback();
  if (!strcmp(cmd, "udp")) {
    NEED(2, "udp IP PORT");
    return cmd_udp(argv[2], argv[3]);
  }
  if (!strcmp(cmd, "http-get")) {
    NEED(2, "http-get IP PORT");
    return cmd_http_get(argv[2], argv[3]);
  }
  if (!strcmp(cmd, "tcp-hold")) {
    NEED(4, "tcp-hold IP PORT SECONDS MARKER");
    return cmd_tcp_hold(argv[2], argv[3], argv[4], argv[5]);
  }
  if (!strcmp(cmd, "ipv6")) return cmd_ipv6();
  if (!strcmp(cmd, "unix-connect")) {
    NEED(1, "unix-connect NAME");
    return cmd_unix_connect(argv[2]);
  }
  if (!strcmp(cmd, "sysv-shm-create")) {
    NEED(1, "sysv-shm-create KEY");
    return cmd_sysv_shm(argv[2], 1);
  }
  if (!strcmp(cmd, "sysv-shm-find")) {
    NEED(1, "sysv-shm-find KEY");
    return cmd_sysv_shm(argv[2], 0);
  }
  if (!strcmp(cmd, "kill")) {
    NEED(2, "kill PID SIG");
    return cmd_kill(argv[2], argv[3]);
  }
  if (!strcmp(cmd, "spin")) {
    for (volatile unsigned long i = 0;; ++i) {
    }
  }
  if (!strcmp(cmd, "sleep")) {
    NEED(1, "sleep SECONDS");
    sleep((unsigned)atoi(argv[2]));
    printf("outcome=slept\n");
    fflush(stdout);
    return 0;
  }
  if (!strcmp(cmd, "echo")) {  // a liveness check: prints its arguments
    for (int i = 2; i < argc; ++i) printf("%s%s", i > 2 ? " " : "", argv[i]);
    printf("\n");
    fflush(stdout);
    return 0;
  }
#undef NEED
  return usage("unknown subcommand");
}
