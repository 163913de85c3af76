// A sandbox's disk: an ext4 filesystem in a sparse image file that brig owns, on a loop device.
//
// Why a filesystem per sandbox rather than one shared filesystem with project quotas: quotas need
// the kernel's quota support (CONFIG_QUOTA for ext4, CONFIG_XFS_QUOTA for XFS), which hosts do not
// all have (this one has neither), while loop devices and ext4 are everywhere. The filesystem's
// size is the quota: a full disk is ENOSPC inside, exactly at the size asked for, and the host's
// disk holds no more than what the sandbox wrote (the image is sparse, and `discard` gives freed
// blocks back to the host as holes). The loop device uses direct I/O, so the host caches nothing
// twice; the filesystem's own page cache is charged to the sandbox's memory cgroup as cache that
// the kernel reclaims, not as memory the sandbox holds.
//
// The daemon makes images (format_disk_image once per size, then copy_sparse_file per sandbox:
// a fresh 10 GiB image holds ~160 KiB of data); the zygote attaches them (attach_loop) and
// mounts the result as a detached mount (rootfs.h). The loop device is autoclear: it goes away
// with the filesystem's last mount, that is with the sandbox's mount namespace, even if no brig
// process is left to clean up.
#pragma once

#include <cstdint>
#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace brig::isolate {

// Makes an empty ext4 filesystem of `bytes` in a new sparse file at `path` (mkfs.ext4 from
// e2fsprogs): no reserved blocks, no resize inode, lazily initialised tables and journal (the
// image's holes read as zeros), so it holds a few hundred KiB however large it is.
[[nodiscard]] Result<> format_disk_image(const std::string& path, uint64_t bytes);

// Copies the data extents of the regular file `from` to a new file `to` (0600), leaving holes
// as holes. Neither path may be a symlink.
[[nodiscard]] Result<> copy_sparse_file(const std::string& from, const std::string& to);

// Bytes of the host's disk that a file uses (its allocated blocks), 0 if it does not exist.
uint64_t allocated_bytes(const std::string& path);

// Whether a loop device is still bound to `image` (its filesystem not yet let go of: mounting
// it again meanwhile would corrupt it).
bool loop_attached(const std::string& image);

struct LoopDevice {
  Fd fd;             // the open block device; closing it (after the mount holds it) is the caller's
  std::string path;  // "/dev/loopN"
};

// Binds the image (a root-owned regular file, never a symlink) to a free loop device with
// direct I/O (plain I/O on a host filesystem that refuses it) and autoclear.
[[nodiscard]] Result<LoopDevice> attach_loop(const std::string& image);

}  // namespace brig::isolate
