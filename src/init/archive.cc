#include "init/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "base/util.h"
#include "init/file_ops.h"
#include "init/spawn.h"
#include "sys/syscalls.h"

namespace brig::init {
namespace {

using json = nlohmann::json;

json failure(const std::string& code, const std::string& message) {
  return {{"ok", false}, {"code", code}, {"error", message}};
}

[[noreturn]] void finish(int fd, const json& status) {
  (void)write_fd_all(fd, status.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", "status");
  ::_exit(status.value("ok", false) ? 0 : 1);
}

// In the child: keeps only `fds` (renumbered 3, 4, ...) and /dev/null as 0-2, so nothing of
// brig-init's (its control channel above all) is reachable from the child.
void keep_only(std::vector<int*> fds) {
  for (int* fd : fds) *fd = ::fcntl(*fd, F_DUPFD, 1000);
  ::brig::sys::close_range(0, 999, 0);
  int null = ::open("/dev/null", O_RDWR);  // lowest free: 0
  if (null == 0) {
    ::dup2(0, 1);
    ::dup2(0, 2);
  }
  int next = 3;
  for (int* fd : fds) {
    ::dup2(*fd, next);
    *fd = next++;
  }
  ::brig::sys::close_range(static_cast<unsigned>(next), ~0u, 0);
}

bool become(initpb::User user, int status_fd) {
  if (!become_user(user)) finish(status_fd, failure("internal", "cannot switch to the sandbox user"));
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  ::umask(022);
  return true;
}

// Walks `name` (relative to the cwd) with libarchive's disk reader: symlinks are entries, not
// followed. `visit` returns false to stop. No user/group name lookups (they would load NSS
// modules from the sandbox's own filesystem).
std::string walk(const std::string& name, const std::function<bool(struct archive*, struct archive_entry*)>& visit) {
  struct archive* disk = archive_read_disk_new();
  archive_read_disk_set_symlink_physical(disk);
  std::string err;
  if (archive_read_disk_open(disk, name.c_str()) != ARCHIVE_OK) {
    err = archive_error_string(disk) ? archive_error_string(disk) : "cannot open";
  } else {
    struct archive_entry* e = archive_entry_new();
    for (;;) {
      int r = archive_read_next_header2(disk, e);
      if (r == ARCHIVE_EOF) break;
      if (r == ARCHIVE_FATAL) {
        err = archive_error_string(disk) ? archive_error_string(disk) : "read error";
        break;
      }
      if (r < ARCHIVE_WARN) continue;  // this entry is unreadable (permissions): skipped
      archive_read_disk_descend(disk);
      if (!visit(disk, e)) break;
    }
    archive_entry_free(e);
  }
  archive_read_free(disk);
  return err;
}

[[noreturn]] void export_child(std::string path, initpb::User user, ArchiveFormat format, ArchiveLimits limits, int out) {
  become(user, out);
  std::string full = expand_path(path, ids_for(user).home);
  while (full.size() > 1 && full.back() == '/') full.pop_back();
  struct stat st;
  if (::lstat(full.c_str(), &st) != 0)
    finish(out, failure(errno == ENOENT ? "not_found" : "forbidden", "cannot read '" + full + "': " + std::strerror(errno)));
  size_t slash = full.rfind('/');
  std::string parent = full == "/" ? "/" : slash == 0 ? "/" : full.substr(0, slash);
  std::string name = full == "/" ? "." : full.substr(slash + 1);
  if (::chdir(parent.c_str()) != 0) finish(out, failure("forbidden", "cannot enter '" + parent + "': " + std::strerror(errno)));

  // Pass 1: the limits, checked before a byte of archive is sent.
  uint64_t bytes = 0;
  uint32_t entries = 0;
  std::string err = walk(name, [&](struct archive*, struct archive_entry* e) {
    ++entries;
    if (archive_entry_filetype(e) == AE_IFREG) bytes += static_cast<uint64_t>(archive_entry_size(e));
    return entries <= limits.max_entries && bytes <= limits.max_bytes;
  });
  if (!err.empty()) finish(out, failure("io", "cannot read '" + full + "': " + err));
  if (entries > limits.max_entries)
    finish(out, failure("too_large", "'" + full + "' has more than " + std::to_string(limits.max_entries) + " entries"));
  if (bytes > limits.max_bytes)
    finish(out, failure("too_large", "'" + full + "' holds more than " + format_size(limits.max_bytes) + " of files"));
  (void)write_fd_all(out, json{{"ok", true}, {"entries", entries}, {"bytes", bytes}}.dump() + "\n", "status");

  // Pass 2: the archive itself.
  struct archive* w = archive_write_new();
  if (format == ArchiveFormat::zip) {
    archive_write_set_format_zip(w);
  } else {
    archive_write_set_format_pax_restricted(w);
    archive_write_add_filter_gzip(w);
  }
  if (archive_write_open_fd(w, out) != ARCHIVE_OK) ::_exit(1);
  uint64_t sent = 0;
  bool over = false;
  err = walk(name, [&](struct archive* disk, struct archive_entry* e) {
    if (archive_entry_filetype(e) == AE_IFSOCK) return true;  // not archivable
    if (archive_write_header(w, e) < ARCHIVE_WARN) return true;
    if (archive_entry_filetype(e) == AE_IFREG && archive_entry_size(e) > 0) {
      char buf[1 << 16];
      la_ssize_t n;
      while ((n = archive_read_data(disk, buf, sizeof buf)) > 0) {
        sent += static_cast<uint64_t>(n);
        if (sent > limits.max_bytes) {
          over = true;  // grew since pass 1: the archive ends without its trailer
          return false;
        }
        archive_write_data(w, buf, static_cast<size_t>(n));
      }
    }
    archive_write_finish_entry(w);
    return true;
  });
  if (over || !err.empty()) ::_exit(1);
  archive_write_close(w);
  archive_write_free(w);
  ::_exit(0);
}

// "./a/b" -> "a/b"; empty when the entry is the archive's root directory.
std::string clean_name(std::string name) {
  while (name.starts_with("./")) name.erase(0, 2);
  while (!name.empty() && name.back() == '/') name.pop_back();
  return name == "." ? "" : name;
}

struct archive* open_reader(ArchiveFormat format, const std::string& data) {
  struct archive* r = archive_read_new();
  if (format == ArchiveFormat::zip) {
    archive_read_support_format_zip(r);
  } else {
    archive_read_support_filter_gzip(r);
    archive_read_support_format_tar(r);
  }
  archive_read_open_memory(r, data.data(), data.size());
  return r;
}

[[noreturn]] void import_child(std::string dir, initpb::User user, ArchiveFormat format, ArchiveLimits limits, int in,
                               int result) {
  become(user, result);
  std::string data;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > limits.max_bytes)
      finish(result, failure("too_large", "the archive is larger than " + format_size(limits.max_bytes)));
  }
  std::string full = expand_path(dir, ids_for(user).home);

