// The typed configuration: the schema's own consistency, TOML parsing (types, bounds, unknown
// keys), the order of the sources (defaults < file < environment < flags), and printing.
#include "config/config.h"
#include "base/util.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

namespace brig::config {
namespace {

// A file under the test's temporary directory holding `text`, removed when the test ends.
struct TempFile {
  TempFile(const std::string& name, const std::string& text)
      : path(::testing::TempDir() + "brig-config-" + std::to_string(::getpid()) + "-" + name) {
    std::ofstream(path) << text;
  }
  ~TempFile() { ::unlink(path.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string path;
};

// Sources that read no file unless told to: the machine's /etc/brig/brig.toml must not leak in.
Sources hermetic() {
  Sources s;
  s.default_path = "/nonexistent/brig.toml";
  s.euid = 1000;
  s.env = {{"HOME", "/home/tester"}};
  return s;
}

void expect_error(const Result<Config>& r, std::initializer_list<std::string> parts, bool invalid = true) {
  ASSERT_FALSE(r) << "no error";
  if (invalid) {
    EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().message();
  }
  for (auto& p : parts) EXPECT_NE(r.error().message().find(p), std::string::npos) << "'" << p << "' not in: " << r.error().message();
}

TEST(ConfigSchema, DefaultsAreWithinTheirBoundsAndValid) {
  Config c;
  for (auto& f : fields()) {
    if (f.kind == Kind::integer) {
      EXPECT_GE(f.get_int(c), f.min) << f.name();
      EXPECT_LE(f.get_int(c), f.max) << f.name();
      EXPECT_LE(f.min, f.max) << f.name();
    }
    EXPECT_FALSE(f.doc.empty()) << f.name();
  }
  EXPECT_TRUE(validate(c)) << validate(c).error().message();
}

TEST(ConfigSchema, NamesAreUniqueAndEverySectionHasFields) {
  std::set<std::string> names, env_names;
  for (auto& f : fields()) {
    EXPECT_TRUE(names.insert(f.name()).second) << f.name();
    EXPECT_TRUE(env_names.insert(f.env_name()).second) << f.env_name();
    EXPECT_EQ(find(f.name()), &f);
  }
  for (auto& s : sections()) {
    bool any = false;
    for (auto& f : fields()) any |= f.section == s.name;
    EXPECT_TRUE(any) << s.name;
  }
  EXPECT_EQ(find("server.nope"), nullptr);
  EXPECT_EQ(find("server"), nullptr);
  EXPECT_EQ(find(""), nullptr);
}

TEST(ConfigSchema, TheDefaultsAreTheOnesTheCodeHadBefore) {
  // The values brig used before the schema existed: a change here changes behaviour.
  Config c;
  EXPECT_EQ(c.server.listen, "127.0.0.1:49982");
  EXPECT_EQ(c.server.pool_size, 1u);
  EXPECT_EQ(c.server.max_connections, 1024u);
  EXPECT_EQ(c.sandbox.memory_mib, 512u);
  EXPECT_EQ(c.sandbox.lifetime_s, 300u);
  EXPECT_EQ(c.sandbox.max_lifetime_s, 30u * 24 * 3600);
  EXPECT_EQ(c.limits.upload_bytes, 512ull << 20);
  EXPECT_EQ(c.mcp.output_chars, 24000u);
  EXPECT_EQ(c.mcp.code_mode_timeout_ms, 30000u);
  EXPECT_EQ(c.build.ca_file, "/etc/ssl/certs/ca-certificates.crt");
}

TEST(ConfigToml, ReadsTypedValuesIntoTheirFields) {
  auto r = parse_toml(R"(
[server]
listen = "0.0.0.0:8080"
pool_size = 3
[limits]
upload_bytes = 1048576
[build]
ca_file = "/etc/corp-ca.pem"
)",
                      "test.toml");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->server.listen, "0.0.0.0:8080");
  EXPECT_EQ(r->server.pool_size, 3u);
  EXPECT_EQ(r->limits.upload_bytes, 1u << 20);
  EXPECT_EQ(r->build.ca_file, "/etc/corp-ca.pem");
  EXPECT_EQ(r->server.max_connections, 1024u);  // untouched: the default
  // Dotted keys are the same keys.
  auto dotted = parse_toml("sandbox.memory_mib = 1024\n", "dotted.toml");
  ASSERT_TRUE(dotted) << dotted.error().message();
  EXPECT_EQ(dotted->sandbox.memory_mib, 1024u);
}

TEST(ConfigToml, AnUnknownKeyNamesItselfItsPlaceAndTheKnownKeys) {
  expect_error(parse_toml("[server]\nlisten = \"a:1\"\npoolsize = 2\n", "brig.toml"),
               {"brig.toml:3:", "unknown key server.poolsize", "pool_size", "max_connections"});
  expect_error(parse_toml("[serve]\nlisten = \"a:1\"\n", "brig.toml"), {"brig.toml:1:", "unknown section [serve]", "[server]"});
  expect_error(parse_toml("listen = \"a:1\"\n", "brig.toml"), {"listen is outside any section"});
  expect_error(parse_toml("server = 1\n", "brig.toml"), {"server must be a section"});
  expect_error(parse_toml("[server.tls]\ncert = \"x\"\n", "brig.toml"), {"unknown key server.tls"});
}

TEST(ConfigToml, AWrongTypeNamesTheKeyAndWhatItWants) {
  expect_error(parse_toml("[server]\npool_size = \"2\"\n", "brig.toml"),
               {"brig.toml:2:", "server.pool_size wants an integer", "not a string"});
  expect_error(parse_toml("[server]\nlisten = 8080\n", "brig.toml"), {"server.listen wants a string", "not a integer"});
  expect_error(parse_toml("[sandbox]\nmemory_mib = 1.5\n", "brig.toml"), {"sandbox.memory_mib wants an integer"});
  expect_error(parse_toml("[sandbox]\nmemory_mib = [1]\n", "brig.toml"), {"sandbox.memory_mib wants an integer"});
  expect_error(parse_toml("[sandbox]\nmemory_mib = true\n", "brig.toml"), {"sandbox.memory_mib wants an integer"});
}

TEST(ConfigToml, AnOutOfBoundValueNamesTheBound) {
  expect_error(parse_toml("[server]\npool_size = 65\n", "brig.toml"),
               {"brig.toml:2:", "server.pool_size = 65 is out of bounds", "from 0 to 64"});
  expect_error(parse_toml("[sandbox]\nmemory_mib = 8\n", "brig.toml"), {"sandbox.memory_mib = 8", "from 16 (16 MiB) to 262144 (256 GiB)"});
  expect_error(parse_toml("[sandbox]\nmemory_mib = -1\n", "brig.toml"), {"sandbox.memory_mib = -1 is out of bounds"});
  // Larger than the field's C++ type holds: still a bound error, never a wrap-around.
  expect_error(parse_toml("[sandbox]\npids = 9223372036854775807\n", "brig.toml"), {"sandbox.pids", "out of bounds"});
  expect_error(parse_toml("[server]\nlisten = \"\"\n", "brig.toml"), {"server.listen is 0 bytes long", "1 to 255 bytes"});
  expect_error(parse_toml("[server]\nlog_level = \"loud\"\n", "brig.toml"), {"server.log_level", "one of debug|info|warn|error|off"});
}

TEST(ConfigToml, ASyntaxErrorSaysWhere) {
  expect_error(parse_toml("[server]\nlisten = \"unterminated\n", "brig.toml"), {"brig.toml:2:"});
  expect_error(parse_toml("[server]\npool_size = 1\npool_size = 2\n", "brig.toml"), {"brig.toml:3:"});
}

TEST(ConfigLoad, NoFileMeansTheDefaultsWithTheStateDirResolved) {
  auto r = load(hermetic());
  ASSERT_TRUE(r) << r.error().message();
  Config expected;
  expected.server.state_dir = "/home/tester/.local/state/brig";
  EXPECT_EQ(*r, expected);
}

TEST(ConfigLoad, TheFileTheEnvironmentAndFlagsWinInThatOrder) {
  auto s = hermetic();
  TempFile file("order.toml", "[server]\npool_size = 2\nmax_connections = 10\nidle_timeout_s = 5\n");
  s.path = file.path;
  auto file_only = load(s);
  ASSERT_TRUE(file_only) << file_only.error().message();
  EXPECT_EQ(file_only->server.pool_size, 2u);

  s.env["BRIG_SERVER_POOL_SIZE"] = "3";
  s.env["BRIG_SERVER_MAX_CONNECTIONS"] = "20";
  auto with_env = load(s);
  ASSERT_TRUE(with_env) << with_env.error().message();
  EXPECT_EQ(with_env->server.pool_size, 3u);
  EXPECT_EQ(with_env->server.max_connections, 20u);
  EXPECT_EQ(with_env->server.idle_timeout_s, 5u);  // only the file set it

  s.flags = {{"server.pool_size", "4", "--pool"}};
  auto with_flags = load(s);
  ASSERT_TRUE(with_flags) << with_flags.error().message();
  EXPECT_EQ(with_flags->server.pool_size, 4u);
  EXPECT_EQ(with_flags->server.max_connections, 20u);
  EXPECT_EQ(with_flags->server.idle_timeout_s, 5u);
  // The last flag of a field wins.
  s.flags.push_back({"server.pool_size", "5", ""});
  EXPECT_EQ(load(s)->server.pool_size, 5u);
}

TEST(ConfigLoad, EstablishedEnvironmentNamesStillWork) {
  auto s = hermetic();
  s.env["BRIG_URL"] = "http://10.0.0.1:1234";
  s.env["BRIG_API_KEY"] = "e2b_secret";
  s.env["BRIG_CODE_MODE_TIMEOUT_MS"] = "5000";
  s.env["BRIG_BUILD_CA_FILE"] = "/etc/proxy-ca.pem";
  s.env["BRIG_STATE_DIR"] = "/srv/brig";
  s.env["BRIG_LOG_LEVEL"] = "debug";
  auto r = load(s);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->client.url, "http://10.0.0.1:1234");
  EXPECT_EQ(r->client.api_key, "e2b_secret");
  EXPECT_EQ(r->server.api_key, "e2b_secret");  // the daemon accepts it, the CLI sends it
  EXPECT_EQ(r->mcp.code_mode_timeout_ms, 5000u);
  EXPECT_EQ(r->build.ca_file, "/etc/proxy-ca.pem");
  EXPECT_EQ(r->server.state_dir, "/srv/brig");
  EXPECT_EQ(r->server.log_level, "debug");
  // The generic name of the same field is more specific and wins over the established one.
  s.env["BRIG_MCP_CODE_MODE_TIMEOUT_MS"] = "7000";
  EXPECT_EQ(load(s)->mcp.code_mode_timeout_ms, 7000u);
  // An empty variable is unset, as it always was.
  s.env["BRIG_URL"] = "";
  EXPECT_EQ(load(s)->client.url, "http://127.0.0.1:49982");
}

TEST(ConfigLoad, BadEnvironmentAndFlagValuesNameTheirSource) {
  auto s = hermetic();
  s.env["BRIG_CODE_MODE_TIMEOUT_MS"] = "10";
  expect_error(load(s), {"environment BRIG_CODE_MODE_TIMEOUT_MS", "mcp.code_mode_timeout_ms = 10 is out of bounds", "from 1000 ms to 600000 ms"});
  s = hermetic();
  s.env["BRIG_SERVER_POOL_SIZE"] = "two";
  expect_error(load(s), {"environment BRIG_SERVER_POOL_SIZE", "wants a whole number", "\"two\""});
  s = hermetic();
  s.env["BRIG_LIMITS_WATCHER"] = "3";  // a typo of BRIG_LIMITS_WATCHERS
  expect_error(load(s), {"BRIG_LIMITS_WATCHER is not a setting", "watchers"});
  s = hermetic();
  s.env["BRIG_TEST_ROOTFS"] = "/x";  // not a section of ours: none of our business
  EXPECT_TRUE(load(s));
  s.flags = {{"server.pool_size", "99", "--pool"}};
  expect_error(load(s), {"--pool: server.pool_size = 99 is out of bounds"});
  s.flags = {{"limits.nope", "1", ""}};
  expect_error(load(s), {"--set limits.nope", "unknown setting"});
  s.flags = {{"server.pool_size", "-1", ""}};
  expect_error(load(s), {"--set server.pool_size", "wants a whole number"});
}

TEST(ConfigLoad, AnExplicitFileMustExistTheDefaultOneMayNot) {
  auto s = hermetic();
  s.path = "/nonexistent/brig.toml";
  expect_error(load(s), {"read the configuration file /nonexistent/brig.toml", "ENOENT"}, false);
  s = hermetic();
  s.env["BRIG_CONFIG"] = "/nonexistent/other.toml";
  expect_error(load(s), {"read the configuration file /nonexistent/other.toml", "ENOENT"}, false);
  s = hermetic();
  TempFile default_file("default.toml", "[server]\npool_size = 7\n");
  s.default_path = default_file.path;
  EXPECT_EQ(load(s)->server.pool_size, 7u);
  // --config replaces the default file: it is not read at all.
  TempFile explicit_file("explicit.toml", "[server]\nmax_connections = 9\n");
  s.path = explicit_file.path;
  EXPECT_EQ(load(s)->server.pool_size, 1u);
  EXPECT_EQ(load(s)->server.max_connections, 9u);
}

TEST(ConfigLoad, ChecksBetweenFields) {
  auto s = hermetic();
  s.flags = {{"sandbox.lifetime_s", "7200", ""}, {"sandbox.max_lifetime_s", "3600", ""}};
  expect_error(load(s), {"sandbox.lifetime_s = 7200 is longer than sandbox.max_lifetime_s = 3600"});
  s.flags = {{"client.url", "https://x:1", ""}};
  expect_error(load(s), {"client.url", "http://HOST:PORT"});
  s.flags = {{"limits.metadata_total_bytes", "100", ""}};
  expect_error(load(s), {"limits.metadata_total_bytes"});
}

TEST(ConfigLoad, TheStateDirDefaultFollowsTheUserAndTheEnvironment) {
  EXPECT_EQ(default_state_dir({{"HOME", "/home/a"}}, 0), "/var/lib/brig");
  EXPECT_EQ(default_state_dir({{"HOME", "/home/a"}, {"XDG_STATE_HOME", "/xdg"}}, 1000), "/xdg/brig");
  EXPECT_EQ(default_state_dir({{"HOME", "/home/a"}}, 1000), "/home/a/.local/state/brig");
  EXPECT_EQ(default_state_dir({}, 1000), "/tmp/brig-1000");
}

// Every field set away from its default, so a field the printer forgot cannot pass.
Config everything_changed() {
  Config c;
  for (auto& f : fields()) {
    if (f.kind == Kind::integer) {
      f.set_int(c, f.get_int(c) == f.max ? f.min : f.max);
    } else if (!f.extra.choices.empty()) {
      for (auto& choice : split(std::string(f.extra.choices), '|'))  // another choice than the default
        if (choice != f.get_str(c)) f.set_str(c, choice);
    } else if (f.name() == "client.url") {
      f.set_str(c, "http://[::1]:7");
    } else if (f.name() == "network.subnet") {
      f.set_str(c, "10.99.0.0/24");
    } else if (f.name() == "network.dns_upstream") {
      f.set_str(c, "9.9.9.9");
    } else {
      f.set_str(c, "q\"uote \\ tab\t é " + f.name());
    }
  }
  c.sandbox.lifetime_s = c.sandbox.max_lifetime_s;  // the one check between them
  c.limits.metadata_total_bytes = c.limits.metadata_key_bytes + c.limits.metadata_value_bytes;
  return c;
}

TEST(ConfigPrint, PrintingThenParsingGivesTheSameConfig) {
  Config c = everything_changed();
  for (auto& f : fields()) {
    if (f.kind == Kind::integer) EXPECT_NE(f.get_int(c), f.get_int(Config{})) << f.name();
    else EXPECT_NE(f.get_str(c), f.get_str(Config{})) << f.name();
  }
  ASSERT_TRUE(validate(c)) << validate(c).error().message();
  std::string text = to_toml(c);
  auto back = parse_toml(text, "printed");
  ASSERT_TRUE(back) << back.error().message() << "\n" << text;
  // Secrets are not printed: they come back empty; everything else comes back as it was.
  Config expected = c;
  expected.server.api_key.clear();
  expected.client.api_key.clear();
  EXPECT_EQ(*back, expected) << text;
  EXPECT_EQ(text.find(c.server.api_key), std::string::npos);
  EXPECT_NE(text.find("api_key = (set; not printed)"), std::string::npos);
  // The defaults too, and they print their comments and bounds.
  std::string defaults = to_toml(Config{});
  EXPECT_EQ(*parse_toml(defaults, "defaults"), Config{});
  EXPECT_NE(defaults.find("# Warm sandboxes kept ready per built-in template. From 0 to 64. Flag: serve --pool.\n"
                          "pool_size = 1\n"),
            std::string::npos)
      << defaults;
  EXPECT_NE(defaults.find("upload_bytes = 536870912  # 512 MiB\n"), std::string::npos) << defaults;
  EXPECT_NE(defaults.find("[limits]\n"), std::string::npos);
}

TEST(ConfigPrint, APrintedFileLoadsThroughTheFileSource) {
  Config c = everything_changed();
  auto s = hermetic();
  TempFile file("printed.toml", to_toml(c));
  s.path = file.path;
  auto r = load(s);
  ASSERT_TRUE(r) << r.error().message();
  Config expected = c;
  expected.server.api_key.clear();
  expected.client.api_key.clear();
  EXPECT_EQ(*r, expected);
}

}  // namespace
}  // namespace brig::config
