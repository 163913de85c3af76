// The sandboxes' disks (isolate/disk.h) in <state>/disks: one sparse ext4 image per sandbox,
// <id>.img, copied from a blank image of its size (blank/<recipe><bytes>.img, formatted once),
// and removed with the sandbox, or by the reaper when its sandbox is gone.
//
// Disks are thin: a 10 GiB disk holds ~160 KiB of the host's disk until the sandbox writes. So
// that the sum of what sandboxes may write cannot fill the host's disk unnoticed, a create is
// refused (errc::unavailable) while the host's free space there is below a reserve.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/result.h"

namespace brig::sandbox {

class DiskImages {
 public:
  // Creates `dir` (root-only) if needed.
  static Result<std::unique_ptr<DiskImages>> open(const std::string& dir, uint64_t reserve_bytes);

  // A new disk of `bytes` for sandbox `id`; returns its path.
  Result<std::string> create(const std::string& id, uint64_t bytes);
  std::string path_of(const std::string& id) const { return dir_ + "/" + id + ".img"; }
  bool exists(const std::string& id) const;
  // Removes the disk of `id` (a sandbox whose processes are gone; its loop device detaches by
  // itself once the last mount goes). A missing disk is not an error.
  void remove(const std::string& id) const;
  // Waits (bounded) until no loop device holds the disk of `id` any more; errc::unavailable
  // if one still does.
  Result<> wait_released(const std::string& id, std::chrono::milliseconds timeout) const;
  // The ids that have a disk.
  std::vector<std::string> list() const;
  // Bytes of the host's disk the image uses: what the sandbox wrote, plus the filesystem's own.
  uint64_t used_bytes(const std::string& id) const;

 private:
  DiskImages(std::string dir, uint64_t reserve_bytes) : dir_(std::move(dir)), reserve_bytes_(reserve_bytes) {}
  Result<std::string> blank(uint64_t bytes);

  const std::string dir_;
  const uint64_t reserve_bytes_;
  std::mutex blank_mu_;  // one mkfs at a time; creates of a size that has its blank do not wait
};

}  // namespace brig::sandbox
