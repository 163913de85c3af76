// Thin wrappers for the syscalls glibc 2.36 lacks or wraps awkwardly. This folder is the only
// home of raw syscall(2) calls. Each returns what the syscall returns (-1 + errno on failure),
// retries EINTR where the call is restartable, and is async-signal-safe: the zygote's child
// uses them between clone and exec.
#pragma once

#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <cstdint>

namespace brig::sys {

// clone3(2). Returns the child's pid in the parent, 0 in the child.
pid_t clone3(struct clone_args* args);

int pidfd_open(pid_t pid, unsigned flags);
int pidfd_send_signal(int pidfd, int sig);

int open_tree(int dirfd, const char* path, unsigned flags);
int mount_setattr(int dirfd, const char* path, unsigned flags, struct mount_attr* attr);
int move_mount(int from_dirfd, const char* from_path, int to_dirfd, const char* to_path,
               unsigned flags);
int fsopen(const char* fsname, unsigned flags);
int fsconfig(int fd, unsigned cmd, const char* key, const void* value, int aux);
int fsmount(int fd, unsigned flags, unsigned attr_flags);

int pivot_root(const char* new_root, const char* put_old);
int close_range(unsigned first, unsigned last, unsigned flags);
int openat2(int dirfd, const char* path, struct open_how* how);

// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog).
int seccomp_set_filter(unsigned flags, const void* prog);

// capget/capset with _LINUX_CAPABILITY_VERSION_3 (64-bit sets).
int capset_all(uint64_t effective, uint64_t permitted, uint64_t inheritable);

// Marks every fd >= `first` close-on-exec (close_range, else a /proc/self/fd walk).
int mark_cloexec_from(int first);

}  // namespace brig::sys
