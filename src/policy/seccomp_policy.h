// The baseline seccomp policy every sandbox process runs under (brig-init included).
//
// Default allow, with a reviewed deny list: each rule names the syscall and why it is denied.
// Only the native x86_64 ABI is accepted: i386 (int 0x80) and x32 calls kill the process.
// The policy is compiled once (in the parent) to a BPF program and installed in the child
// with a single seccomp(2) call, so the create path never runs libseccomp.
#pragma once

#include <linux/filter.h>

#include <string>
#include <vector>

#include "base/result.h"

namespace brig::policy {

struct SeccompRule {
  const char* syscall;
  int errno_value;   // returned to the caller; 0 = kill the process
  const char* why;
};

// The rules of the baseline policy, for review and for `brig doctor`.
const std::vector<SeccompRule>& baseline_rules();

// A compiled BPF program (what seccomp(SECCOMP_SET_MODE_FILTER) takes).
struct SeccompProgram {
  std::vector<struct sock_filter> filter;
  struct sock_fprog as_fprog() const {
    return {static_cast<unsigned short>(filter.size()), const_cast<struct sock_filter*>(filter.data())};
  }
};

[[nodiscard]] Result<SeccompProgram> compile_baseline_policy();

}  // namespace brig::policy
