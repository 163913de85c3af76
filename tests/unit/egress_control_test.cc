// The control channel's messages (src/egress/control.h): both directions round-trip, and
// malformed or oversized lines are errors, not crashes.
#include <gtest/gtest.h>

#include "egress/control.h"

namespace brig::egress {
namespace {

TEST(EgressControl, RequestsRoundTrip) {
  ControlRequest set{7, SetPolicy{"10.200.0.1", "abc", {"example.com", "1.1.1.1"}, {"0.0.0.0/0"}}};
  std::string line = encode_request(set);
  ASSERT_EQ(line.back(), '\n');
  auto back = parse_request(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->id, 7u);
  const auto& s = std::get<SetPolicy>(back->op);
  EXPECT_EQ(s.source, "10.200.0.1");
  EXPECT_EQ(s.sandbox, "abc");
  EXPECT_EQ(s.allow_out, (std::vector<std::string>{"example.com", "1.1.1.1"}));
  EXPECT_EQ(s.deny_out, (std::vector<std::string>{"0.0.0.0/0"}));
  EXPECT_TRUE(s.rules.empty());
  // With header rules: names and values as they were, a broken rule with its reason.
  std::vector<HeaderRule> rules = {{"api.example.com", {{"Authorization", "Bearer x"}, {"X-A", ""}}, ""},
                                   {"*.example.org", {}, "the secret 'k' of this domain's header rule is not set"}};
  ControlRequest with{9, SetPolicy{"10.200.0.1", "abc", {}, {}, rules}};
  line = encode_request(with);
  auto again = parse_request(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(std::get<SetPolicy>(again->op).rules, rules);
  for (const char* bad : {R"({"op":"set","source":"1.2.3.4","sandbox":"a","rules":{}})",
                          R"({"op":"set","source":"1.2.3.4","sandbox":"a","rules":[{"domain":"a.b","headers":[["x"]]}]})",
                          R"({"op":"set","source":"1.2.3.4","sandbox":"a","rules":[{"headers":[]}]})"})
    EXPECT_FALSE(parse_request(bad)) << bad;
  auto rm = parse_request(R"({"op":"remove","id":8,"source":"10.200.0.1"})");
  ASSERT_TRUE(rm);
  EXPECT_EQ(std::get<RemovePolicy>(rm->op).source, "10.200.0.1");
}

TEST(EgressControl, EventsRoundTrip) {
  Decision d{"sbx", "10.200.0.1", "tcp", "tls", "example.com", "1.2.3.4:443", true, "allowOut example.com", 42};
  auto e = parse_event(encode_event(d));
  ASSERT_TRUE(e);
  const auto& got = std::get<Decision>(*e);
  EXPECT_EQ(got.name, "example.com");
  EXPECT_TRUE(got.allow);
  EXPECT_EQ(got.reason, "allowOut example.com");
  EXPECT_EQ(got.time_ms, 42);
  EXPECT_EQ(std::get<Ack>(*parse_event(encode_event(Ack{3, "bad"}))).error, "bad");
  EXPECT_EQ(std::get<Ack>(*parse_event(encode_event(Ack{3, ""}))).id, 3u);
  EXPECT_EQ(std::get<Dropped>(*parse_event(encode_event(Dropped{9}))).count, 9u);
  EXPECT_EQ(std::get<Ready>(*parse_event(encode_event(Ready{"0.0.0.0:1", "0.0.0.0:2"}))).dns, "0.0.0.0:2");
  // A name with bytes that are not UTF-8 still makes one valid line.
  d.name = std::string("a\xff\n", 3);
  std::string line = encode_event(d);
  EXPECT_EQ(line.find('\n'), line.size() - 1);
}

TEST(EgressControl, BadLinesAreErrors) {
  for (const char* bad : {"", "{", "[]", "42", R"({"id":1})", R"({"op":1})", R"({"op":"nope"})",
                          R"({"op":"set","source":"1.1.1.1"})", R"({"op":"set","source":1,"sandbox":"a"})",
                          R"({"op":"set","source":"1.1.1.1","sandbox":"a","allowOut":"x"})",
                          R"({"op":"set","source":"1.1.1.1","sandbox":"a","allowOut":[1]})", R"({"op":"remove"})"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(parse_request(bad));
  }
  EXPECT_FALSE(parse_request(std::string(50, '[') + std::string(50, ']')));
  EXPECT_FALSE(parse_request(std::string(kMaxControlLine + 1, ' ')));
  EXPECT_FALSE(parse_event(R"({"op":"decision","kind":"tcp","verdict":"maybe"})"));
}

}  // namespace
}  // namespace brig::egress
