// The kernel host: the process inside a sandbox that runs its code-interpreter kernels, so brig
// never connects to a socket that sandbox code could have put in its way. Kernels (kernel.h):
// Jupyter kernels from the template's kernelspecs (ZeroMQ over the sandbox's own loopback), and
// brig's line kernels over pipes: bash (any template with bash) and JavaScript on plain Node.js
// (templates with node but no Deno kernelspec). The host owns contexts, queues, env steps,
// timeouts, interrupts and restarts for all of them.
//
// brig-init forks it on demand (or at start when the template pre-starts kernels). It runs as
// the sandbox user with no capabilities, not dumpable, with no fd but its control socket: it
// holds nothing the user does not already have, and the daemon treats what it says as the
// sandbox's own output.
//
// Requests come over connections that brig-init hands it (one request per connection, a JSON
// line in; NDJSON lines out, then the connection closes):
//   {"op":"execute","code":…,"language"?:…,"context_id"?:…,"env_vars"?:{…},"timeout_ms"?:n}
//       -> the code interpreter's NDJSON lines, ending with end_of_execution
//   {"op":"create_context","language"?:…,"cwd"?:…} | {"op":"list_contexts"} |
//   {"op":"restart_context","id":…} | {"op":"remove_context","id":…}
//       -> one line {"status":<http status>,"body":<json>}
#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace brig::init {

struct KernelHost {
  int pid = 0;
  Fd control;  // SOCK_SEQPACKET, non-blocking: JSON messages, a connection fd beside "conn"
};

// Forks the kernel host. `env` is the sandbox environment; `prestart` lists the languages
// whose default context (and kernel) starts at once; `max_contexts` bounds its contexts.
Result<KernelHost> start_kernel_host(const std::map<std::string, std::string>& env,
                                     const std::vector<std::string>& prestart, uint32_t max_contexts);

// Messages from brig-init to the kernel host.
std::string kernel_host_conn_message();
std::string kernel_host_env_message(const std::map<std::string, std::string>& env);

}  // namespace brig::init
