// Zygote: a small single-threaded process forked when the engine starts (before any thread
// exists), which clones every sandbox's brig-init on request. Cloning from a multi-threaded
// daemon would inherit locks held by other threads; cloning from the zygote cannot.
//
// Per request the zygote clone3()s the init with fresh user, mount, pid, ipc, uts and net
// namespaces (into its cgroup on v2) and its pidfd; the zygote is its parent (and auto-reaps it).
// It then forks a helper (a copy of itself, still single-threaded) that places the init in its
// cgroups (v1), writes its id maps, builds its overlay rootfs as a detached mount and hands it
// over, waits until the init reports that its rootfs, loopback, privileges and seccomp are in
// place, and answers with the init's pidfd and the control channel, which the zygote passes
// on. The clone stays in the zygote because a fork child need not be single-threaded (TSan's
// runtime starts a thread in each), and cloning from a process with two threads copies any lock
// the other one held. Creates of different sandboxes thus run side by side; requests and
// answers carry an id.
//
// Thread safety: create() may be called from any number of threads; at most
// `max_parallel_creates` run at once, the others wait their turn.
//
// The zygote is this same program re-exec'd (see start()); every main() that can open an
// Engine calls run_zygote_if_requested(argc, argv) first, which runs the zygote and never
// returns when the process was started as one.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "init.pb.h"
#include "policy/seccomp_policy.h"
#include "sys/seqpacket.h"

namespace brig::sandbox {

class Zygote {
 public:
  // Forks the zygote and execs it from a sealed memfd copy of this program; it compiles the
  // seccomp policy and reports ready. The program's main() must call run_zygote_if_requested.
  static Result<std::unique_ptr<Zygote>> start(size_t max_parallel_creates = 8);
  ~Zygote();

  struct Created {
    pid_t init_pid = 0;
    Fd pidfd;
    Fd control;
    // CLOCK_MONOTONIC ns: when the helper began (before clone3) and when the init was ready.
    int64_t began_ns = 0;
    int64_t ready_ns = 0;
    std::optional<uint32_t> net_index;  // its interface is bv<net_index>, when it has a network
  };
  // `cgroup_fds`: cgroup.procs fds (v1) or one cgroup dir fd (v2), as the request says.
  Result<Created> create(const initpb::ZygoteRequest& request, std::vector<Fd> cgroup_fds);

 private:
  Zygote(pid_t pid, Fd sock, size_t max_parallel) : pid_(pid), sock_(std::move(sock)), max_parallel_(max_parallel) {}
  pid_t pid_;
  Fd sock_;
  const size_t max_parallel_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t in_flight_ = 0;
  uint64_t next_id_ = 0;
  bool reading_ = false;  // a caller is reading answers off the socket
  bool gone_ = false;
  std::set<uint64_t> waiting_;
  std::map<uint64_t, sys::Packet> replies_;
};

}  // namespace brig::sandbox
