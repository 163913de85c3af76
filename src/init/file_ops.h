// File operations inside the sandbox (brig-init side), as the requested user.
//
// Paths are resolved by the kernel in the sandbox's mount namespace (brig-init's root is the
// sandbox root), with openat2(RESOLVE_NO_MAGICLINKS): a symlink planted in the sandbox that
// points at /proc/self/fd/N or /proc/1/root is refused instead of followed. Reads and writes
// refuse anything but regular files (a FIFO would block, a device could be anything).
#pragma once

#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "config/config.h"
#include "init.pb.h"

namespace brig::init {

inline constexpr size_t kMaxListEntries = 10'000;
inline constexpr uint32_t kMaxListDepth = 32;

// Bounds on the file metadata read back into EntryInfo (metadata_* of `limits`); brig-init
// sets them once at start.
void set_metadata_limits(const initpb::InitLimits& limits);

// Switches filesystem credentials (setfsuid/setfsgid) for the lifetime of the object.
class FsCreds {
 public:
  explicit FsCreds(initpb::User user);
  ~FsCreds();
  FsCreds(const FsCreds&) = delete;
  FsCreds& operator=(const FsCreds&) = delete;
};

Result<initpb::EntryInfo> stat_path(const std::string& path);
Result<initpb::Listing> list_dir(const std::string& path, uint32_t depth);
Result<initpb::EntryInfo> make_dirs(const std::string& path);
Result<initpb::EntryInfo> move_path(const std::string& from, const std::string& to);
Result<> remove_path(const std::string& path);
// Opens a regular file for reading, or creates/truncates one (and its parents) for writing.
Result<Fd> open_file(const std::string& path, bool write, uint32_t mode, initpb::EntryInfo* info);
// An O_PATH fd of a directory, for inotify.
Result<Fd> open_dir_path(const std::string& path);

}  // namespace brig::init
