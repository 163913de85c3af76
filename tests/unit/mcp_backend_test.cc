// The pieces of the MCP backends that need no sandbox: cancellation hooks (what a cancelled
// tool call runs), the sandbox-gone condition, and serving a request through a router in
// memory (how the daemon's code mode reaches its own REST API without a socket).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "mcp/backend.h"
#include "server/local_request.h"

namespace brig {
namespace {

TEST(CancelToken, AHookRunsOnCancelAndNotAfterItsScope) {
  mcp::CancelToken token;
  int runs = 0;
  {
    mcp::OnCancel hook(&token, [&] { ++runs; });
    EXPECT_EQ(runs, 0);
  }
  token.cancel();
  EXPECT_EQ(runs, 0) << "a hook whose scope ended must not run";
  EXPECT_TRUE(token.cancelled());

  mcp::CancelToken second;
  mcp::OnCancel a(&second, [&] { runs += 10; });
  mcp::OnCancel b(&second, [&] { runs += 100; });
  second.cancel();
  second.cancel();  // idempotent
  EXPECT_EQ(runs, 110);
}

TEST(CancelToken, AHookSetAfterTheCancelRunsAtOnce) {
  mcp::CancelToken token;
  token.cancel();
  bool ran = false;
  mcp::OnCancel hook(&token, [&] { ran = true; });
  EXPECT_TRUE(ran);
  mcp::OnCancel none(nullptr, [] { FAIL() << "no token, no hook"; });
}

TEST(CancelToken, CancelFromAnotherThreadWakesAWaiter) {
  mcp::CancelToken token;
  std::atomic<bool> woken{false};
  std::thread waiter([&] {
    mcp::OnCancel hook(&token, [&] { woken = true; });
    for (int i = 0; i < 500 && !token.cancelled(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  token.cancel();
  waiter.join();
  EXPECT_TRUE(woken);
}

TEST(SandboxGone, IsItsOwnCondition) {
  Error gone = mcp::sandbox_gone("sandbox 'x' not found");
  EXPECT_TRUE(mcp::is_sandbox_gone(gone));
  EXPECT_EQ(gone.message(), "sandbox 'x' not found");
  EXPECT_FALSE(mcp::is_sandbox_gone(Error::make(errc::not_found, "no such file")));
  EXPECT_FALSE(mcp::is_sandbox_gone(Error::from_errno(ENOENT, "open")));
}

// ---- serve_locally ----------------------------------------------------------------------------

server::Request request(const std::string& method, const std::string& target, std::string body = "") {
  server::Request r;
  r.method = method;
  r.target = target;
  r.body = std::move(body);
  r.headers = {{"host", "localhost"}, {"x-api-key", "k"}};
  return r;
}

TEST(ServeLocally, ARespondRouteSeesThePathQueryHeadersAndBody) {
  server::Request seen;
  auto router = [&](const server::Request& head) {
    server::Route r;
    r.respond = [&](server::Request& req) {
      seen = req;
      return server::Response::json(201, R"({"ok":true})");
    };
    EXPECT_EQ(head.path, "/v2/sandboxes") << "the router sees the parsed path";
    return r;
  };
  auto res = server::serve_locally(router, request("POST", "/v2/sandboxes?metadata=a%3Db&limit=5", R"({"x":1})"), 1 << 20);
  ASSERT_TRUE(res) << res.error().message();
  EXPECT_EQ(res->status, 201);
  EXPECT_EQ(res->body, R"({"ok":true})");
  EXPECT_EQ(seen.path, "/v2/sandboxes");
  EXPECT_EQ(seen.param("metadata"), "a=b");
  EXPECT_EQ(seen.param("limit"), "5");
  EXPECT_EQ(seen.header("x-api-key"), "k");
  EXPECT_EQ(seen.body, R"({"x":1})");
  EXPECT_FALSE(seen.request_id.empty());
}

TEST(ServeLocally, ABodyOverTheRoutesLimitIs413AndTheHandlerNeverRuns) {
  bool ran = false;
  auto router = [&](const server::Request&) {
    server::Route r;
    r.body_limit = 10;
    r.respond = [&](server::Request&) {
      ran = true;
      return server::Response::empty(204);
    };
    return r;
  };
  auto res = server::serve_locally(router, request("POST", "/x", std::string(11, 'a')), 1 << 20);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  EXPECT_FALSE(ran);
}

TEST(ServeLocally, AConsumingRouteReadsTheBodyPieceByPiece) {
  std::string got;
  auto router = [&](const server::Request&) {
    server::Route r;
    r.consume = [&](server::Request& req, server::BodyReader& body) {
      EXPECT_TRUE(req.body.empty()) << "a consuming route pulls the body itself";
      char buf[3];
      for (;;) {
        auto n = body.read(buf, sizeof buf);
        if (!n || *n == 0) break;
        got.append(buf, *n);
      }
      return server::Response::empty(204);
    };
    return r;
  };
  auto res = server::serve_locally(router, request("POST", "/files", "0123456789"), 1 << 20);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 204);
  EXPECT_EQ(got, "0123456789");
}

TEST(ServeLocally, AStreamIsCollectedUpToTheCap) {
  auto router = [](const server::Request& head) {
    server::Route r;
    const bool big = head.path == "/big";
    r.stream = [big](server::Request&, server::Stream& s) {
      s.begin(200, {{"Content-Type", "application/x-ndjson"}});
      for (int i = 0; i < (big ? 1000 : 3); ++i)
        if (!s.write("line\n")) return;  // the cap ends the route as a closed connection would
      s.finish();
    };
    return r;
  };
  auto small = server::serve_locally(router, request("GET", "/small"), 100);
  ASSERT_TRUE(small);
  EXPECT_EQ(small->status, 200);
  EXPECT_EQ(small->body, "line\nline\nline\n");
  ASSERT_EQ(small->headers.size(), 1u);
  EXPECT_EQ(small->headers[0].second, "application/x-ndjson");
  auto big = server::serve_locally(router, request("GET", "/big"), 100);
  ASSERT_FALSE(big);
  EXPECT_TRUE(big.error().is(errc::limit_exceeded));
}

TEST(ServeLocally, AThrowingHandlerIs500AndAMalformedTargetIsRefused) {
  auto router = [](const server::Request&) -> server::Route {
    server::Route r;
    r.respond = [](server::Request&) -> server::Response { throw std::runtime_error("bug"); };
    return r;
  };
  auto res = server::serve_locally(router, request("GET", "/x"), 1 << 20);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  auto bad = server::serve_locally(router, request("GET", "no-slash"), 1 << 20);
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().is(errc::invalid_argument));
  auto big = server::serve_locally(
      [](const server::Request&) {
        server::Route r;
        r.respond = [](server::Request&) { return server::Response::json(200, std::string(200, 'x')); };
        return r;
      },
      request("GET", "/x"), 100);
  ASSERT_FALSE(big);
  EXPECT_TRUE(big.error().is(errc::limit_exceeded));
}

}  // namespace
}  // namespace brig
