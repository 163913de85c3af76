// One kernel as the kernel host (kernel_host.cc) drives it. The Host owns everything about
// executions: contexts, their queues, env steps, deadlines, interrupts and restarts, and the
// daemon's connections. A Kernel only starts a process, runs one step at a time, reports what
// the step produces to a StepSink, interrupts and stops. Two families implement it:
//   - Jupyter kernels from the template's kernelspecs, over ZeroMQ (jupyter_kernel.cc);
//   - line kernels of brig's own over pipes: bash (needs only /bin/bash) and JavaScript on
//     plain Node.js (line_kernel.cc).
// Every method runs on the Host's one poll loop and must not block it.
#pragma once

#include <sys/types.h>
#include <zmq.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace zmq {
class context_t;
}

namespace brig::init {

using json = nlohmann::json;
using KernelClock = std::chrono::steady_clock;

// Where a kernel puts what the step in flight produces. The Host gives the sink of the
// execution whose step is in flight (null when none is), and decides what reaches the caller
// (nothing of a host-internal step; no error line after a timeout, which it reports itself).
class StepSink {
 public:
  virtual ~StepSink() = default;
  // stdout/stderr text of any size (the Host cuts it into NDJSON lines).
  virtual void stream(bool is_stderr, std::string_view text) = 0;
  // A `result`, `error` or `number_of_executions` line of the code interpreter.
  virtual void line(json line) = 0;
  // The step is over: all its output has been given to the sink.
  virtual void done() = 0;
};

// What a kernel starts with.
struct KernelLaunch {
  std::string context_id;                  // names its files
  std::string cwd;
  std::string dir;                         // the host's private 0700 directory
  std::map<std::string, std::string> env;  // the sandbox's environment, PATH/HOME/USER filled in
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  // Spawns the kernel's process (its own session and process group). It is not ready yet.
  virtual Result<> start(const KernelLaunch& launch) = 0;
  virtual pid_t pid() const = 0;  // > 0 from start until stopped or reaped
  bool running() const { return pid() > 0; }
  // It answered after start and takes steps. The Host gives up on it after a while.
  virtual bool ready() const = 0;

  // The fds or sockets the Host's poll should watch for it, appended to `items` (only while it
  // runs), and what the poll saw on them (the items it appended, in the same order).
  virtual void poll_items(std::vector<zmq_pollitem_t>& items) = 0;
  virtual void on_poll(const zmq_pollitem_t* items, StepSink* sink) = 0;
  // Called every loop: timers of its own. true: poll again within a few ms.
  virtual bool tick(KernelClock::time_point now, StepSink* sink) = 0;

  // Runs one step (a cell when `main`, else host code such as setting env vars) once ready.
  virtual void begin(const std::string& code, bool main, StepSink& sink) = 0;
  // Asks the step in flight to stop; it still ends with done(), or the Host restarts the
  // kernel when it does not within a few seconds.
  virtual void interrupt() = 0;

  // Its process exited (already reaped): false if the Host should report the step in flight
  // as lost with the kernel's state; true if the kernel told `sink` itself and ended the step.
  virtual bool exited(int wait_status, StepSink* sink) = 0;
  // Kills it (and what runs in its process group) and waits for it; safe to call twice.
  virtual void stop() = 0;
  // What it wrote before failing to start (for the error), may be empty.
  virtual std::string start_log() const = 0;
};

// Kernels by family. `name` is a kernelspec directory name (python3, deno, ir).
std::unique_ptr<Kernel> make_jupyter_kernel(zmq::context_t& zmq, const std::string& name);
std::unique_ptr<Kernel> make_bash_kernel(std::string bash);
std::unique_ptr<Kernel> make_node_kernel(std::string node);  // writes its runner to launch.dir

// Variables a kernel gets whatever the sandbox's environment says (updates skip them too).
std::map<std::string, std::string> kernel_env_overrides(const std::string& kernel_name);

// ---- helpers shared by the kernel families --------------------------------------------------

// Forks and execs a kernel: a new session (so its process group is its own), killed if the
// host dies, SIGPIPE back to default, in `cwd` (else the home directory), with `fds` as
// {fd in the child, fd here}; every other fd is closed on exec. Everything is prepared before fork (the host has threads).
Result<pid_t> spawn_kernel(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                           const std::string& cwd, const std::vector<std::pair<int, int>>& fds);

// SIGKILL to the process group and the process, then waits for it; pid becomes -1.
void kill_kernel(pid_t& pid);

// The first executable `name` in the colon-separated `path`, or "".
std::string find_executable(const std::string& name, const std::string& path);

// Creates a file only this user can read at `path`, replacing (never opening) what was there.
Result<> write_private_file(const std::string& path, std::string_view content);

// Kernelspec directories (kernel.json) the host looks in, in order.
inline constexpr const char* kKernelspecRoots[] = {"/usr/local/share/jupyter/kernels/", "/usr/share/jupyter/kernels/"};

}  // namespace brig::init
