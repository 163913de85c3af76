// brig's own kernels, for templates without Jupyter: bash (needs only bash) and JavaScript on
// plain Node.js (needs only node). A line kernel is one child process per context with stdout
// and stderr on pipes (streamed as the cell's output) and a private channel on its fd 3 that
// only says when a step ends (and, for node, the cell's value or error): ordinary output can
// never be taken for the end of a cell. The classes are in line_kernel.cc; this header has the
// pure parts, tested without a kernel.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace brig::init {

using json = nlohmann::json;

// ---- which kernel runs a language -----------------------------------------------------------

// What this sandbox has (the host looks before it creates a context).
struct Installed {
  bool python3 = false;  // the python3 kernelspec (ipykernel)
  bool deno = false;     // Deno's kernelspec
  bool ir = false;       // IRkernel's kernelspec
  std::string bash;      // the bash executable, "" if none
  std::string node;      // the node executable, "" if none
};

enum class KernelFamily { jupyter, bash, node };

struct KernelChoice {
  KernelFamily family;
  std::string name;  // the kernelspec (python3, deno, ir) or bash / node
};

// python -> python3; javascript -> deno, else node; typescript -> deno; r -> ir; bash -> bash.
// A language brig knows but the sandbox lacks: "this sandbox has no <language> kernel: <what>
// is not installed in its template" (errc::not_found). An unknown one: errc::invalid_argument.
Result<KernelChoice> choose_kernel(const std::string& language, const Installed& installed);

// ---- output ---------------------------------------------------------------------------------

// A kernel's stdout or stderr as NDJSON-sized pieces that end at line ends: complete lines go
// at once, a partial line waits for its end, for the step's end or until it is `limit` long.
// A piece never ends inside a UTF-8 sequence unless the data does.
class OutputBuffer {
 public:
  explicit OutputBuffer(size_t limit = 1 << 20) : limit_(limit) {}
  // Adds `data`; returns what can go now (may be empty).
  std::string add(std::string_view data);
  // Everything held (`whole_chars`: but an incomplete UTF-8 sequence at the end).
  std::string take(bool whole_chars = false);
  bool empty() const { return held_.empty(); }
  void clear() { held_.clear(); }

 private:
  std::string held_;
  size_t limit_;
};

// ---- bash -----------------------------------------------------------------------------------
//
// One `bash --norc --noprofile --noediting -i` per context (interactive without a terminal: no
// job control, so Ctrl-C semantics come from SIGINT to its process group: the foreground
// command dies, bash abandons the rest of the command line and reads the next one; background
// jobs ignore SIGINT). Its stdin is a pipe of command lines from the host; a cell is written to
// a private file and sourced with stdin from /dev/null and fd 3 closed, then bash prints
// "<token> <seq> <status>" on fd 3. An interrupted line prints nothing, so after SIGINT the
// host sends a line that only prints a later sequence number.
namespace bash {

// The first line: no prompts, no history, then marker 0 (the shell is ready).
std::string init_line(std::string_view token);
// Sources `path` (a cell) and reports its status as marker `seq`.
std::string step_line(std::string_view path, std::string_view token, uint64_t seq);
// Reports marker `seq` with status 130 (sent after an interrupt).
std::string sync_line(std::string_view token, uint64_t seq);

struct Marker {
  uint64_t seq;
  int status;
};
// "<token> <seq> <status>" or nothing.
std::optional<Marker> parse_marker(std::string_view line, std::string_view token);

// The error (Jupyter content: ename, evalue, traceback) of a finished bash cell, or null: as the
// earlier Jupyter bash kernel reported them (KeyboardInterrupt after an interrupt, ExitCode for
// a non-zero status of the cell's last command).
json step_error(int status, bool interrupted);

}  // namespace bash

// ---- node -----------------------------------------------------------------------------------
//
// `node --expose-internals --experimental-vm-modules node_kernel.cjs` per context; fd 3 is a
// socketpair carrying JSON lines both ways (the protocol is described in node_kernel.cjs).
namespace node {

// The line the host sends to run a step.
std::string step_message(const std::string& code, bool main);
// The code interpreter line for a message of the runner (`result` or `error`), else null.
json output_line(const json& msg);

}  // namespace node

}  // namespace brig::init
