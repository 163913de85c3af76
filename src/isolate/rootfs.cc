#include "isolate/rootfs.h"

#include <fcntl.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "isolate/disk.h"
#include "sys/syscalls.h"

namespace brig::isolate {
namespace {

Result<> fs_set(int fsfd, const char* key, const std::string& value) {
  if (sys::fsconfig(fsfd, FSCONFIG_SET_STRING, key, value.c_str(), 0) != 0)
    return Error::from_errno(errno, std::string("fsconfig(") + key + "=" + value + ")");
  return ok();
}

// Creates the superblock; on failure the kernel's own message (read from the fs context fd)
// is more useful than the errno alone.
Result<Fd> fs_create_and_mount(int fsfd, const char* fstype, unsigned attrs) {
  if (sys::fsconfig(fsfd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    int err = errno;
    char log[512];
    ssize_t n = ::read(fsfd, log, sizeof log - 1);
    std::string msg = std::string("fsconfig(") + fstype + ", CREATE)";
    if (n > 0) msg += std::string(" [") + std::string(log, static_cast<size_t>(n)) + "]";
    return Error::from_errno(err, msg);
  }
  Fd mnt(sys::fsmount(fsfd, FSMOUNT_CLOEXEC, attrs));
  if (!mnt) return Error::from_errno(errno, std::string("fsmount(") + fstype + ")");
  return mnt;
}

}  // namespace

Result<Fd> prepare_rootfs(pid_t pid, const RootfsSpec& spec) {
  // 1. The template, idmapped to the sandbox's range: host uid 0 appears as sandbox root, so
  //    root in the sandbox owns /etc and `user` owns /home/user, while the tree on disk stays
  //    owned by host root and read-only.
  const std::string ns_path = "/proc/" + std::to_string(pid) + "/ns/user";
  Fd userns(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!userns) return Error::from_errno(errno, "open(" + ns_path + ")");
  if (spec.layers.empty()) return Error::make(errc::invalid_argument, "no rootfs layers");
  std::vector<Fd> lowers;
  std::string lowerdir;
  for (const auto& layer : spec.layers) {
    Fd tree(sys::open_tree(AT_FDCWD, layer.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
    if (!tree) return Error::from_errno(errno, "open_tree(" + layer + ")");
    struct mount_attr attr = {};
    attr.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    attr.userns_fd = static_cast<uint64_t>(userns.get());
    if (sys::mount_setattr(tree.get(), "", AT_EMPTY_PATH, &attr) != 0)
      return Error::from_errno(errno, "mount_setattr(MOUNT_ATTR_IDMAP)");
    if (!lowerdir.empty()) lowerdir += ":";
    lowerdir += "/proc/self/fd/" + std::to_string(tree.get());
    lowers.push_back(std::move(tree));
  }

  // 2. The writable layer: the sandbox's disk (isolate/disk.h), an ext4 filesystem in an image
  //    file of the disk's size, mounted here as a detached mount: a full disk is ENOSPC inside,
  //    and the loop device goes with the last mount. Template builds instead keep the layer in
  //    a brig-owned host directory, to become a layer.
  Fd upper_mnt;
  if (!spec.upper_dir.empty()) {
    upper_mnt.reset(::open(spec.upper_dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!upper_mnt) return Error::from_errno(errno, "open(" + spec.upper_dir + ")");
  } else if (!spec.disk_image.empty()) {
    BRIG_TRY_ASSIGN(loop, attach_loop(spec.disk_image));
    Fd ext4(sys::fsopen("ext4", FSOPEN_CLOEXEC));
    if (!ext4) return Error::from_errno(errno, "fsopen(ext4)");
    BRIG_TRY(fs_set(ext4.get(), "source", loop.path));
    // noinit_itable: the image's never-written inode tables are holes, zeros already, so no
    // kernel thread writes them (and fills the host's disk); discard: freed blocks become holes.
    for (const char* flag : {"noinit_itable", "discard"})
      if (sys::fsconfig(ext4.get(), FSCONFIG_SET_FLAG, flag, nullptr, 0) != 0)
        return Error::from_errno(errno, std::string("fsconfig(") + flag + ")");
    BRIG_TRY_ASSIGN(mnt, fs_create_and_mount(ext4.get(), "ext4", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV));
    upper_mnt = std::move(mnt);
    // `loop.fd` closes here; the filesystem holds the device from now on.
  } else {
    return Error::make(errc::invalid_argument, "no disk image for the writable layer");
  }
  // A disk mounted again (a filesystem pause resumed) has them already.
  if (::mkdirat(upper_mnt.get(), "upper", 0755) != 0 && errno != EEXIST) return Error::from_errno(errno, "mkdirat(upper)");
  if (::mkdirat(upper_mnt.get(), "work", 0700) != 0 && errno != EEXIST) return Error::from_errno(errno, "mkdirat(work)");
  if (::fchownat(upper_mnt.get(), "upper", spec.uid_base, spec.uid_base, AT_SYMLINK_NOFOLLOW) != 0)
    return Error::from_errno(errno, "fchownat(upper)");

  // 3. The overlay. Layers are named through /proc/self/fd: they are detached mounts that no
  //    path on the host reaches.
  Fd ovl(sys::fsopen("overlay", FSOPEN_CLOEXEC));
  if (!ovl) return Error::from_errno(errno, "fsopen(overlay)");
  const std::string fd_dir = "/proc/self/fd/";
  BRIG_TRY(fs_set(ovl.get(), "lowerdir", lowerdir));
  BRIG_TRY(fs_set(ovl.get(), "upperdir", fd_dir + std::to_string(upper_mnt.get()) + "/upper"));
  BRIG_TRY(fs_set(ovl.get(), "workdir", fd_dir + std::to_string(upper_mnt.get()) + "/work"));
  return fs_create_and_mount(ovl.get(), "overlay", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
}

namespace {

StepResult bind_host_device(const char* name) {
  char host[64], target[64];
  std::snprintf(host, sizeof host, "/dev/%s", name);
  std::snprintf(target, sizeof target, "dev/%s", name);
  int fd = ::open(target, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (fd < 0) return StepResult::fail("create /dev node placeholder");
  ::close(fd);
  // Device nodes cannot be created in a user namespace; bind the host's harmless ones.
  BRIG_STEP(::mount(host, target, nullptr, MS_BIND, nullptr), "bind /dev node");
  return StepResult::ok();
}

StepResult make_dev(uint64_t shm_bytes) {
  BRIG_STEP(::mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=65536,nr_inodes=64"),
            "mount tmpfs /dev");
  for (const char* name : {"null", "zero", "full", "random", "urandom", "tty"})
    BRIG_TRY_STEP(bind_host_device(name));
  BRIG_STEP(::mkdir("dev/pts", 0755), "mkdir /dev/pts");
  // A private devpts instance: the sandbox cannot see or open host terminals.
  BRIG_STEP(::mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                    "newinstance,ptmxmode=0666,mode=0620,gid=5"),
            "mount devpts");
  BRIG_STEP(::symlink("pts/ptmx", "dev/ptmx"), "symlink /dev/ptmx");
  BRIG_STEP(::mkdir("dev/shm", 01777), "mkdir /dev/shm");
  char opts[64];
  std::snprintf(opts, sizeof opts, "mode=1777,size=%llu", static_cast<unsigned long long>(shm_bytes));
  // Private per sandbox: a shared /dev/shm was a side channel between boxes (isolate 2.6).
  BRIG_STEP(::mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, opts), "mount /dev/shm");
  BRIG_STEP(::symlink("/proc/self/fd", "dev/fd"), "symlink /dev/fd");
  BRIG_STEP(::symlink("/proc/self/fd/0", "dev/stdin"), "symlink /dev/stdin");
  BRIG_STEP(::symlink("/proc/self/fd/1", "dev/stdout"), "symlink /dev/stdout");
  BRIG_STEP(::symlink("/proc/self/fd/2", "dev/stderr"), "symlink /dev/stderr");
  BRIG_STEP(::mount(nullptr, "dev", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, nullptr),
            "remount /dev read-only");
  return StepResult::ok();
}

}  // namespace

StepResult apply_rootfs(const ApplyRootfsArgs& args) {
  // Nothing we mount may propagate back to the host's mount namespace.
  BRIG_STEP(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "make / private");
  BRIG_STEP(sys::move_mount(args.overlay_fd, "", args.mount_point_fd, "",
                            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
            "move_mount(overlay)");
  // The overlay fd is the root of the now-attached overlay: enter it without a path lookup.
  BRIG_STEP(::fchdir(args.overlay_fd), "fchdir(new root)");
  // A fresh procfs for the new PID namespace: only the sandbox's processes are visible.
  BRIG_STEP(::mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr), "mount /proc");
  BRIG_TRY_STEP(make_dev(args.shm_bytes));
  // pivot_root(".", ".") stacks the old root under the new one; detaching it removes every
  // host path from this namespace (no put_old directory needed, as in runc).
  BRIG_STEP(sys::pivot_root(".", "."), "pivot_root(\".\", \".\")");
  BRIG_STEP(::umount2(".", MNT_DETACH), "umount2(old root)");
  BRIG_STEP(::chdir("/"), "chdir(/)");
  return StepResult::ok();
}

StepResult apply_loopback_up() {
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return StepResult::fail("socket(AF_INET)");
  struct ifreq ifr = {};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  int rc = ::ioctl(sock, SIOCGIFFLAGS, &ifr);
  if (rc == 0) {
    ifr.ifr_flags |= IFF_UP;
    rc = ::ioctl(sock, SIOCSIFFLAGS, &ifr);
  }
  int err = errno;
  ::close(sock);
  if (rc != 0) return {"ioctl(SIOCSIFFLAGS, lo)", err};
  return StepResult::ok();
}

}  // namespace brig::isolate
