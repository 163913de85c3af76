// core/status: the one table from errors to HTTP and Connect codes, and report() logging each
// server fault once.
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "core/status.h"

namespace brig::core {
namespace {

TEST(Status, ErrnoValuesMapByMeaning) {
  EXPECT_EQ(classify(Error::from_errno(ENOENT, "open")), Status::not_found);
  EXPECT_EQ(classify(Error::from_errno(EACCES, "open")), Status::permission_denied);
  EXPECT_EQ(classify(Error::from_errno(EEXIST, "mkdir")), Status::already_exists);
  EXPECT_EQ(classify(Error::from_errno(ENOTDIR, "open")), Status::invalid_argument);
  EXPECT_EQ(classify(Error::from_errno(ENOSPC, "write")), Status::resource_exhausted);
  EXPECT_EQ(classify(Error::from_errno(EIO, "read")), Status::internal);
}

TEST(Status, BrigConditionsMapByMeaning) {
  EXPECT_EQ(classify(Error::make(errc::invalid_argument, "x")), Status::invalid_argument);
  EXPECT_EQ(classify(Error::make(errc::not_found, "x")), Status::not_found);
  EXPECT_EQ(classify(Error::make(errc::limit_exceeded, "x")), Status::resource_exhausted);
  EXPECT_EQ(classify(Error::make(errc::timed_out, "x")), Status::deadline_exceeded);
  EXPECT_EQ(classify(Error::make(errc::unsupported, "x")), Status::unimplemented);
  EXPECT_EQ(classify(Error::make(errc::protocol, "x")), Status::bad_gateway);
  EXPECT_EQ(classify(Error::make(errc::conflict, "x")), Status::aborted);  // 409: e.g. already paused
  EXPECT_EQ(classify(Error::make(errc::unavailable, "x")), Status::unavailable);  // 503: e.g. paused memory full
  EXPECT_EQ(http_status(Status::unavailable), 503);
  // Context added on the way up keeps the condition.
  EXPECT_EQ(classify(Error::make(errc::not_found, "x").wrap("create sandbox")), Status::not_found);
}

TEST(Status, OneRowPerStatusForHttpAndConnect) {
  EXPECT_EQ(http_status(Status::invalid_argument), 400);
  EXPECT_STREQ(connect_code(Status::invalid_argument), "invalid_argument");
  EXPECT_EQ(http_status(Status::not_found), 404);
  EXPECT_EQ(http_status(Status::resource_exhausted), 429);
  EXPECT_EQ(http_status(Status::payload_too_large), 413);
  EXPECT_EQ(http_status(Status::unimplemented), 501);
  EXPECT_EQ(http_status(Status::deadline_exceeded), 504);
  EXPECT_STREQ(connect_code(Status::deadline_exceeded), "deadline_exceeded");
  EXPECT_EQ(http_status(Status::internal), 500);
  EXPECT_STREQ(connect_code(Status::internal), "internal");
  EXPECT_TRUE(server_fault(Status::internal));
  EXPECT_TRUE(server_fault(Status::bad_gateway));
  EXPECT_FALSE(server_fault(Status::not_found));
  EXPECT_FALSE(server_fault(Status::unimplemented));  // 501 is an honest "not built", not a fault
}

TEST(Status, ReportLogsEachServerFaultOnceWithItsCause) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  EXPECT_EQ(report(Error::make(errc::not_found, "no sandbox"), "kill sandbox"), Status::not_found);
  EXPECT_EQ(report(Error::from_errno(EIO, "read layer"), "create sandbox"), Status::internal);
  auto lines = sink->last_formatted();
  spdlog::set_default_logger(previous);
  ASSERT_EQ(lines.size(), 1u);  // the client's mistake is not logged as a fault
  EXPECT_NE(lines[0].find("create sandbox failed (internal): read layer: EIO"), std::string::npos) << lines[0];
}

}  // namespace
}  // namespace brig::core
