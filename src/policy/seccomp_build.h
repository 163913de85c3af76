// What the policy library's two filters (the sandboxes' baseline, brig egress's allow list)
// share: a libseccomp context made the same way, one rule added with its error said, and the
// compiled BPF read back as a SeccompProgram. Internal to src/policy.
#pragma once

#include <seccomp.h>

#include <initializer_list>
#include <memory>

#include "base/result.h"
#include "policy/seccomp_policy.h"

namespace brig::policy::build {

struct CtxDeleter {
  void operator()(scmp_filter_ctx ctx) const { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

// A context whose default is `default_action`, that kills non-native ABIs (i386 via int 0x80,
// x32: their syscall numbers differ and would slip past every rule), and that does not set
// no_new_privs itself (the BPF is installed with seccomp(2) by the caller).
[[nodiscard]] Result<Ctx> new_filter(uint32_t default_action);

[[nodiscard]] Result<> add(scmp_filter_ctx ctx, uint32_t action, int nr, std::initializer_list<scmp_arg_cmp> args,
                           const char* what);

// libseccomp 2.5 exports BPF only to an fd: through a memfd named `name`, checked against
// BPF_MAXINSNS.
[[nodiscard]] Result<SeccompProgram> export_program(scmp_filter_ctx ctx, const char* name);

}  // namespace brig::policy::build
