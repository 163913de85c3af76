// Helpers shared by the security tests: reading the probe's evidence lines, describing a
// RunResult in failure messages, and looking at the host from outside the sandbox.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fixtures/sandbox_fixture.h"

namespace brig::security {

using brig::testing::shared_engine;
using brig::testing::TestSandbox;
using sandbox::RunOptions;
using sandbox::RunResult;
using sandbox::User;

// Everything about a run, for failure messages.
std::string show(const RunResult& r);

// Does the output contain `needle`?
inline bool has(std::string_view out, std::string_view needle) { return out.find(needle) != std::string_view::npos; }

// The value of the first "key=value" token in `out` ("" when absent). Values end at a space
// or a newline; the key must start a token.
std::string field(std::string_view out, std::string_view key);
// field() as a number (-1 when absent or not a number).
long long field_num(std::string_view out, std::string_view key);
std::vector<std::string> split_list(std::string_view csv, char sep = ',');

// The probe ran to its end (exit 0, no signal, not timed out).
#define EXPECT_PROBE_RAN(r)                                                              \
  EXPECT_TRUE((r).status.signal == 0 && (r).status.exit_code == 0 && !(r).timed_out)    \
      << "the probe did not run to completion: " << ::brig::security::show(r)
#define ASSERT_PROBE_RAN(r)                                                              \
  ASSERT_TRUE((r).status.signal == 0 && (r).status.exit_code == 0 && !(r).timed_out)    \
      << "the probe did not run to completion: " << ::brig::security::show(r)
// The probe printed `needle` (its evidence).
#define EXPECT_EVIDENCE(r, needle) \
  EXPECT_TRUE(::brig::security::has((r).out, needle)) << "expected evidence '" << (needle) << "': " << ::brig::security::show(r)
#define ASSERT_EVIDENCE(r, needle) \
  ASSERT_TRUE(::brig::security::has((r).out, needle)) << "expected evidence '" << (needle) << "': " << ::brig::security::show(r)

// The errno name of a failed Result ("EACCES"), or "no-errno(<message>)".
std::string errno_name(int err);

// ---- the host side ----------------------------------------------------------------------

struct HostRun {
  int exit_code = -1;
  int signal = 0;
  std::string out;
};
// Runs argv on the host (outside any sandbox), capturing stdout. Used as a control: what the
// kernel does without brig's policy.
HostRun run_on_host(const std::vector<std::string>& argv);

// A random lowercase hex string (for unique file names, keys and ports).
std::string random_hex(size_t chars);

// A file on the host with unique name and known content, removed when it goes out of scope
// (also when an assertion returns early).
struct HostTempFile {
  explicit HostTempFile(const std::string& prefix, const std::string& content);
  ~HostTempFile();
  HostTempFile(const HostTempFile&) = delete;
  HostTempFile& operator=(const HostTempFile&) = delete;
  std::string path;
};
// An identity of a file's content: size + a 64-bit FNV-1a hash ("" if unreadable).
std::string file_digest(const std::string& path);
// The target of a symlink on the host ("" if none).
std::string host_readlink(const std::string& path);

size_t count_fds(pid_t pid);                         // entries in /proc/PID/fd
size_t count_host_mounts();                          // lines of /proc/self/mountinfo
std::vector<pid_t> host_pids();                      // every pid in /proc
uint32_t host_uid_of(pid_t pid);                     // real uid from /proc/PID/status (UINT32_MAX if gone)
std::string cgroup_of(pid_t pid);                    // /proc/PID/cgroup contents
// Host processes that are in the cgroup of sandbox `id` (in any hierarchy).
std::vector<pid_t> processes_of_sandbox(const std::string& id);
// Host pids whose real uid is in the sandbox id range (>= 2^30).
std::vector<pid_t> processes_with_sandbox_uids();
// Cgroup directories named `id` under brig's parents, at brig/<id> or brig/<group>/<id>
// (v1: one per controller; v2: one).
std::vector<std::string> cgroup_dirs_of(const std::string& id);
// Every cgroup directory under brig's parents, two levels deep: "<controller>/<path>".
std::vector<std::string> all_brig_cgroup_dirs();
// The zygote (a child of this process named brig-zygote), or 0.
pid_t find_zygote();

// Free bytes of the filesystems holding each path (one entry per distinct filesystem).
struct HostFs {
  std::string path;
  unsigned long long avail = 0;
};
std::vector<HostFs> host_free_space(const std::vector<std::string>& paths);

}  // namespace brig::security
