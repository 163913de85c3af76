// Zygote: a small single-threaded process forked when the engine starts (before any thread
// exists), which clones every sandbox's brig-init on request. Cloning from a multi-threaded
// daemon would inherit locks held by other threads; cloning from the zygote cannot.
//
// Per request the zygote: clone3()s the init with fresh user, mount, pid, ipc, uts and net
// namespaces (into its cgroup on v2); places it in its cgroups (v1); writes its id maps;
// builds its overlay rootfs as a detached mount and hands it over; waits until the init
// reports that its rootfs, loopback, privileges and seccomp are in place; then returns the
// init's pidfd and the control channel. It parents (and auto-reaps) every init.
//
// Thread safety: create() is serialised internally.
//
// The zygote is this same program re-exec'd (see start()); every main() that can open an
// Engine calls run_zygote_if_requested(argc, argv) first, which runs the zygote and never
// returns when the process was started as one.
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "init.pb.h"
#include "policy/seccomp_policy.h"

namespace brig::sandbox {

class Zygote {
 public:
  // Forks the zygote and execs it from a sealed memfd copy of this program; it compiles the
  // seccomp policy and reports ready. The program's main() must call run_zygote_if_requested.
  static Result<std::unique_ptr<Zygote>> start();
  ~Zygote();

  struct Created {
    pid_t init_pid = 0;
    Fd pidfd;
    Fd control;
  };
  // `cgroup_fds`: cgroup.procs fds (v1) or one cgroup dir fd (v2), as the request says.
  Result<Created> create(const initpb::ZygoteRequest& request, std::vector<Fd> cgroup_fds);

 private:
  Zygote(pid_t pid, Fd sock) : pid_(pid), sock_(std::move(sock)) {}
  pid_t pid_;
  Fd sock_;
  std::mutex mu_;
};

}  // namespace brig::sandbox
