// The Jupyter wire codec and the code interpreter's translation of kernel output, without a
// kernel; and the daemon's validation of /execute bodies.
#include "init/jupyter.h"

#include <gtest/gtest.h>

#include "core/code.h"
#include "server/interpreter/interpreter.h"

namespace brig::jupyter {
namespace {

TEST(Jupyter, SignedMessageRoundTrips) {
  auto m = make_request("sess", "execute_request", {{"code", "1+1"}});
  auto frames = serialize(m, "secret");
  ASSERT_EQ(frames.size(), 6u);
  EXPECT_EQ(frames[0], kDelimiter);
  EXPECT_EQ(frames[1].size(), 64u);  // hex HMAC-SHA256
  // A router prepends identities: they are skipped.
  frames.insert(frames.begin(), "identity");
  auto back = parse(frames, "secret");
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->msg_type(), "execute_request");
  EXPECT_EQ(back->content["code"], "1+1");
  EXPECT_EQ(back->header["session"], "sess");
  EXPECT_EQ(back->msg_id().size(), 32u);
}

TEST(Jupyter, KnownHmacVector) {
  // HMAC-SHA256("key", "{}" "{}" "{}" "{}"), computed independently (python3 hmac module).
  Message m;
  m.header = json::object();
  m.parent_header = json::object();
  m.metadata = json::object();
  m.content = json::object();
  EXPECT_EQ(serialize(m, "key")[1], "ca767b02c5bc061ed184a9a029e7f93a7f2f7ed4e8fe74120fc1212f0b008fa3");
}

TEST(Jupyter, ForgedOrTamperedMessagesAreRefused) {
  auto frames = serialize(make_request("s", "status", {{"execution_state", "idle"}}), "secret");
  auto tampered = frames;
  tampered[5] = R"({"execution_state":"busy"})";
  EXPECT_FALSE(parse(tampered, "secret"));
  EXPECT_FALSE(parse(frames, "other-key"));
  auto short_msg = frames;
  short_msg.pop_back();
  EXPECT_FALSE(parse(short_msg, "secret"));
  EXPECT_FALSE(parse({"no", "delimiter"}, "secret"));
  auto bad_json = frames;
  bad_json[2] = "not json";
  EXPECT_FALSE(parse(bad_json, "secret"));  // signature no longer matches either
}

TEST(Jupyter, LanguagesNormalise) {
  EXPECT_EQ(normalize_language(" Python "), "python");
  EXPECT_EQ(normalize_language("JS"), "javascript");
  EXPECT_EQ(normalize_language("ts"), "typescript");
  EXPECT_EQ(normalize_language(""), "");
}

TEST(Jupyter, MimeTypesMapToResultKeys) {
  json data = {{"text/plain", "'abc'"},
               {"text/html", "<b>x</b>"},
               {"image/png", "iVBORw0K\nGgo=\n"},
               {"application/json", {{"a", 1}}},
               {"e2b/chart", {{"type", "line"}}},
               {"application/vnd.custom+json", {{"k", "v"}}}};
  auto line = result_line(data, true);
  EXPECT_EQ(line["type"], "result");
  EXPECT_EQ(line["is_main_result"], true);
  EXPECT_EQ(line["text"], "abc");  // one layer of repr() quotes dropped
  EXPECT_EQ(line["html"], "<b>x</b>");
  EXPECT_EQ(line["png"], "iVBORw0KGgo=");  // base64 without line breaks
  EXPECT_EQ(line["json"]["a"], 1);
  EXPECT_EQ(line["chart"]["type"], "line");
  EXPECT_EQ(line["extra"]["application/vnd.custom+json"]["k"], "v");
  EXPECT_FALSE(line.contains("application/vnd.custom+json"));
  auto display = result_line({{"text/plain", "42"}}, false);
  EXPECT_EQ(display["is_main_result"], false);
  EXPECT_EQ(display["text"], "42");
  EXPECT_FALSE(display.contains("extra"));
}

TEST(Jupyter, ErrorsJoinTheirTraceback) {
  auto line = error_line({{"ename", "ZeroDivisionError"}, {"evalue", "division by zero"},
                          {"traceback", {"line 1", "line 2"}}});
  EXPECT_EQ(line["type"], "error");
  EXPECT_EQ(line["name"], "ZeroDivisionError");
  EXPECT_EQ(line["value"], "division by zero");
  EXPECT_EQ(line["traceback"], "line 1\nline 2");
  auto sparse = error_line({{"traceback", 5}});
  EXPECT_EQ(sparse["name"], "");
  EXPECT_EQ(sparse["traceback"], "");
}

TEST(Jupyter, EnvCodeQuotesValues) {
  json set = {{"A", "it's \"q\"\n$(rm -rf /)"}};
  auto py = env_code("python", set);
  EXPECT_NE(py.apply.find(R"x("it's \"q\"\n$(rm -rf /)")x"), std::string::npos);  // a JSON string literal
  EXPECT_FALSE(py.restore.empty());
  auto sh = env_code("bash", set);
  EXPECT_NE(sh.apply.find(R"(export A='it'\''s "q")"), std::string::npos);  // single-quoted, no expansion
  EXPECT_NE(sh.restore.find("unset A"), std::string::npos);
  EXPECT_NE(env_code("typescript", set).apply.find("Deno.env.set"), std::string::npos);
  auto node = env_code("node", set);  // plain JavaScript: no Deno, no TypeScript syntax
  EXPECT_NE(node.apply.find(R"x("A": "it's \"q\"\n$(rm -rf /)")x"), std::string::npos);
  EXPECT_NE(node.apply.find("process.env"), std::string::npos);
  EXPECT_EQ(node.apply.find(" as "), std::string::npos);
  EXPECT_NE(node.restore.find("delete process.env[k]"), std::string::npos);
  EXPECT_TRUE(env_code("python", json::object()).apply.empty());
  EXPECT_TRUE(env_code("cobol", set).apply.empty());
  // Names that are not variable names never reach the code (the sandbox env is not checked
  // elsewhere, and a bash kernel would run `$(...)`).
  auto bad = env_code("bash", {{"$(reboot)", "x"}, {"1A", "x"}, {"OK_1", "y"}, {"N", 5}});
  EXPECT_EQ(bad.apply.find("reboot"), std::string::npos);
  EXPECT_EQ(bad.apply.find("1A"), std::string::npos);
  EXPECT_NE(bad.apply.find("export OK_1='y'"), std::string::npos);
  EXPECT_TRUE(env_code("bash", {{"$(x)", "v"}}).apply.empty());
}

}  // namespace
}  // namespace brig::jupyter

namespace brig::server::interpreter {

Result<nlohmann::json> execute_request_default(std::string_view body) { return execute_request(body, config::Limits{}); }
namespace {

TEST(CodeInterpreter, ExecuteBodiesAreChecked) {
  auto ok = execute_request_default(R"({"code":"1","language":"js","env_vars":{"A_1":"x"},"timeout_ms":500})");
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ((*ok)["op"], "execute");
  EXPECT_EQ((*ok)["language"], "js");
  EXPECT_EQ((*ok)["env_vars"]["A_1"], "x");
  EXPECT_TRUE(execute_request_default(R"({"code":"1","context_id":null,"language":null})"));
  for (const char* bad : {R"([])", R"({"code":1})", R"({})", R"({"code":"1","context_id":"a","language":"python"})",
                          R"({"code":"1","context_id":"../x"})", R"({"code":"1","env_vars":{"1A":"x"}})",
                          R"({"code":"1","env_vars":{"A":1}})", R"({"code":"1","env_vars":[]})",
                          R"({"code":"1","timeout_ms":0})", R"({"code":"1","timeout_ms":"5"})", "not json"}) {
    auto r = execute_request_default(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) EXPECT_TRUE(r.error().is(errc::invalid_argument)) << bad;
  }
  std::string huge = R"({"code":")" + std::string(config::Limits{}.code_bytes + 1, 'x') + R"("})";
  EXPECT_FALSE(execute_request_default(huge));
}

}  // namespace
}  // namespace brig::server::interpreter
