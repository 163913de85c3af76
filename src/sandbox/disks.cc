#include "sandbox/disks.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include "base/util.h"
#include "isolate/disk.h"

namespace brig::sandbox {
namespace {

constexpr size_t kMaxBlanks = 16;  // sizes in use at once; an older one is formatted again if needed
// Names the mkfs recipe (isolate::format_disk_image): bump it when the recipe changes, and the
// blanks of the old one are deleted at open.
constexpr std::string_view kBlankRecipe = "ext4-4k-";

Result<> make_private_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Error::from_errno(errno, "mkdir(" + dir + ")");
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) return Error::from_errno(errno, "lstat(" + dir + ")");
  if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 077))
    return Error::make(errc::invalid_argument, dir + " must be a root-only directory");
  return ok();
}

std::vector<std::string> names_with_suffix(const std::string& dir, std::string_view suffix) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (auto* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (e->d_type == DT_REG && name.size() > suffix.size() && name.ends_with(suffix))
      out.emplace_back(name.substr(0, name.size() - suffix.size()));
  }
  ::closedir(d);
  return out;
}

}  // namespace

Result<std::unique_ptr<DiskImages>> DiskImages::open(const std::string& dir, uint64_t reserve_bytes) {
  BRIG_TRY(make_private_dir(dir));
  BRIG_TRY(make_private_dir(dir + "/blank"));
  for (auto& name : names_with_suffix(dir + "/blank", ".img"))
    if (!name.starts_with(kBlankRecipe)) ::unlink((dir + "/blank/" + name + ".img").c_str());
  return std::unique_ptr<DiskImages>(new DiskImages(dir, reserve_bytes));
}

Result<std::string> DiskImages::blank(uint64_t bytes) {
  const std::string path = dir_ + "/blank/" + std::string(kBlankRecipe) + std::to_string(bytes) + ".img";
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) return path;
  std::lock_guard lock(blank_mu_);
  if (::lstat(path.c_str(), &st) == 0) return path;
  auto blanks = names_with_suffix(dir_ + "/blank", ".img");
  if (blanks.size() >= kMaxBlanks) {  // the least recently made goes
    std::string oldest;
    int64_t oldest_at = INT64_MAX;
    for (auto& b : blanks) {
      struct stat bs;
      const std::string p = dir_ + "/blank/" + b + ".img";
      if (::lstat(p.c_str(), &bs) == 0 && bs.st_mtime < oldest_at) oldest_at = bs.st_mtime, oldest = p;
    }
    if (!oldest.empty()) ::unlink(oldest.c_str());
  }
  // Formatted aside and renamed: a crash mid-mkfs leaves no half-made blank behind a valid name.
  const std::string tmp = dir_ + "/blank/." + random_hex(8) + ".tmp";
  BRIG_TRY(isolate::format_disk_image(tmp, bytes));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Error::from_errno(err, "rename(" + path + ")");
  }
  return path;
}

Result<std::string> DiskImages::create(const std::string& id, uint64_t bytes) {
  if (!is_valid_sandbox_id(id)) return Error::make(errc::invalid_argument, "bad sandbox id for a disk");
  struct statvfs vfs;
  if (reserve_bytes_ && ::statvfs(dir_.c_str(), &vfs) == 0) {
    const uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    if (free_bytes < reserve_bytes_)
      return Error::make(errc::unavailable, "the host's disk has " + format_size(free_bytes) + " free under " + dir_ +
                                                ", below sandbox.host_disk_reserve_mib (" +
                                                format_size(reserve_bytes_) + "): no new sandbox disk until space returns");
  }
  BRIG_TRY_ASSIGN(from, blank(bytes));
  const std::string path = path_of(id);
  ::unlink(path.c_str());  // a leftover of an earlier sandbox with this id (ids are random: never in practice)
  BRIG_TRY(isolate::copy_sparse_file(from, path));
  return path;
}

bool DiskImages::exists(const std::string& id) const {
  struct stat st;
  return is_valid_sandbox_id(id) && ::lstat(path_of(id).c_str(), &st) == 0;
}

void DiskImages::remove(const std::string& id) const {
  if (is_valid_sandbox_id(id)) ::unlink(path_of(id).c_str());
}

Result<> DiskImages::wait_released(const std::string& id, std::chrono::milliseconds timeout) const {
  const std::string path = path_of(id);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (isolate::loop_attached(path)) {
    if (std::chrono::steady_clock::now() >= deadline)
      return Error::make(errc::unavailable, "the disk of sandbox " + id + " is still in use by a loop device");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return ok();
}

std::vector<std::string> DiskImages::list() const {
  auto ids = names_with_suffix(dir_, ".img");
  std::erase_if(ids, [](const std::string& id) { return !is_valid_sandbox_id(id); });
  return ids;
}

uint64_t DiskImages::used_bytes(const std::string& id) const {
  return is_valid_sandbox_id(id) ? isolate::allocated_bytes(path_of(id)) : 0;
}

}  // namespace brig::sandbox
