#include "isolate/disk.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/limits.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "base/subprocess.h"

namespace brig::isolate {

Result<> format_disk_image(const std::string& path, uint64_t bytes) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return Error::from_errno(errno, "create " + path);
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    return Error::from_errno(err, "ftruncate " + path);
  }
  fd.reset();
  // -b 4096: the loop device's block size (mke2fs would pick 1 KiB under 512 MiB); -m 0: the
  // sandbox gets every block; ^resize_inode,sparse_super2: no reserved growth area and
  // two superblock backups instead of dozens (together, ~160 KiB instead of ~4 MiB of data).
  auto r = run_program({"mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-L", "brig", "-O", "^resize_inode,sparse_super2", "-E",
                        "lazy_itable_init=1,lazy_journal_init=1,nodiscard", path});
  if (!r) {
    ::unlink(path.c_str());
    if (r.error().is(errc::unsupported))
      return Error::make(errc::unsupported, "mkfs.ext4 is not installed (apt-get install e2fsprogs)");
    return r.error().wrap("format a sandbox disk");
  }
  return ok();
}

Result<> copy_sparse_file(const std::string& from, const std::string& to) {
  Fd in(::open(from.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in) return Error::from_errno(errno, "open " + from);
  struct stat st;
  if (::fstat(in.get(), &st) != 0) return Error::from_errno(errno, "fstat " + from);
  if (!S_ISREG(st.st_mode)) return Error::make(errc::invalid_argument, from + " is not a regular file");
  Fd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out) return Error::from_errno(errno, "create " + to);
  auto fail = [&](int err, const std::string& what) -> Result<> {
    ::unlink(to.c_str());
    return Error::from_errno(err, what);
  };
  if (::ftruncate(out.get(), st.st_size) != 0) return fail(errno, "ftruncate " + to);
  off_t pos = 0;
  while (pos < st.st_size) {
    off_t data = ::lseek(in.get(), pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      return fail(errno, "lseek(SEEK_DATA) " + from);
    }
    off_t hole = ::lseek(in.get(), data, SEEK_HOLE);
    if (hole < 0) return fail(errno, "lseek(SEEK_HOLE) " + from);
    loff_t src = data, dst = data;
    while (src < hole) {
      ssize_t n = ::copy_file_range(in.get(), &src, out.get(), &dst, static_cast<size_t>(hole - src), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail(errno, "copy_file_range " + from);
      if (n == 0) break;
    }
    pos = hole;
  }
  return ok();
}

uint64_t allocated_bytes(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

bool loop_attached(const std::string& image) {
  DIR* d = ::opendir("/sys/block");
  if (!d) return false;
  bool found = false;
  while (auto* e = ::readdir(d)) {
    if (std::strncmp(e->d_name, "loop", 4) != 0) continue;
    char path[64];
    std::snprintf(path, sizeof path, "/sys/block/%.20s/loop/backing_file", e->d_name);
    Fd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd) continue;  // not bound
    char buf[PATH_MAX + 16];
    ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
    if (n <= 0) continue;
    std::string_view backing(buf, static_cast<size_t>(n));
    while (!backing.empty() && backing.back() == '\n') backing.remove_suffix(1);
    if (backing == image) {
      found = true;
      break;
    }
  }
  ::closedir(d);
  return found;
}

Result<LoopDevice> attach_loop(const std::string& image) {
  Fd backing(::open(image.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  if (!backing) return Error::from_errno(errno, "open " + image);
  struct stat st;
  if (::fstat(backing.get(), &st) != 0) return Error::from_errno(errno, "fstat " + image);
  if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 077))
    return Error::make(errc::invalid_argument, image + " is not a root-only regular file");
  Fd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control) return Error::from_errno(errno, "open /dev/loop-control");
  // Creates in parallel may be handed the same free device: the loser's LOOP_CONFIGURE is EBUSY
  // and it asks again.
  for (int attempt = 0; attempt < 64; ++attempt) {
    int n = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (n < 0) return Error::from_errno(errno, "ioctl(LOOP_CTL_GET_FREE)");
    std::string path = "/dev/loop" + std::to_string(n);
    Fd dev(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!dev) {
      if (errno == ENOENT || errno == ENXIO) continue;  // udev-less hosts: the node is racing into being
      return Error::from_errno(errno, "open " + path);
    }
    struct loop_config config;
    std::memset(&config, 0, sizeof config);
    config.fd = static_cast<uint32_t>(backing.get());
    config.block_size = 4096;
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
    std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), "brig-disk", LO_NAME_SIZE - 1);
    int rc = ::ioctl(dev.get(), LOOP_CONFIGURE, &config);
    if (rc != 0 && errno == EINVAL) {  // no direct I/O on this host filesystem (tmpfs)
      config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
      config.block_size = 0;
      rc = ::ioctl(dev.get(), LOOP_CONFIGURE, &config);
    }
    if (rc == 0) return LoopDevice{std::move(dev), std::move(path)};
    if (errno != EBUSY) return Error::from_errno(errno, "ioctl(" + path + ", LOOP_CONFIGURE)");
  }
  return Error::make(errc::unavailable, "no free loop device after 64 attempts");
}

}  // namespace brig::isolate
