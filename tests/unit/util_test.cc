#include "base/util.h"

#include <gtest/gtest.h>

#include <set>

namespace brig {

TEST(SandboxId, IsTwentyLowercaseAlnumAndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto id = new_sandbox_id();
    EXPECT_TRUE(is_valid_sandbox_id(id)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(RandomHex, TwoLowercaseHexDigitsPerByteAndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto h = random_hex(20);
    ASSERT_EQ(h.size(), 40u);
    EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos) << h;
    seen.insert(h);
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(random_hex(0), "");
}

TEST(JsonDepth, CountsNestingOutsideStrings) {
  EXPECT_TRUE(json_depth_within(R"({"a":[1,{"b":2}]})", 3));
  EXPECT_FALSE(json_depth_within(R"({"a":[1,{"b":2}]})", 2));
  EXPECT_TRUE(json_depth_within(R"({"s":"[[[[{{{{\"[[["})", 1));  // brackets in strings, escaped quote
  EXPECT_FALSE(json_depth_within(std::string(65, '[') + std::string(65, ']'), kMaxJsonDepth));
  EXPECT_TRUE(json_depth_within(std::string(64, '[') + std::string(64, ']'), kMaxJsonDepth));
}

TEST(SandboxId, RejectsMalformed) {
  EXPECT_FALSE(is_valid_sandbox_id(""));
  EXPECT_FALSE(is_valid_sandbox_id("ABCDEFGHIJKLMNOPQRST"));
  EXPECT_FALSE(is_valid_sandbox_id("abc/../../etc/passwd"));
  EXPECT_FALSE(is_valid_sandbox_id("abcdefghijklmnopqrs"));
}

TEST(ParseSize, BinaryUnits) {
  EXPECT_EQ(*parse_size("512M"), 512ull << 20);
  EXPECT_EQ(*parse_size("2G"), 2ull << 30);
  EXPECT_EQ(*parse_size("1.5GiB"), 3ull << 29);
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("64k"), 64u << 10);
}

TEST(ParseSize, RejectsGarbageAndHuge) {
  for (auto bad : {"", "abc", "12X", "-5M", "9999999T", "1e400"}) {
    auto r = parse_size(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_TRUE(r.error().is(errc::invalid_argument));
  }
}

TEST(ParseDuration, Units) {
  EXPECT_EQ(parse_duration("30")->count(), 30'000);
  EXPECT_EQ(parse_duration("1500ms")->count(), 1500);
  EXPECT_EQ(parse_duration("5m")->count(), 300'000);
  EXPECT_FALSE(parse_duration("forever"));
  EXPECT_FALSE(parse_duration("100d"));
}

TEST(Base64, RoundTripsAndRejectsGarbage) {
  for (const std::string& s : std::vector<std::string>{"", "f", "fo", "foo", "foob", "fooba", "foobar", std::string("\0\xff\x10", 3)}) {
    auto back = base64_decode(base64_encode(s));
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(base64_encode("user:"), "dXNlcjo=");
  EXPECT_FALSE(base64_decode("abc"));
  EXPECT_FALSE(base64_decode("ab!="));
}

TEST(ErrorContext, WrapsOutermostFirst) {
  Error e = Error::from_errno(EINVAL, "pivot_root(\".\", \".\")");
  EXPECT_EQ(e.sys_errno(), EINVAL);
  e = e.wrap("mount").wrap("create sandbox");
  EXPECT_EQ(e.message().rfind("create sandbox: mount: pivot_root", 0), 0u) << e.message();
  EXPECT_NE(e.message().find("EINVAL"), std::string::npos);
}

}  // namespace brig

namespace brig {
namespace {

TEST(Util, PercentEncodeKeepsUnreservedAndAskedCharacters) {
  EXPECT_EQ(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
  EXPECT_EQ(percent_encode("/home/user/a b&c=d"), "%2Fhome%2Fuser%2Fa%20b%26c%3Dd");
  EXPECT_EQ(percent_encode("/home/user/a b", "/"), "/home/user/a%20b");
  EXPECT_EQ(percent_encode("\xc3\xa9\n"), "%C3%A9%0A");
}

}  // namespace
}  // namespace brig
