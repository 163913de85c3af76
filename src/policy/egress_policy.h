// The seccomp policy of brig-egress (src/egress), the process that parses sandboxes' TLS
// ClientHellos, HTTP heads and DNS messages. Unlike the sandbox baseline (a deny list), this is an
// allowlist: once its sockets are bound and it has become an unprivileged user, the proxy only
// waits, reads, writes, splices, accepts, connects and allocates. Anything else kills it (the
// sandboxes' connections then fail closed); open/openat fail with EACCES instead, so a library
// that looks for a file late gets an error rather than ending the process.
#pragma once

#include "base/result.h"
#include "policy/seccomp_policy.h"

namespace brig::policy {

struct AllowedSyscall {
  const char* syscall;
  const char* why;
};

// The syscalls brig-egress may make, each with the reason it needs it.
const std::vector<AllowedSyscall>& egress_allowed_syscalls();

// The compiled allowlist (socket(2) only for AF_INET and AF_INET6; the x86_64 ABI only).
[[nodiscard]] Result<SeccompProgram> compile_egress_policy();

// Installs `prog` on every thread of the calling process (no_new_privs must be set).
[[nodiscard]] Result<> install_seccomp(const SeccompProgram& prog);

}  // namespace brig::policy
