// Directory archives (a brig extension, init/archive.h): a tar.gz or zip of a sandbox path made,
// or unpacked, inside the sandbox as the user by brig-init's archive helper. The typed commands
// that envd's /files/archive and MCP's download_files / upload_files adapt.
//
// The helper runs as the sandbox user, who can stop it: every wait on it is bounded.
//
// Thread safety: free functions; a sandbox serves concurrent archives.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/fd.h"
#include "base/result.h"
#include "core/live.h"

namespace brig::core {

// How long the helper may go without progress (reading, or producing bytes) before brig gives up.
inline constexpr auto kArchiveStall = std::chrono::seconds(60);

struct ArchiveExport {
  Fd fd;  // the archive's bytes, to its end (read with a bounded wait: see kArchiveStall)
  uint64_t entries = 0, bytes = 0;  // what it holds
};

// An archive of `path` as `user`, in `format` ("tar.gz" or "zip"). The helper checks the caps
// (`max_bytes` of file content, `max_entries` entries) before the first byte, so a refusal is an
// error here, not a short archive: errc::not_found (no such path), errc::limit_exceeded (over a
// cap), EACCES (not the user's to read), errc::invalid_argument (a bad path or format).
Result<ArchiveExport> export_archive(Live& live, const std::string& path, sandbox::User user, const std::string& format,
                                     uint64_t max_bytes, uint32_t max_entries);

struct ArchiveImport {
  std::string path;  // the directory unpacked into, as the sandbox resolved it
  uint64_t entries = 0, bytes = 0;
};

// Unpacks `archive` (`format`) into directory `dir` (created) as `user`. Every entry is checked
// before anything is written: one that would land outside `dir`, a hard link or a device node
// is errc::invalid_argument, and so is an archive that is not one; an archive larger than
// `max_bytes` or with more than `max_entries` entries is errc::limit_exceeded.
Result<ArchiveImport> import_archive(Live& live, const std::string& dir, sandbox::User user, const std::string& format,
                                     std::string_view archive, uint64_t max_bytes, uint32_t max_entries);

}  // namespace brig::core
