#include "policy/seccomp_build.h"

#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "base/fd.h"

namespace brig::policy::build {

Result<Ctx> new_filter(uint32_t default_action) {
  Ctx ctx(seccomp_init(default_action));
  if (!ctx) return Error::make(errc::unsupported, "seccomp_init failed");
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc < 0)
    return Error::from_errno(-rc, "seccomp_attr_set(BADARCH)");
  (void)seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
  return ctx;
}

Result<> add(scmp_filter_ctx ctx, uint32_t action, int nr, std::initializer_list<scmp_arg_cmp> args, const char* what) {
  int rc = seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(args.size()), args.size() ? args.begin() : nullptr);
  if (rc < 0) return Error::from_errno(-rc, std::string("seccomp_rule_add(") + what + ")");
  return ok();
}

Result<SeccompProgram> export_program(scmp_filter_ctx ctx, const char* name) {
  Fd mem(memfd_create(name, MFD_CLOEXEC));
  if (!mem) return Error::from_errno(errno, "memfd_create");
  if (int rc = seccomp_export_bpf(ctx, mem.get()); rc < 0) return Error::from_errno(-rc, "seccomp_export_bpf");
  off_t size = lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % sizeof(struct sock_filter) != 0)
    return Error::make(errc::protocol, "seccomp_export_bpf produced a malformed program");
  SeccompProgram prog;
  prog.filter.resize(static_cast<size_t>(size) / sizeof(struct sock_filter));
  if (pread(mem.get(), prog.filter.data(), static_cast<size_t>(size), 0) != size)
    return Error::from_errno(errno, "pread(seccomp bpf)");
  if (prog.filter.size() > BPF_MAXINSNS) return Error::make(errc::limit_exceeded, "seccomp program exceeds BPF_MAXINSNS");
  return prog;
}

}  // namespace brig::policy::build
