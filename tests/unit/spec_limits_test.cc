// sandbox::validate against the configuration: sizes against the schema's bounds, the lifetime
// against sandbox.max_lifetime_s, env and metadata against [limits]; and a SandboxSpec's
// defaults are the configuration's.
#include <gtest/gtest.h>

#include "sandbox/sandbox.h"

namespace brig::sandbox {
namespace {

using namespace std::chrono_literals;

SandboxSpec valid_spec() {
  SandboxSpec spec;
  spec.rootfs = "/srv/rootfs";
  return spec;
}

std::string refusal(const SandboxSpec& spec, const config::Sandbox& s = {}, const config::Limits& l = {}) {
  auto r = validate(spec, s, l);
  if (r) return "";
  EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().message();
  return r.error().message();
}

TEST(SpecLimits, TheSpecDefaultsAreTheConfigurationDefaults) {
  SandboxSpec spec;
  config::Sandbox d;
  EXPECT_EQ(spec.memory_bytes, uint64_t{d.memory_mib} << 20);
  EXPECT_EQ(spec.cpu_millis, d.cpu_millis);
  EXPECT_EQ(spec.pids, d.pids);
  EXPECT_EQ(spec.disk_bytes, uint64_t{d.disk_mib} << 20);
  EXPECT_EQ(spec.shm_bytes, uint64_t{d.shm_mib} << 20);
  EXPECT_EQ(spec.lifetime, std::chrono::seconds(d.lifetime_s));
  EXPECT_EQ(RunOptions{}.output_limit, config::Limits{}.run_output_bytes);
  EXPECT_EQ(refusal(valid_spec()), "");
}

TEST(SpecLimits, SizesFollowTheSchemaBounds) {
  auto spec = valid_spec();
  spec.memory_bytes = (config::bounds::sandbox_memory_mib.max << 20) + 1;
  EXPECT_NE(refusal(spec).find("memory must be between 16 MiB and 256 GiB"), std::string::npos) << refusal(spec);
  spec = valid_spec();
  spec.pids = config::bounds::sandbox_pids.min - 1;
  EXPECT_NE(refusal(spec).find("pids must be between 8 and 1000000"), std::string::npos) << refusal(spec);
  spec = valid_spec();
  // A template's 64 layers and the trusted CAs' layer over them pass; one more does not.
  spec.layers = std::vector<std::string>(config::bounds::build_max_layers.max + 1, "/l");
  spec.rootfs.clear();
  EXPECT_EQ(refusal(spec).find("too many template layers"), std::string::npos) << refusal(spec);
  spec.layers.push_back("/l");
  EXPECT_NE(refusal(spec).find("too many template layers (64 at most)"), std::string::npos) << refusal(spec);
}

TEST(SpecLimits, TheLifetimeFollowsTheConfiguredMaximum) {
  auto spec = valid_spec();
  config::Sandbox s;
  s.max_lifetime_s = 600;
  spec.lifetime = 600s;
  EXPECT_EQ(refusal(spec, s), "");
  spec.lifetime = 601s;
  EXPECT_NE(refusal(spec, s).find("timeout must be between 1 and 600 seconds"), std::string::npos);
  spec.lifetime = 999ms;
  EXPECT_NE(refusal(spec, s), "");
}

TEST(SpecLimits, EnvAndMetadataFollowTheConfiguredLimits) {
  config::Limits l;
  l.env_entries = 2;
  l.env_value_bytes = 4;
  l.metadata_key_bytes = 3;
  l.metadata_total_bytes = 10;
  auto spec = valid_spec();
  spec.env = {{"A", "1"}, {"B", "2"}, {"C", "3"}};
  EXPECT_NE(refusal(spec, {}, l).find("too many env vars (2 at most)"), std::string::npos);
  spec.env = {{"A", "12345"}};
  EXPECT_NE(refusal(spec, {}, l).find("values of at most 4 bytes"), std::string::npos);
  spec.env = {{"A", "1234"}};
  EXPECT_EQ(refusal(spec, {}, l), "");
  spec.metadata = {{"long", "v"}};
  EXPECT_NE(refusal(spec, {}, l).find("invalid metadata key 'long' (1 to 3 bytes)"), std::string::npos);
  spec.metadata = {{"a", "12345"}, {"b", "1234"}};
  EXPECT_NE(refusal(spec, {}, l).find("metadata larger than 10 bytes in all"), std::string::npos);
  spec.metadata = {{"a", "123"}, {"b", "1234"}};
  EXPECT_EQ(refusal(spec, {}, l), "");
  // The defaults: one set for sandbox and file metadata.
  EXPECT_TRUE(validate_metadata(std::map<std::string, std::string>{{std::string(200, 'k'), std::string(4096, 'v')}}, {}));
  EXPECT_FALSE(validate_metadata(std::map<std::string, std::string>{{std::string(201, 'k'), "v"}}, {}));
  EXPECT_FALSE(validate_metadata(std::map<std::string, std::string>{{"k", std::string(4097, 'v')}}, {}));
}

}  // namespace
}  // namespace brig::sandbox
