// MCP code mode's guards on api.request (mcp.md section 5 item 21): checked in C++ before any
// call is made, whatever the agent's JavaScript sends.
#include "mcp/code_mode.h"

#include <gtest/gtest.h>

namespace brig::mcp::code_mode {
namespace {

using nlohmann::json;

json req(const std::string& method, const std::string& path) { return {{"method", method}, {"path", path}}; }

TEST(CodeMode, DocumentedRoutesPass) {
  auto r = check_request(req("get", "/v2/sandboxes"), Access::read);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->method, "GET");
  EXPECT_EQ(r->target, "/v2/sandboxes");
  auto q = check_request({{"method", "GET"}, {"path", "/v2/sandboxes"}, {"query", {{"metadata", "a=b&c"}, {"limit", 5}}}},
                         Access::read);
  ASSERT_TRUE(q) << q.error().message();
  EXPECT_EQ(q->target, "/v2/sandboxes?limit=5&metadata=a%3Db%26c");
  auto kill = check_request(req("DELETE", "/sandboxes/abcdefghij0123456789"), Access::write);
  ASSERT_TRUE(kill) << kill.error().message();
  auto create = check_request({{"method", "POST"}, {"path", "/v2/sandboxes"}, {"body", {{"templateID", "base"}}}}, Access::write);
  ASSERT_TRUE(create);
  EXPECT_EQ(create->body, R"({"templateID":"base"})");
  // Case is normalised before matching.
  EXPECT_TRUE(check_request(req("GET", "/V2/Sandboxes"), Access::read));
}

TEST(CodeMode, ReadToolAllowsOnlyGetAndHead) {
  for (const char* m : {"POST", "DELETE", "PUT", "PATCH", "OPTIONS", "TRACE", "CONNECT"})
    EXPECT_FALSE(check_request(req(m, "/v2/sandboxes"), Access::read)) << m;
  EXPECT_TRUE(check_request(req("HEAD", "/v2/sandboxes"), Access::read));
  EXPECT_FALSE(check_request(req("TRACE", "/v2/sandboxes"), Access::write));
}

TEST(CodeMode, PathBypassesAreRefused) {
  for (const char* p : {"/../x", "/sandboxes/../metrics", "//evil.com/x", "http://x/", "https://127.0.0.1:49982/v2/sandboxes",
                        "/sandboxes/%2e%2e", "/sandboxes/%252e%252e", "/v2%2fsandboxes", "/v2/sandboxes%3Fx=1",
                        "/v2/sandboxes?state=running", "/v2/sandboxes#x", "/v2/sandboxes\r\nX-Api-Key: k", "/v2/sandboxes\n",
                        "/v2\\sandboxes", "/v2//sandboxes", "/./v2/sandboxes", "v2/sandboxes", "", "/v2/sandboxes/",
                        "/%", "/%zz", "/sandboxes/%2525252e"}) {
    auto r = check_request(req("GET", p), Access::write);
    EXPECT_FALSE(r) << "accepted: " << p;
  }
}

TEST(CodeMode, AdminAndUnknownRoutesAreRefused) {
  for (const char* p : {"/metrics", "/mcp", "/mcp/code", "/files/archive", "/keys", "/sandboxes/x/y/z", "/admin"})
    EXPECT_FALSE(check_request(req("GET", p), Access::write)) << p;
  EXPECT_FALSE(check_request(req("POST", "/mcp"), Access::write));
  // A documented path with an undocumented method.
  EXPECT_FALSE(check_request(req("PUT", "/v2/sandboxes"), Access::write));
  EXPECT_FALSE(check_request({{"method", "GET"}}, Access::read));
  EXPECT_FALSE(check_request({{"method", 1}, {"path", "/v2/sandboxes"}}, Access::read));
  EXPECT_FALSE(check_request({{"method", "GET"}, {"path", "/v2/sandboxes"}, {"query", {{"a", {{"b", 1}}}}}}, Access::read));
}

TEST(CodeMode, SearchSpecIsResolvedAndTrimmed) {
  const json& spec = search_spec();
  ASSERT_TRUE(spec["paths"].contains("/v2/sandboxes"));
  EXPECT_FALSE(spec["paths"].contains("/metrics"));       // admin
  EXPECT_FALSE(spec["paths"].contains("/files/archive"));  // data plane
  EXPECT_EQ(spec.dump().find("$ref"), std::string::npos);
  const json& op = spec["paths"]["/v2/sandboxes"]["post"];
  EXPECT_TRUE(op.contains("summary"));
  EXPECT_FALSE(op.contains("operationId"));
  EXPECT_EQ(op["responses"]["201"]["content"]["application/json"]["schema"]["properties"]["sandboxID"]["type"], "string");
  EXPECT_NE(openapi_text().find("\"openapi\": \"3.1.0\""), std::string::npos);
}

TEST(CodeMode, LimitsComeFromTheConfigurationAndTheToolsSayThem) {
  config::Mcp mcp;
  EXPECT_EQ(Limits::from(mcp).timeout_ms, 30000);
  EXPECT_EQ(Limits::from(mcp).max_result_chars, 24000u);
  mcp.code_mode_timeout_ms = 5000;
  mcp.output_chars = 1000;
  mcp.code_mode_api_calls = 7;
  Limits l = Limits::from(mcp);
  EXPECT_EQ(l.timeout_ms, 5000);
  EXPECT_EQ(l.max_calls, 7);
  set_process_limits(l);
  EXPECT_EQ(Limits::from_env().timeout_ms, 5000);
  const std::string description = tool_definitions()[0]["description"];
  EXPECT_NE(description.find("for at most 5 s"), std::string::npos) << description;
  EXPECT_NE(description.find("Results over 1000 characters are truncated"), std::string::npos) << description;
  set_process_limits(Limits{});
}

}  // namespace
}  // namespace brig::mcp::code_mode
