// Directory archives (tar.gz, zip) made and unpacked inside a sandbox by libarchive, in a child
// of brig-init that has become the requested user: it reads and writes only what that user
// could, and nothing of the host is in its mount namespace.
//
// Export stores symbolic links as links (never followed) and skips sockets; import refuses, before
// writing anything, an archive with an entry that would land outside the target directory
// (absolute, "..", a hard link) or a device node, and then extracts with libarchive's secure
// flags (no path through a symlink on disk).
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "base/fd.h"
#include "base/result.h"
#include "config/config.h"
#include "init.pb.h"

namespace brig::init {

enum class ArchiveFormat { tar_gz, zip };
Result<ArchiveFormat> parse_archive_format(const std::string& name);  // "tar.gz" | "tgz" | "zip"

struct ArchiveLimits {
  uint64_t max_bytes = 1ull << 30;  // file content (export) or the archive itself (import)
  uint32_t max_entries = config::Limits{}.archive_entries;
  uint64_t max_unpacked_bytes = config::Limits{}.archive_unpacked_bytes;  // import: what it may unpack to
};

// The read end of a pipe that yields one JSON line ({"ok":true,"entries":N,"bytes":B} or
// {"ok":false,"code":"not_found|too_large|…","error":…}), then, if ok, the archive of `path`.
// An archive cut short (the tree grew past a limit meanwhile) ends without its trailer.
Result<Fd> start_export(const std::string& path, initpb::User user, ArchiveFormat format, ArchiveLimits limits);

// [the write end for the archive bytes, the read end of the one-line JSON result]. The archive
// is unpacked into directory `dir` (created if missing) once the write end is closed.
Result<std::pair<Fd, Fd>> start_import(const std::string& dir, initpb::User user, ArchiveFormat format,
                                       ArchiveLimits limits);

}  // namespace brig::init
