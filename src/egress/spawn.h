// Starting brig-egress from the daemon (or a test): `EXE egress ARGS... --control-fd 3` with one
// end of a new socketpair as its fd 3 and nothing else of the caller's, as the caller (root: the
// proxy binds, then drops to egress.user itself). The caller keeps the other end: requests go in
// as encode_request lines, events come out as parse_event lines (control.h); closing it ends the
// proxy.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "egress/control.h"

namespace brig::egress {

struct Spawned {
  pid_t pid = -1;
  Fd control;  // CLOEXEC, blocking
};

// `exe` is the brig binary (e.g. /proc/self/exe); `args` follow "egress" ("--listen", "IP:PORT",
// ..., and "--config PATH" / "--set egress.KEY=VALUE" for the daemon's own settings); `env` is
// the child's whole environment ("NAME=VALUE"; none by default). posix_spawn: safe from a
// threaded process.
[[nodiscard]] Result<Spawned> spawn_proxy(const std::string& exe, const std::vector<std::string>& args,
                                          const std::vector<std::string>& env = {});

// Reads one event line from a blocking control socket, waiting at most `timeout`; `pending`
// keeps bytes read past the line for the next call.
[[nodiscard]] Result<ControlEvent> read_event(int fd, std::string& pending, std::chrono::milliseconds timeout);

}  // namespace brig::egress
