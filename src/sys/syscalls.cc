#include "sys/syscalls.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace brig::sys {

#define BRIG_RETRY_EINTR(expr)                 \
  ({                                           \
    long brig_r_;                              \
    do brig_r_ = (expr);                       \
    while (brig_r_ == -1 && errno == EINTR);   \
    brig_r_;                                   \
  })

pid_t clone3(struct clone_args* args) {
  return static_cast<pid_t>(::syscall(SYS_clone3, args, sizeof(*args)));
}

int pidfd_open(pid_t pid, unsigned flags) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags));
}

int pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

int open_tree(int dirfd, const char* path, unsigned flags) {
  return static_cast<int>(::syscall(SYS_open_tree, dirfd, path, flags));
}

int mount_setattr(int dirfd, const char* path, unsigned flags, struct mount_attr* attr) {
  return static_cast<int>(::syscall(SYS_mount_setattr, dirfd, path, flags, attr, sizeof(*attr)));
}

int move_mount(int from_dirfd, const char* from_path, int to_dirfd, const char* to_path,
               unsigned flags) {
  return static_cast<int>(
      ::syscall(SYS_move_mount, from_dirfd, from_path, to_dirfd, to_path, flags));
}

int fsopen(const char* fsname, unsigned flags) {
  return static_cast<int>(::syscall(SYS_fsopen, fsname, flags));
}

int fsconfig(int fd, unsigned cmd, const char* key, const void* value, int aux) {
  return static_cast<int>(::syscall(SYS_fsconfig, fd, cmd, key, value, aux));
}

int fsmount(int fd, unsigned flags, unsigned attr_flags) {
  return static_cast<int>(::syscall(SYS_fsmount, fd, flags, attr_flags));
}

int pivot_root(const char* new_root, const char* put_old) {
  return static_cast<int>(::syscall(SYS_pivot_root, new_root, put_old));
}

int close_range(unsigned first, unsigned last, unsigned flags) {
  return static_cast<int>(::syscall(SYS_close_range, first, last, flags));
}

int openat2(int dirfd, const char* path, struct open_how* how) {
  return static_cast<int>(BRIG_RETRY_EINTR(::syscall(SYS_openat2, dirfd, path, how, sizeof(*how))));
}

int seccomp_set_filter(unsigned flags, const void* prog) {
  return static_cast<int>(::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, prog));
}

int capset_all(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  data[0].effective = static_cast<uint32_t>(effective);
  data[1].effective = static_cast<uint32_t>(effective >> 32);
  data[0].permitted = static_cast<uint32_t>(permitted);
  data[1].permitted = static_cast<uint32_t>(permitted >> 32);
  data[0].inheritable = static_cast<uint32_t>(inheritable);
  data[1].inheritable = static_cast<uint32_t>(inheritable >> 32);
  return static_cast<int>(::syscall(SYS_capset, &header, data));
}

int mark_cloexec_from(int first) {
  if (close_range(static_cast<unsigned>(first), ~0U, CLOSE_RANGE_CLOEXEC) == 0) return 0;
  // Fallback for kernels before 5.11: walk /proc/self/fd. opendir allocates, so this path is
  // only taken outside async-signal contexts (brig-init itself is single-threaded).
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return -1;
  int self = ::dirfd(dir);
  while (struct dirent* e = ::readdir(dir)) {
    int fd = std::atoi(e->d_name);
    if (fd >= first && fd != self) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  ::closedir(dir);
  return 0;
}

}  // namespace brig::sys
