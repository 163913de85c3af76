// The Dockerfile subset brig builds templates from, so existing e2b.Dockerfiles mostly work.
//
//   FROM debian:bookworm | debian:bookworm-slim | debian:12 | <brig template>
//   RUN <shell> | RUN ["exec", "form"]      ENV K=V ... | ENV K V      ARG NAME[=default]
//   WORKDIR /dir      USER user|root      COPY|ADD [--chmod=MODE] <src>... <dest>
//   LABEL k=v ...     EXPOSE <port> (ignored)
//   # brig:start <command>            run when a sandbox starts (in the background)
//   # brig:ready <command>            readiness check: the sandbox is ready when it exits 0
//   # brig:cpus <n>   # brig:memory <size>   # brig:disk <size>   default shape of its sandboxes
//
// Line continuations (\) and comments work as in Docker. Anything else is an error naming the
// line.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace brig::store {

enum class Op { from, run, env, arg, workdir, user, copy, label };

struct Instruction {
  Op op;
  int line = 0;                          // 1-based line where the instruction starts
  std::string text;                      // the instruction as written (for display and hashing)
  std::vector<std::string> args;         // RUN: {shell} or exec-form argv; COPY: srcs..., dest
  bool exec_form = false;                // RUN ["a", "b"]
  std::vector<std::pair<std::string, std::string>> pairs;  // ENV / LABEL / ARG (value may be empty)
  uint32_t chmod = 0;                    // COPY --chmod
  std::string chown;                     // COPY --chown: "", "user" or "root"
};

struct Dockerfile {
  std::vector<Instruction> steps;        // steps[0] is FROM
  std::string start_cmd, ready_cmd;
  std::vector<std::string> kernels;  // brig:kernels python [javascript ...]: started with each sandbox
  double cpus = 0;                       // 0 = brig's default
  uint64_t memory_bytes = 0;
  uint64_t disk_bytes = 0;               // 0 = brig's default
};

// Parses `text`; `name` is used in error messages ("Dockerfile:12: ...").
Result<Dockerfile> parse_dockerfile(std::string_view text, std::string_view name = "Dockerfile");

// Expands $VAR and ${VAR} from `vars` (unknown variables expand to "", as Docker does).
std::string expand_vars(std::string_view s, const std::map<std::string, std::string>& vars);

}  // namespace brig::store
