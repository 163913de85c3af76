// Capabilities of sandbox processes. `user` processes end with none at all (empty bounding,
// permitted, effective and ambient sets). Root-in-the-sandbox keeps a short list that
// package managers need, all scoped to the sandbox's user namespace; CAP_SYS_ADMIN,
// CAP_NET_ADMIN, CAP_SYS_PTRACE and the rest are gone from the bounding set.
#pragma once

#include <cstdint>

#include "isolate/step.h"

namespace brig::isolate {

// The capability set root-in-the-sandbox keeps (Docker's default list minus NET_RAW/MKNOD).
uint64_t sandbox_root_caps();

// In a child about to exec: drop the bounding set to `keep` and clear ambient caps.
StepResult apply_bounding_set(uint64_t keep);
// After setuid: set effective = permitted = `caps` (inheritable empty).
StepResult apply_caps(uint64_t caps);

}  // namespace brig::isolate
