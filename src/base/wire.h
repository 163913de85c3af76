// Words the daemon and its clients (the CLI, the MCP tools) agree on beyond E2B's wire
// contract: what brig puts in fields E2B leaves free, and how a client recognises it.
#pragma once

#include <string_view>

namespace brig::wire {

// The error of envd's process end event when the kernel's OOM killer ended the process
// (sandbox::killed_for_memory); the status stays envd's ("signal: killed", "exit status 137").
inline constexpr std::string_view kOutOfMemoryError = "killed: out of memory (the sandbox reached its memory limit)";

}  // namespace brig::wire
