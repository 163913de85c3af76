#include "init/file_ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <linux/limits.h>

#include <cstring>
#include <vector>

#include "init/spawn.h"
#include "sys/syscalls.h"

namespace brig::init {
namespace {

thread_local const char* g_home = "/home/user";
// What file metadata is read back (set_metadata_limits); the configuration's defaults until then.
initpb::InitLimits g_metadata = [] {
  initpb::InitLimits l;
  config::Limits defaults;
  l.set_metadata_entries(defaults.metadata_entries);
  l.set_metadata_key_bytes(defaults.metadata_key_bytes);
  l.set_metadata_value_bytes(defaults.metadata_value_bytes);
  return l;
}();

constexpr uint64_t kResolve = RESOLVE_NO_MAGICLINKS;

Result<Fd> resolve(const std::string& path, uint64_t flags, uint64_t mode = 0) {
  struct open_how how = {};
  // openat2 rejects flags that make no sense for O_PATH (e.g. O_NOCTTY) instead of ignoring them.
  how.flags = flags | O_CLOEXEC | ((flags & O_PATH) ? 0 : O_NOCTTY);
  how.mode = mode;
  how.resolve = kResolve;
  Fd fd(sys::openat2(AT_FDCWD, path.c_str(), &how));
  if (!fd) {
    // ELOOP here means a magic link (e.g. /proc/self/fd/N) was refused.
    return Error::from_errno(errno, "open '" + path + "'");
  }
  return fd;
}

std::pair<std::string, std::string> split_parent(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return {".", path};
  if (slash == 0) return {"/", path.substr(1)};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

Result<std::string> normalise(const std::string& raw) {
  if (raw.size() > 4096) return Error::make(errc::invalid_argument, "path too long");
  if (raw.find('\0') != std::string::npos) return Error::make(errc::invalid_argument, "path contains NUL");
  std::string p = expand_path(raw, g_home);
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

initpb::FileType type_of(mode_t m) {
  if (S_ISREG(m)) return initpb::FILE_TYPE_FILE;
  if (S_ISDIR(m)) return initpb::FILE_TYPE_DIR;
  if (S_ISLNK(m)) return initpb::FILE_TYPE_SYMLINK;
  return initpb::FILE_TYPE_OTHER;
}

// File metadata (E2B's upload metadata) lives in user.e2b.* xattrs. Read through an O_PATH
// fd of the entry itself (never following a symlink), named via our own /proc/self/fd link.
// The sandbox user can set user.e2b.* attributes themselves: what is read back is bounded by the
// same limits as what brig writes (entries, key and value sizes); anything larger is skipped.
void read_metadata(int dirfd, const std::string& name, initpb::EntryInfo* e) {
  Fd fd(::openat(dirfd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return;
  const std::string self = "/proc/self/fd/" + std::to_string(fd.get());
  std::vector<char> names(XATTR_LIST_MAX);  // any file's whole list fits
  ssize_t len = ::listxattr(self.c_str(), names.data(), names.size());
  std::vector<char> value(g_metadata.metadata_value_bytes());
  if (value.empty()) return;  // getxattr with size 0 would report sizes, not values
  for (ssize_t i = 0; i < len;) {
    std::string key(names.data() + i);
    i += static_cast<ssize_t>(key.size()) + 1;
    if (!key.starts_with("user.e2b.") || key.size() - 9 > g_metadata.metadata_key_bytes()) continue;
    if (e->metadata_size() >= static_cast<int>(g_metadata.metadata_entries())) break;
    ssize_t n = ::getxattr(self.c_str(), key.c_str(), value.data(), value.size());  // ERANGE: too long, skipped
    if (n >= 0) (*e->mutable_metadata())[key.substr(9)] = std::string(value.data(), static_cast<size_t>(n));
  }
}

void fill(initpb::EntryInfo* e, const std::string& path, const std::string& name, const struct stat& st,
          int dirfd) {
  e->set_name(name);
  e->set_path(path);
  e->set_type(type_of(st.st_mode));
  e->set_size(static_cast<uint64_t>(st.st_size));
  e->set_mode(st.st_mode & 07777);
  e->set_uid(st.st_uid);
  e->set_gid(st.st_gid);
  e->set_mtime_ns(static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec);
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = ::readlinkat(dirfd, name.c_str(), target, sizeof target - 1);
    if (n > 0) e->set_symlink_target(std::string(target, static_cast<size_t>(n)));
    // Followed to the end with the caller's rights, refusing magic links (a link into
    // /proc/self/fd must not describe brig-init's own fds); the kernel names what it reached.
    struct open_how how = {};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = kResolve;
    Fd to(sys::openat2(dirfd, name.c_str(), &how));
    struct stat tst;
    if (to && ::fstat(to.get(), &tst) == 0) {
      const std::string self = "/proc/self/fd/" + std::to_string(to.get());
      ssize_t m = ::readlink(self.c_str(), target, sizeof target - 1);
      if (m > 0) {
        e->set_resolved_target(std::string(target, static_cast<size_t>(m)));
        e->set_target_type(type_of(tst.st_mode));
        e->set_target_mode(tst.st_mode & 07777);
      }
    }
  } else if (S_ISREG(st.st_mode)) {
    read_metadata(dirfd, name, e);
  }
}

// lstat of `path`: the parent is resolved (refusing magic links), the last component is not
// followed.
Result<initpb::EntryInfo> lstat_entry(const std::string& path) {
  auto [parent, name] = split_parent(path);
  BRIG_TRY_ASSIGN(dir, resolve(parent, O_PATH | O_DIRECTORY));
  struct stat st;
  const char* leaf = name.empty() ? "" : name.c_str();
  int flags = AT_SYMLINK_NOFOLLOW | (name.empty() ? AT_EMPTY_PATH : 0);
  if (::fstatat(dir.get(), leaf, &st, flags) != 0) return Error::from_errno(errno, "stat '" + path + "'");
  initpb::EntryInfo e;
  fill(&e, path, name.empty() ? "/" : name, st, dir.get());
  return e;
}

Result<> list_into(int dirfd, const std::string& base, uint32_t depth, initpb::Listing* out) {
  Fd dup_fd(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dup_fd) return Error::from_errno(errno, "open '" + base + "'");
  DIR* d = ::fdopendir(dup_fd.release());
  if (!d) return Error::from_errno(errno, "fdopendir");
  Result<> result = ok();
  while (struct dirent* ent = ::readdir(d)) {
    if (!std::strcmp(ent->d_name, ".") || !std::strcmp(ent->d_name, "..")) continue;
    if (out->entries_size() >= static_cast<int>(kMaxListEntries)) {
      out->set_truncated(true);
      break;
    }
    struct stat st;
    if (::fstatat(::dirfd(d), ent->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    std::string path = base == "/" ? "/" + std::string(ent->d_name) : base + "/" + ent->d_name;
    fill(out->add_entries(), path, ent->d_name, st, ::dirfd(d));
    // Never descend through symlinks: depth listing stays in the tree it started in.
    if (depth > 1 && S_ISDIR(st.st_mode)) {
      Fd sub(::openat(::dirfd(d), ent->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub) (void)list_into(sub.get(), path, depth - 1, out);
    }
  }
  ::closedir(d);
  return result;
}

Result<> remove_tree_at(int dirfd, const char* name, int level) {
  if (::unlinkat(dirfd, name, 0) == 0) return ok();
  if (errno != EISDIR && errno != EPERM) return Error::from_errno(errno, std::string("unlink '") + name + "'");
  if (level > 256) return Error::make(errc::limit_exceeded, "directory nesting too deep");
  Fd sub(::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!sub) return Error::from_errno(errno, std::string("open '") + name + "'");
  DIR* d = ::fdopendir(sub.release());
  if (!d) return Error::from_errno(errno, "fdopendir");
  Result<> result = ok();
  while (struct dirent* ent = ::readdir(d)) {
    if (!std::strcmp(ent->d_name, ".") || !std::strcmp(ent->d_name, "..")) continue;
    if (auto r = remove_tree_at(::dirfd(d), ent->d_name, level + 1); !r) {
      result = r;
      break;
    }
  }
  ::closedir(d);
  BRIG_TRY(result);
  if (::unlinkat(dirfd, name, AT_REMOVEDIR) != 0) return Error::from_errno(errno, std::string("rmdir '") + name + "'");
  return ok();
}

}  // namespace

void set_metadata_limits(const initpb::InitLimits& limits) { g_metadata = limits; }

FsCreds::FsCreds(initpb::User user) {
  UserIds ids = ids_for(user);
  g_home = ids.home;
  // setfsuid to non-zero clears the filesystem capabilities from the effective set, so
  // permission checks are exactly those of the user; files created are owned by them.
  ::setfsgid(ids.gid);
  ::setfsuid(ids.uid);
}

FsCreds::~FsCreds() {
  ::setfsuid(0);
  ::setfsgid(0);
  g_home = "/home/user";
}

Result<initpb::EntryInfo> stat_path(const std::string& raw) {
  BRIG_TRY_ASSIGN(path, normalise(raw));
  return lstat_entry(path);
}

Result<initpb::Listing> list_dir(const std::string& raw, uint32_t depth) {
  BRIG_TRY_ASSIGN(path, normalise(raw));
  if (depth == 0) depth = 1;
  if (depth > kMaxListDepth) return Error::make(errc::invalid_argument, "depth above " + std::to_string(kMaxListDepth));
  BRIG_TRY_ASSIGN(dir, resolve(path, O_RDONLY | O_DIRECTORY));
  initpb::Listing listing;
  BRIG_TRY(list_into(dir.get(), path, depth, &listing));
  return listing;
}

Result<initpb::EntryInfo> make_dirs(const std::string& raw) {
  BRIG_TRY_ASSIGN(path, normalise(raw));
  if (path.empty() || path[0] != '/') return Error::make(errc::invalid_argument, "path must be absolute");
  Fd dir;
  BRIG_TRY_ASSIGN(root, resolve("/", O_PATH | O_DIRECTORY));
  dir = std::move(root);
  bool created = false;
  for (auto& part : std::vector<std::string>([&] {
         std::vector<std::string> parts;
         size_t i = 1;
         while (i <= path.size()) {
           size_t j = path.find('/', i);
           if (j == std::string::npos) j = path.size();
           if (j > i) parts.push_back(path.substr(i, j - i));
           i = j + 1;
         }
         return parts;
       }())) {
    if (part == "..") return Error::make(errc::invalid_argument, "'..' in path");
    if (part == ".") continue;
    if (::mkdirat(dir.get(), part.c_str(), 0755) == 0) created = true;
    else if (errno != EEXIST) return Error::from_errno(errno, "mkdir '" + part + "'");
    struct open_how how = {};
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = kResolve;
    Fd next(sys::openat2(dir.get(), part.c_str(), &how));
    if (!next) return Error::from_errno(errno, "open '" + part + "'");
    dir = std::move(next);
  }
  (void)created;
  return lstat_entry(path);
}

Result<initpb::EntryInfo> move_path(const std::string& raw_from, const std::string& raw_to) {
  BRIG_TRY_ASSIGN(from, normalise(raw_from));
  BRIG_TRY_ASSIGN(to, normalise(raw_to));
  auto [from_parent, from_name] = split_parent(from);
  auto [to_parent, to_name] = split_parent(to);
  if (from_name.empty() || to_name.empty()) return Error::make(errc::invalid_argument, "cannot move /");
  BRIG_TRY_ASSIGN(src_dir, resolve(from_parent, O_PATH | O_DIRECTORY));
  BRIG_TRY(make_dirs(to_parent));
  BRIG_TRY_ASSIGN(dst_dir, resolve(to_parent, O_PATH | O_DIRECTORY));
  if (::renameat(src_dir.get(), from_name.c_str(), dst_dir.get(), to_name.c_str()) != 0)
    return Error::from_errno(errno, "rename '" + from + "' -> '" + to + "'");
  return lstat_entry(to);
}

Result<> remove_path(const std::string& raw) {
  BRIG_TRY_ASSIGN(path, normalise(raw));
  auto [parent, name] = split_parent(path);
  if (name.empty()) return Error::make(errc::invalid_argument, "cannot remove /");
  BRIG_TRY_ASSIGN(dir, resolve(parent, O_PATH | O_DIRECTORY));
  return remove_tree_at(dir.get(), name.c_str(), 0);
}

Result<Fd> open_file(const std::string& raw, bool write, uint32_t mode, initpb::EntryInfo* info) {
  BRIG_TRY_ASSIGN(path, normalise(raw));
  Fd fd;
  if (write) {
    auto [parent, name] = split_parent(path);
    if (name.empty()) return Error::make(errc::invalid_argument, "cannot write to /");
    BRIG_TRY(make_dirs(parent));
    // O_NONBLOCK: opening a FIFO for writing with no reader fails (ENXIO) instead of hanging.
    BRIG_TRY_ASSIGN(f, resolve(path, O_WRONLY | O_CREAT | O_NONBLOCK, mode ? mode & 07777 : 0644));
    fd = std::move(f);
  } else {
    BRIG_TRY_ASSIGN(f, resolve(path, O_RDONLY | O_NONBLOCK));
    fd = std::move(f);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Error::from_errno(errno, "fstat '" + path + "'");
  if (S_ISDIR(st.st_mode)) return Error::from_errno(EISDIR, "open '" + path + "'");
  if (!S_ISREG(st.st_mode)) return Error::make(errc::invalid_argument, "'" + path + "' is not a regular file");
  if (write && ::ftruncate(fd.get(), 0) != 0) return Error::from_errno(errno, "truncate '" + path + "'");
  int fl = ::fcntl(fd.get(), F_GETFL);
  ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
  if (info) {
    auto [parent, name] = split_parent(path);
    info->set_name(name);
    info->set_path(path);
    info->set_type(initpb::FILE_TYPE_FILE);
    info->set_size(static_cast<uint64_t>(st.st_size));
    info->set_mode(st.st_mode & 07777);
    info->set_uid(st.st_uid);
    info->set_gid(st.st_gid);
    info->set_mtime_ns(static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec);
  }
  return fd;
}

Result<Fd> open_dir_path(const std::string& raw) {
  BRIG_TRY_ASSIGN(path, normalise(raw));
  return resolve(path, O_PATH | O_DIRECTORY);
}

}  // namespace brig::init
