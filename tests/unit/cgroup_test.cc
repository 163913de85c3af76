// The cgroup drivers' translation of limits into interface-file writes, for both kernel
// interfaces. The v1 driver also runs for real in the integration and security suites; the v2
// driver cannot run for real on this (v1) host, so its writes are checked here.
#include "isolate/cgroup.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace brig::isolate {
namespace {

std::string value_of(const std::vector<LimitWrite>& w, const std::string& file) {
  for (auto& x : w)
    if (x.file == file) return x.value;
  return "<absent>";
}

TEST(CgroupLimits, V2Files) {
  auto w = v2_limit_writes({512ull << 20, 1500, 64});
  EXPECT_EQ(value_of(w, "memory.max"), std::to_string(512ull << 20));
  EXPECT_EQ(value_of(w, "memory.swap.max"), "0");
  EXPECT_EQ(value_of(w, "cpu.max"), "150000 100000");
  EXPECT_EQ(value_of(w, "pids.max"), "64");
}

TEST(CgroupLimits, V1Files) {
  auto w = v1_limit_writes({256ull << 20, 500, 100});
  EXPECT_EQ(value_of(w, "memory.limit_in_bytes"), std::to_string(256ull << 20));
  EXPECT_EQ(value_of(w, "memory.memsw.limit_in_bytes"), std::to_string(256ull << 20));
  EXPECT_EQ(value_of(w, "memory.swappiness"), "0");
  EXPECT_EQ(value_of(w, "cpu.cfs_quota_us"), "50000");
  EXPECT_EQ(value_of(w, "cpu.cfs_period_us"), "100000");
  EXPECT_EQ(value_of(w, "pids.max"), "100");
  for (auto& x : w) EXPECT_FALSE(x.controller.empty()) << x.file;
}

TEST(CgroupLimits, TinyCpuQuotaIsRaisedToKernelMinimum) {
  EXPECT_EQ(value_of(v2_limit_writes({0, 1, 0}), "cpu.max"), "1000 100000");
  EXPECT_EQ(value_of(v1_limit_writes({0, 1, 0}), "cpu.cfs_quota_us"), "1000");
}

TEST(CgroupLimits, ZeroMeansNoWrite) {
  EXPECT_TRUE(v2_limit_writes({}).empty());
  EXPECT_TRUE(v1_limit_writes({}).empty());
}

TEST(CgroupDetect, RejectsPlainDirectory) {
  char tmpl[] = "/tmp/brig-cgtest-XXXXXX";
  std::string root = mkdtemp(tmpl);
  auto r = CgroupDriver::detect("brig", root);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::unsupported));
  rmdir(root.c_str());
}

TEST(CgroupDetect, ThisHostIsSupported) {
  auto r = CgroupDriver::detect();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE((*r)->name() == "v1" || (*r)->name() == "v2");
}

}  // namespace
}  // namespace brig::isolate
