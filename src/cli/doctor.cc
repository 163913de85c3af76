// brig doctor: what this host supports, and what brig does about what it lacks.
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <iostream>
#include <memory>

#include "base/cidr.h"
#include "base/util.h"
#include "cli/commands.h"
#include "isolate/cgroup.h"
#include "isolate/net.h"
#include "policy/seccomp_policy.h"
#include "sandbox/engine.h"
#include "sys/syscalls.h"

namespace brig::cli {
namespace {

enum class Level { ok, warn, fail };

struct Report {
  int failures = 0;
  int warnings = 0;
  void line(Level level, const std::string& what, const std::string& detail) {
    const char* tag = level == Level::ok ? "ok  " : level == Level::warn ? "WARN" : "FAIL";
    if (level == Level::fail) ++failures;
    if (level == Level::warn) ++warnings;
    std::cout << "[" << tag << "] " << what << (detail.empty() ? "" : ": " + detail) << "\n";
  }
};

bool syscall_exists(long ret) { return ret >= 0 || errno != ENOSYS; }

// Sandbox networks: nftables, forwarding, and what brig's table holds.
void network(Report& r, const config::Network& n) {
  auto state = isolate::firewall_state();
  if (!state) {
    r.line(Level::fail, "nftables", state.error().message() + " (sandboxes with a network cannot be created)");
    return;
  }
  auto forward = read_small_file("/proc/sys/net/ipv4/ip_forward", 16);
  const auto interfaces = isolate::sandbox_interfaces();
  r.line(Level::ok, "sandbox networks",
         "range " + n.subnet + "; table inet " + isolate::kFirewallTable + " " +
             (state->table ? "holds " + std::to_string(state->sandboxes.size()) + " sandbox(es)" : "absent (no sandbox has a network)") +
             "; " + std::to_string(interfaces.size()) + " bv* interface(s); ip_forward " +
             (forward ? std::string(trim(*forward)) : "?"));
  r.line(Level::warn, "egress domains",
         "allowOut domains are stored but not enforced yet (no egress proxy): they open nothing; IPs and CIDRs are enforced");
}

// --cleanup: what crashed brig processes left of sandbox networks.
int cleanup(const Globals& g) {
  auto subnet = parse_ipv4_cidr(g.config.network.subnet);
  if (!subnet) return 2;
  auto swept = isolate::sweep_networks(*subnet);
  if (!swept) {
    std::cerr << "brig doctor --cleanup: " << swept.error().message() << "\n";
    return 1;
  }
  for (uint32_t i : swept->removed) std::cout << "emptied the firewall objects of bv" << i << " (its sandbox is gone)\n";
  if (swept->table_removed) std::cout << "removed table inet " << isolate::kFirewallTable << " (no sandbox network left)\n";
  if (swept->removed.empty() && !swept->table_removed) std::cout << "nothing to clean up\n";
  return 0;
}

int doctor(const Globals& g) {
  Report r;
  struct utsname u;
  ::uname(&u);
  r.line(Level::ok, "kernel", std::string(u.release) + " " + u.machine);
  r.line(::geteuid() == 0 ? Level::ok : Level::fail, "privileges",
         ::geteuid() == 0 ? "root: sandboxes get their own unprivileged host uid range"
                          : "not root: the Linux backend needs root (rootless mode is not built yet)");

  auto max_userns = read_small_file("/proc/sys/user/max_user_namespaces");
  bool userns_ok = max_userns && std::stoll(std::string(trim(*max_userns))) > 0;
  r.line(userns_ok ? Level::ok : Level::fail, "user namespaces",
         userns_ok ? "enabled (max " + std::string(trim(*max_userns)) + ")" : "disabled: set user.max_user_namespaces > 0");

  auto fs_list = read_small_file("/proc/filesystems");
  std::string filesystems = fs_list ? *fs_list : "";
  bool overlay = filesystems.find("overlay") != std::string::npos;
  r.line(overlay ? Level::ok : Level::fail, "overlayfs", overlay ? "available" : "missing: modprobe overlay");
  // Sandbox disks (isolate/disk.h): an ext4 image per sandbox on a loop device.
  bool ext4 = filesystems.find("\text4\n") != std::string::npos;
  bool loop = ::access("/dev/loop-control", R_OK | W_OK) == 0;
  bool mkfs = false;
  for (const char* dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"})
    mkfs |= ::access((std::string(dir) + "/mkfs.ext4").c_str(), X_OK) == 0;
  r.line(ext4 && loop && mkfs ? Level::ok : Level::fail, "sandbox disks",
         std::string("ext4 ") + (ext4 ? "yes" : "NO (modprobe ext4)") + ", /dev/loop-control " +
             (loop ? "yes" : "NO (modprobe loop)") + ", mkfs.ext4 " + (mkfs ? "yes" : "NO (apt-get install e2fsprogs)"));

  bool pidfd = syscall_exists(sys::pidfd_open(::getpid(), 0));
  bool clone3 = syscall_exists(sys::clone3(nullptr));  // EFAULT/EINVAL when present
  bool openat2 = syscall_exists(sys::openat2(-1, "", nullptr));
  bool mount_api = syscall_exists(sys::fsopen(nullptr, 0));
  bool close_range = syscall_exists(sys::close_range(~0U - 1, ~0U - 1, 0));
  r.line(pidfd && clone3 && openat2 && mount_api ? Level::ok : Level::fail, "syscalls",
         std::string("pidfd_open ") + (pidfd ? "yes" : "NO") + ", clone3 " + (clone3 ? "yes" : "NO") +
             ", openat2 " + (openat2 ? "yes" : "NO") + ", new mount API " + (mount_api ? "yes" : "NO") +
             ", close_range " + (close_range ? "yes" : "no (falls back to a /proc/self/fd walk)") +
             " (brig needs Linux 5.12+ for idmapped mounts)");

  auto cg = isolate::CgroupDriver::detect();
  if (cg) {
    r.line(Level::ok, "cgroups", "driver " + (*cg)->name());
    for (auto& d : (*cg)->describe()) std::cout << "         " << d << "\n";
  } else {
    r.line(Level::fail, "cgroups", cg.error().message());
  }
  struct statfs fs;
  if (::statfs("/sys/fs/cgroup/unified", &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC)
    r.line(Level::ok, "cgroup layout", "hybrid (v1 controllers + an empty cgroup2 mount): brig uses the v1 driver");

  auto policy = policy::compile_baseline_policy();
  r.line(policy ? Level::ok : Level::fail, "seccomp",
         policy ? "baseline policy compiles (" + std::to_string(policy->filter.size()) + " BPF instructions, " +
                      std::to_string(policy::baseline_rules().size()) + " denied syscalls + argument rules)"
                : policy.error().message());

  const std::string& state = g.config.server.state_dir;
  struct stat st;
  bool state_ok = ::stat(state.c_str(), &st) == 0;
  r.line(state_ok ? Level::ok : Level::warn, "state directory",
         state + (state_ok ? "" : " (does not exist yet; created on first use)"));

  for (const char* tool : {"mmdebstrap", "bwrap", "runc"}) {
    bool found = false;
    for (auto& dir : split("/usr/local/bin:/usr/bin:/bin:/usr/sbin", ':'))
      found |= ::access((dir + "/" + tool).c_str(), X_OK) == 0;
    std::string why = std::string(tool) == "mmdebstrap" ? "builds template root filesystems"
                                                        : "peer for the benchmarks in bench/";
    r.line(found ? Level::ok : Level::warn, tool, found ? why : "not installed (" + why + ")");
  }
  if (::access("/dev/kvm", F_OK) == 0)
    r.line(Level::warn, "/dev/kvm", "present, but brig has no microVM backend yet: sandboxes use namespaces");
  network(r, g.config.network);

  std::cout << "\n" << (r.failures ? "brig cannot run sandboxes on this host (" + std::to_string(r.failures) + " failure(s))"
                                   : "brig can run sandboxes on this host") << "\n";
  return r.failures ? 1 : 0;
}

}  // namespace

Runner add_doctor(CLI::App& app, Globals& globals) {
  auto* sub = app.add_subcommand("doctor", "Check what this host supports and what brig will do about what it lacks.");
  auto cleanup_flag = std::make_shared<bool>(false);
  sub->add_flag("--cleanup", *cleanup_flag,
                "Remove what dead sandboxes left of their networks (the rules and connections of interfaces that are "
                "gone; the table inet brig once no sandbox is left), then exit.");
  return [sub, &globals, cleanup_flag]() -> int {
    if (!sub->parsed()) return -1;
    return *cleanup_flag ? cleanup(globals) : doctor(globals);
  };
}

}  // namespace brig::cli
