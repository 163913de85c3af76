// Starting a process inside the sandbox (brig-init side).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "init.pb.h"

namespace brig::init {

struct UserIds {
  uid_t uid;
  gid_t gid;
  const char* name;
  const char* home;
};
UserIds ids_for(initpb::User user);

// Expands "", "~", "~/x" and relative paths against `home`.
std::string expand_path(const std::string& path, const char* home);

struct Started {
  int pid = 0;
  std::vector<Fd> fds;  // pipe mode: [stdin w (if stdin_pipe)], stdout r, stderr r; PTY: [master]
};

// In a freshly forked child of brig-init (no exec follows): default signals, dies with its
// parent, no core dumps, and becomes `user` with that user's capabilities (none for `user`,
// the sandbox-root set for root). false if a step failed.
bool become_user(initpb::User user);

// Forks and execs. Errors from the child before exec (missing cwd, command not found, ...)
// come back as errors, the child reaped.
Result<Started> spawn_process(const initpb::Spawn& spec, const std::map<std::string, std::string>& sandbox_env);

}  // namespace brig::init