  // Pass 1: every entry is checked before anything is written.
  struct archive* r = open_reader(format, data);
  struct archive_entry* e;
  uint32_t entries = 0;
  uint64_t bytes = 0;
  std::set<std::string> links;  // symlinks the archive itself creates
  int rc;
  while ((rc = archive_read_next_header(r, &e)) == ARCHIVE_OK || rc == ARCHIVE_WARN) {
    const char* raw = archive_entry_pathname(e);
    std::string name = clean_name(raw ? raw : "");
    std::string shown = "'" + std::string(raw ? raw : "").substr(0, 200) + "'";
    if (name.starts_with("/")) finish(result, failure("escape", "entry " + shown + " is an absolute path"));
    std::string prefix;
    for (auto& part : split(name, '/')) {
      if (part == "..") finish(result, failure("escape", "entry " + shown + " would land outside " + full));
      if (links.count(prefix + part) && prefix + part != name)
        finish(result, failure("escape", "entry " + shown + " goes through a symlink from the same archive"));
      prefix += part + "/";
    }
    if (archive_entry_hardlink(e)) finish(result, failure("unsupported", "entry " + shown + " is a hard link"));
    auto type = archive_entry_filetype(e);
    if (type == AE_IFLNK) links.insert(name);
    else if (type != AE_IFREG && type != AE_IFDIR)
      finish(result, failure("unsupported", "entry " + shown + " is not a file, directory or symlink"));
    if (++entries > limits.max_entries)
      finish(result, failure("too_large", "the archive has more than " + std::to_string(limits.max_entries) + " entries"));
    bytes += static_cast<uint64_t>(std::max<la_int64_t>(0, archive_entry_size(e)));
    // A zip bomb stops here.
    if (bytes > limits.max_unpacked_bytes)
      finish(result, failure("too_large", "the archive unpacks to more than " + format_size(limits.max_unpacked_bytes)));
    archive_read_data_skip(r);
  }
  if (rc != ARCHIVE_EOF)
    finish(result, failure("bad_archive", std::string("not a valid archive: ") +
                                              (archive_error_string(r) ? archive_error_string(r) : "unreadable")));
  archive_read_free(r);

