// User namespace id maps. As root, sandbox ids 0..65535 map to [base, base + 65536), a host
// range no other sandbox and no host user has: root in the sandbox is never root on the host.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "base/result.h"

namespace brig::isolate {

inline constexpr uint32_t kIdsPerSandbox = 65536;
// Ranges start at 2^30 (far above login and system users, subuid ranges usually start at 100000).
inline constexpr uint32_t kFirstSandboxUid = 1u << 30;
inline constexpr uint32_t kMaxSandboxSlots = 16384;
inline uint32_t uid_base_for_slot(uint32_t slot) { return kFirstSandboxUid + slot * kIdsPerSandbox; }

// Parent side: writes uid_map and gid_map of `pid` (which must already be in its new userns).
[[nodiscard]] Result<> write_id_maps(pid_t pid, uint32_t base);

}  // namespace brig::isolate
