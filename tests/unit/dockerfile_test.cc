#include "store/dockerfile.h"

#include <gtest/gtest.h>

namespace brig::store {
namespace {

TEST(Dockerfile, ParsesTheSupportedSubset) {
  auto df = parse_dockerfile(R"(# an e2b.Dockerfile
FROM debian:bookworm-slim
ARG VERSION=1.2
ENV A=1 B="two words" \
    C=3
ENV LEGACY value with spaces
RUN apt-get update \
 && apt-get install -y curl
RUN ["echo", "exec form"]
WORKDIR /app
USER user
COPY --chmod=755 --chown=user run.sh lib/ /app/
LABEL maintainer="me"
EXPOSE 8080
# brig:start python3 -m http.server
# brig:ready curl -sf localhost:8000
# brig:cpus 2
# brig:memory 1G
)");
  ASSERT_TRUE(df) << df.error().message();
  ASSERT_EQ(df->steps.size(), 10u);
  EXPECT_EQ(df->steps[0].op, Op::from);
  EXPECT_EQ(df->steps[0].args[0], "debian:bookworm-slim");
  EXPECT_EQ(df->steps[1].op, Op::arg);
  EXPECT_EQ(df->steps[1].pairs[0], std::make_pair(std::string("VERSION"), std::string("1.2")));
  EXPECT_EQ(df->steps[2].pairs.size(), 3u);
  EXPECT_EQ(df->steps[2].pairs[1].second, "two words");
  EXPECT_EQ(df->steps[2].line, 4);
  EXPECT_EQ(df->steps[3].pairs[0].second, "value with spaces");
  EXPECT_EQ(df->steps[4].args[0], "apt-get update  && apt-get install -y curl");
  EXPECT_EQ(df->steps[4].line, 7);
  EXPECT_TRUE(df->steps[5].exec_form);
  EXPECT_EQ(df->steps[5].args, (std::vector<std::string>{"echo", "exec form"}));
  EXPECT_EQ(df->steps[7].args[0], "user");
  EXPECT_EQ(df->steps[8].op, Op::copy);
  EXPECT_EQ(df->steps[8].chmod, 0755u);
  EXPECT_EQ(df->steps[8].chown, "user");
  EXPECT_EQ(df->steps[8].args, (std::vector<std::string>{"run.sh", "lib/", "/app/"}));
  EXPECT_EQ(df->start_cmd, "python3 -m http.server");
  EXPECT_EQ(df->ready_cmd, "curl -sf localhost:8000");
  EXPECT_EQ(df->cpus, 2);
  EXPECT_EQ(df->memory_bytes, 1ull << 30);
}

// Each error names the file and the line.
void expect_error(const std::string& text, const std::string& where, const std::string& what) {
  auto df = parse_dockerfile(text, "e2b.Dockerfile");
  ASSERT_FALSE(df) << text;
  EXPECT_TRUE(df.error().is(errc::invalid_argument));
  EXPECT_NE(df.error().message().find("e2b.Dockerfile:" + where + ":"), std::string::npos) << df.error().message();
  EXPECT_NE(df.error().message().find(what), std::string::npos) << df.error().message();
}

TEST(Dockerfile, ErrorsNameTheLine) {
  expect_error("RUN echo hi\n", "1", "first instruction must be FROM");
  expect_error("FROM debian:bookworm\n\nHEALTHCHECK CMD true\n", "3", "not supported");
  expect_error("FROM debian:bookworm\nFROM debian:bookworm\n", "2", "only one FROM");
  expect_error("FROM debian:bookworm AS build\n", "1", "expected one image");
  expect_error("FROM debian:bookworm\nUSER www-data\n", "2", "'user' (uid 1000) or 'root'");
  expect_error("FROM debian:bookworm\nCOPY ../secret /x\n", "2", "inside the build context");
  expect_error("FROM debian:bookworm\nADD https://example.com/x /x\n", "2", "URLs are not supported");
  expect_error("FROM debian:bookworm\nRUN [\"unterminated\"\n", "2", "JSON array");
  expect_error("FROM debian:bookworm\nENV =x\n", "2", "KEY=VALUE");
  expect_error("FROM debian:bookworm\n# brig:frobnicate yes\n", "2", "unknown directive");
  expect_error("FROM debian:bookworm\n# brig:memory lots\n", "2", "invalid size");
  expect_error("FROM debian:bookworm\nRUN --mount=type=cache,target=/x true\n", "2", "not supported");
}

TEST(Dockerfile, CommentsInsideContinuationsAreDropped) {
  auto df = parse_dockerfile("FROM debian:bookworm\nRUN echo a \\\n# a comment\n && echo b\n");
  ASSERT_TRUE(df);
  EXPECT_EQ(df->steps[1].args[0], "echo a  && echo b");
}

TEST(Dockerfile, ExpandVars) {
  std::map<std::string, std::string> v = {{"A", "1"}, {"LONG_NAME", "x"}};
  EXPECT_EQ(expand_vars("$A-${LONG_NAME}-$MISSING-$", v), "1-x--$");
  EXPECT_EQ(expand_vars("/opt/${A}/bin", v), "/opt/1/bin");
}

TEST(Dockerfile, RejectsHugeDefinitions) {
  std::string big = "FROM debian:bookworm\n" + std::string(2 << 20, '#');
  EXPECT_FALSE(parse_dockerfile(big));
}

}  // namespace
}  // namespace brig::store