  // Pass 2: extract with libarchive's own guards as well.
  if (auto made = make_dirs(full); !made) finish(result, failure("forbidden", made.error().message()));
  if (::chdir(full.c_str()) != 0) finish(result, failure("forbidden", "cannot enter '" + full + "': " + std::strerror(errno)));
  r = open_reader(format, data);
  struct archive* w = archive_write_disk_new();
  archive_write_disk_set_options(w, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                        ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
  while ((rc = archive_read_next_header(r, &e)) == ARCHIVE_OK || rc == ARCHIVE_WARN) {
    std::string name = clean_name(archive_entry_pathname(e));
    if (name.empty()) continue;
    archive_entry_set_pathname(e, name.c_str());
    if (archive_write_header(w, e) < ARCHIVE_WARN)
      finish(result, failure("io", "cannot extract '" + name + "': " + (archive_error_string(w) ? archive_error_string(w) : "")));
    const void* block;
    size_t size;
    la_int64_t offset;
    while (archive_read_data_block(r, &block, &size, &offset) == ARCHIVE_OK)
      if (archive_write_data_block(w, block, size, offset) < ARCHIVE_WARN)
        finish(result, failure("io", "cannot write '" + name + "': " + (archive_error_string(w) ? archive_error_string(w) : "")));
    archive_write_finish_entry(w);
  }
  archive_write_close(w);
  archive_write_free(w);
  archive_read_free(r);
  finish(result, {{"ok", true}, {"entries", entries}, {"bytes", bytes}, {"path", full}});
}

}  // namespace

Result<ArchiveFormat> parse_archive_format(const std::string& name) {
  if (name == "tar.gz" || name == "tgz" || name.empty()) return ArchiveFormat::tar_gz;
  if (name == "zip") return ArchiveFormat::zip;
  return Error::make(errc::invalid_argument, "format must be tar.gz or zip, not '" + name.substr(0, 32) + "'");
}

Result<Fd> start_export(const std::string& path, initpb::User user, ArchiveFormat format, ArchiveLimits limits) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Error::from_errno(errno, "pipe2");
  Fd r(p[0]), w(p[1]);
  pid_t pid = ::fork();
  if (pid < 0) return Error::from_errno(errno, "fork");
  if (pid == 0) {
    int out = w.release();
    keep_only({&out});
    export_child(path, user, format, limits, out);
  }
  return r;
}

Result<std::pair<Fd, Fd>> start_import(const std::string& dir, initpb::User user, ArchiveFormat format,
                                       ArchiveLimits limits) {
  int a[2], b[2];
  if (::pipe2(a, O_CLOEXEC) != 0) return Error::from_errno(errno, "pipe2");
  Fd data_r(a[0]), data_w(a[1]);
  if (::pipe2(b, O_CLOEXEC) != 0) return Error::from_errno(errno, "pipe2");
  Fd res_r(b[0]), res_w(b[1]);
  pid_t pid = ::fork();
  if (pid < 0) return Error::from_errno(errno, "fork");
  if (pid == 0) {
    int in = data_r.release(), out = res_w.release();
    keep_only({&in, &out});
    import_child(dir, user, format, limits, in, out);
  }
  return std::make_pair(std::move(data_w), std::move(res_r));
}

}  // namespace brig::init
