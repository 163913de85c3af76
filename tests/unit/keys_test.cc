// API keys: new ones have E2B's shape (the Python SDK checks it before sending anything); keys
// minted before, in brig's old shape, keep working.
#include "core/keys.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <regex>
#include <set>

#include "base/util.h"

#include "temp_dir.h"

namespace brig::core {
namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("brig-keys") {}
};

TEST(Keys, NewKeysAreE2bFollowedByFortyHexCharacters) {
  TempDir dir;
  auto keys = KeyStore::open(dir.path);
  ASSERT_TRUE(keys) << keys.error().message();
  // The Python SDK's check (e2b/api/__init__.py): "e2b_" then hex.
  const std::regex python_sdk_check("^e2b_[0-9a-f]{40}$");
  std::set<std::string> seen;
  for (int i = 0; i < 20; ++i) {
    auto key = (*keys)->create("test");
    ASSERT_TRUE(key) << key.error().message();
    EXPECT_TRUE(std::regex_match(*key, python_sdk_check)) << *key;
    EXPECT_TRUE(looks_like_e2b_key(*key));
    EXPECT_TRUE((*keys)->valid(*key));
    seen.insert(*key);
  }
  EXPECT_EQ(seen.size(), 20u);
  EXPECT_FALSE((*keys)->valid("e2b_" + std::string(40, '0')));
}

TEST(Keys, KeysIssuedInTheOldShapeStayValid) {
  TempDir dir;
  { auto keys = KeyStore::open(dir.path); ASSERT_TRUE(keys); }
  // A key minted by an earlier brig ("brig_" + 40 chars), stored as its hash as it was then.
  const std::string legacy = "brig_abcdefghij0123456789klmnopqrst0123456789";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir.path + "/brig.db").c_str(), &db), SQLITE_OK);
  std::string sql = "INSERT INTO api_keys (hash, name, created_at) VALUES ('" + sha256_hex(legacy) + "', 'old', 0);";
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto keys = KeyStore::open(dir.path);
  ASSERT_TRUE(keys);
  EXPECT_TRUE((*keys)->valid(legacy));
  EXPECT_FALSE(looks_like_e2b_key(legacy));
  EXPECT_FALSE((*keys)->valid(legacy + "x"));
}

TEST(Keys, E2bShapeCheck) {
  EXPECT_TRUE(looks_like_e2b_key("e2b_0123456789abcdef0123456789abcdef01234567"));
  EXPECT_FALSE(looks_like_e2b_key("e2b_0123456789abcdef"));
  EXPECT_FALSE(looks_like_e2b_key("e2b_0123456789ABCDEF0123456789abcdef01234567"));
  EXPECT_FALSE(looks_like_e2b_key("e2b_"));
  EXPECT_FALSE(looks_like_e2b_key("e2b_xyz"));
  EXPECT_FALSE(looks_like_e2b_key("E2B_0123"));
  EXPECT_FALSE(looks_like_e2b_key(""));
}

}  // namespace
// The daemon's memory of its sandboxes: what it saves comes back (ingress and egress halves),
// and what ended while no daemon ran is forgotten by retain().
TEST(DaemonState, SavedSandboxesComeBackAndRetainForgetsTheRest) {
  TempDir dir;
  auto state = brig::core::DaemonState::open(dir.path);
  ASSERT_TRUE(state) << state.error().message();
  brig::core::DaemonState::Saved a{"token-a", "base", {false, "h:${PORT}", {443, 8443}}, R"({"allowOut":["x.test"]})"};
  (*state)->save("aaaaaaaaaaaaaaaaaaaa", a);
  (*state)->save("bbbbbbbbbbbbbbbbbbbb", {"token-b", "node", {}, ""});
  (*state)->save_network("aaaaaaaaaaaaaaaaaaaa", R"({"denyOut":["0.0.0.0/0"]})");
  auto got = (*state)->load("aaaaaaaaaaaaaaaaaaaa");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->token, "token-a");
  EXPECT_EQ(got->template_name, "base");
  EXPECT_FALSE(got->ingress.allow_public_traffic);
  EXPECT_EQ(got->ingress.mask_request_host, "h:${PORT}");
  EXPECT_EQ(got->ingress.https_ports, (std::vector<uint16_t>{443, 8443}));
  EXPECT_TRUE((*state)->load("bbbbbbbbbbbbbbbbbbbb")->ingress.https_ports.empty());
  EXPECT_EQ(got->network, R"({"denyOut":["0.0.0.0/0"]})");
  (*state)->retain({"aaaaaaaaaaaaaaaaaaaa"});
  EXPECT_TRUE((*state)->load("aaaaaaaaaaaaaaaaaaaa"));
  EXPECT_FALSE((*state)->load("bbbbbbbbbbbbbbbbbbbb"));
}

}  // namespace brig::core
