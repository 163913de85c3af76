// Running a host program from the daemon (mmdebstrap for a template's base layer, mkfs.ext4 for
// a sandbox disk): posix_spawn, its stdout and stderr on one pipe, the exit status as a Result.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace brig {

// Runs argv[0] (looked up in the standard PATH) with `argv` and a fixed environment (PATH,
// LC_ALL=C.UTF-8, HOME=/root), passing its combined output to `on_output` as it
// comes. Exit status 0 is ok; 127 (not installed) is errc::unsupported; any other failure is
// errc::invalid_argument naming the status.
Result<> run_program(const std::vector<std::string>& argv, const std::function<void(std::string_view)>& on_output);

// The same, keeping the last `keep` bytes of its output for the error message.
Result<> run_program(const std::vector<std::string>& argv, size_t keep = 2048);

}  // namespace brig
