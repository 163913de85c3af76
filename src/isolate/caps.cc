#include "isolate/caps.h"

#include <linux/capability.h>
#include <initializer_list>
#include <sys/prctl.h>

#include "sys/syscalls.h"

namespace brig::isolate {

uint64_t sandbox_root_caps() {
  uint64_t caps = 0;
  for (int c : {CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_KILL, CAP_SETGID,
                CAP_SETUID, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_AUDIT_WRITE,
                CAP_SETFCAP})
    caps |= 1ull << c;
  return caps;
}

StepResult apply_bounding_set(uint64_t keep) {
  for (int c = 0; c <= CAP_LAST_CAP; ++c) {
    if (keep & (1ull << c)) continue;
    if (::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL)
      return StepResult::fail("prctl(PR_CAPBSET_DROP)");
  }
  BRIG_STEP(::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  return StepResult::ok();
}

StepResult apply_caps(uint64_t caps) {
  BRIG_STEP(sys::capset_all(caps, caps, 0), "capset");
  return StepResult::ok();
}

}  // namespace brig::isolate
