// brig-init: PID 1 of every sandbox. Forked from the zygote (never exec'd from a host path),
// it owns the sandbox from inside: it spawns processes, reaps them and reports their exit,
// performs file operations in the sandbox's mount namespace as the requested user, watches
// directories, and enforces the sandbox's lifetime with a timer that works even if the brig
// process that created the sandbox is gone.
//
// It serves one control channel (SOCK_SEQPACKET; InitRequest in, InitMessage out, fds beside
// them). When the lifetime ends it exits and the kernel kills every process in the PID
// namespace with it. When the channel closes it does the same, unless the sandbox is
// persistent: then it keeps running and accepts the next brig process on its listener.
//
// Single-threaded; runs with the baseline seccomp policy already installed.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/fd.h"
#include "init.pb.h"

namespace brig::init {

struct InitConfig {
  uint32_t lifetime_ms = 0;
  std::map<std::string, std::string> env;  // sandbox-wide env (SetEnv replaces it)
  Fd listener;  // persistent sandboxes: accepts a new control connection after the old one closes
  std::vector<std::string> kernels;  // languages whose kernel starts at once (the kernel host)
  initpb::InitLimits limits;  // watches, contexts, archive unpacking, file metadata read back
  // The sandbox shares the host's network namespace (build sandboxes): its loopback is the
  // host's, so ConnectPort is refused.
  bool host_network = false;
};

[[noreturn]] void run_init(Fd control, InitConfig config);

}  // namespace brig::init
