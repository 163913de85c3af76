// A sandbox's log (core/sandbox_log.h): bounded, ordered, and its queries as E2B's v2 logs
// endpoint defines them (cursor, direction, least level, case-insensitive search, limit).
#include "core/sandbox_log.h"

#include <gtest/gtest.h>

namespace brig::core {
namespace {

std::vector<std::string> messages(const std::vector<LogEntry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.message);
  return out;
}

TEST(SandboxLog, KeepsTheNewestEntriesUpToItsCapacity) {
  SandboxLog log(3);
  for (int i = 0; i < 5; ++i) log.add(LogLevel::info, "entry " + std::to_string(i));
  EXPECT_EQ(messages(log.query({})), (std::vector<std::string>{"entry 2", "entry 3", "entry 4"}));
  EXPECT_EQ(log.dropped(), 2u);
}

TEST(SandboxLog, QueriesByDirectionLevelSearchAndLimit) {
  SandboxLog log(100);
  log.add(LogLevel::info, "Sandbox created", {{"template", "base"}});
  log.add(LogLevel::warn, "Connection to evil.test denied");
  log.add(LogLevel::debug, "DNS query for ok.test allowed");
  log.add(LogLevel::error, "Process ended");
  const auto all = log.query({});
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].fields.at("template"), "base");
  for (size_t i = 1; i < all.size(); ++i) EXPECT_LE(all[i - 1].timestamp_ms, all[i].timestamp_ms);

  LogQuery back;
  back.forward = false;
  back.limit = 2;
  EXPECT_EQ(messages(log.query(back)), (std::vector<std::string>{"Process ended", "DNS query for ok.test allowed"}));

  LogQuery warn;
  warn.min_level = LogLevel::warn;
  EXPECT_EQ(messages(log.query(warn)), (std::vector<std::string>{"Connection to evil.test denied", "Process ended"}));

  LogQuery search;
  search.search = "EVIL";
  EXPECT_EQ(messages(log.query(search)), (std::vector<std::string>{"Connection to evil.test denied"}));

  // A cursor: at or after it forward, at or before it backward.
  LogQuery after;
  after.cursor_ms = all.back().timestamp_ms + 1;
  EXPECT_TRUE(log.query(after).empty());
  LogQuery before;
  before.forward = false;
  before.cursor_ms = all.front().timestamp_ms - 1;
  EXPECT_TRUE(log.query(before).empty());
  before.cursor_ms = all.back().timestamp_ms;
  EXPECT_EQ(log.query(before).size(), 4u);

  // The limit is E2B's at most.
  SandboxLog big(5000);
  for (int i = 0; i < 1500; ++i) big.add(LogLevel::info, "x");
  LogQuery many;
  many.limit = 5000;
  EXPECT_EQ(big.query(many).size(), kMaxLogQueryLimit);
}

TEST(SandboxLog, LevelsParseAsE2bNamesThem) {
  for (LogLevel l : {LogLevel::debug, LogLevel::info, LogLevel::warn, LogLevel::error})
    EXPECT_EQ(*parse_level(level_name(l)), l);
  auto bad = parse_level("warning");
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().is(errc::invalid_argument));
}

}  // namespace
}  // namespace brig::core
