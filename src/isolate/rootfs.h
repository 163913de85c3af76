// The sandbox's filesystem: an overlay of the template tree (read-only, idmapped to the
// sandbox's uid range, shared by every sandbox of the template) and an upper on the sandbox's
// own disk (isolate/disk.h), whose size is the quota; then fresh /proc, a minimal /dev, and pivot_root.
//
// prepare_* runs in the zygote (host root): it builds the overlay as a detached mount.
// apply_* runs in the sandbox's first process, inside its new namespaces, before anything of
// the sandbox runs: async-signal-safe, no allocation.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "isolate/step.h"

namespace brig::isolate {

struct RootfsSpec {
  std::vector<std::string> layers;  // host paths, topmost first; owned by host root, never written
  uint32_t uid_base = 0;            // host uid of sandbox root
  std::string disk_image;           // the sandbox's disk (isolate/disk.h): holds upper/ and work/
  std::string upper_dir;            // instead (builds): a host dir holding upper/ and work/
};

// Builds the overlay mount for the process `pid` (already in its user namespace) and returns
// it as a detached mount fd. The caller passes it to the child (SCM_RIGHTS) and closes its copy.
[[nodiscard]] Result<Fd> prepare_rootfs(pid_t pid, const RootfsSpec& spec);

struct ApplyRootfsArgs {
  int overlay_fd;           // from prepare_rootfs
  int mount_point_fd;       // O_PATH fd of an empty host directory, opened in this mount
                            // namespace; the mount on it exists only here
  uint64_t shm_bytes;
};

// In the child: make every mount private, attach the overlay, mount /proc and /dev, pivot_root
// and detach the host's tree. Afterwards no host path is reachable.
StepResult apply_rootfs(const ApplyRootfsArgs& args);

// In the child: bring up loopback in the (new) network namespace, by ioctl, not `ip`.
StepResult apply_loopback_up();

}  // namespace brig::isolate
