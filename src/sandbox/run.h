// The run loop shared by every backend: spawn, stream both outputs (bounded), write stdin,
// enforce the per-command timeout (SIGKILL to the process group), wait for the exit status,
// and tell an OOM kill from other SIGKILLs by the cgroup's oom_kill counter.
#pragma once

#include "sandbox/sandbox.h"

namespace brig::sandbox {

Result<RunResult> run_process(Sandbox& sandbox, const ProcessSpec& spec, const RunOptions& options,
                              uint64_t oom_kills_before);

}  // namespace brig::sandbox
