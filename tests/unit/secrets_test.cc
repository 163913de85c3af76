// Secrets: values go in and never come out of the store's reads; the file that holds them is
// root's alone; and a value is redacted from output however the output is cut into pieces.
#include "core/secrets.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <random>
#include <set>

#include "temp_dir.h"

namespace brig::core {
namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("brig-secrets") {}
};

config::Limits limits() { return config::Config{}.limits; }

TEST(Secrets, CreateGetUpdateDeleteAndTheValueOnlyInTheRootOnlyFile) {
  TempDir dir;
  auto store = SecretStore::open(dir.path, limits());
  ASSERT_TRUE(store) << store.error().message();
  auto s = (*store)->create("OpenAI-Key", "sk-live-0123456789", {{"team", "ml"}});
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->name, "openai-key");  // lower-cased, as E2B stores it
  EXPECT_TRUE(s->id.starts_with("sec_"));
  EXPECT_EQ(s->version, 1);
  // Found by id and by name in any case; the same metadata.
  auto by_id = (*store)->get(s->id);
  auto by_name = (*store)->get("OPENAI-KEY");
  ASSERT_TRUE(by_id && by_name);
  EXPECT_EQ(by_name->id, s->id);
  EXPECT_EQ(by_id->metadata.at("team"), "ml");
  EXPECT_EQ(*(*store)->value("openai-key"), "sk-live-0123456789");
  // A second of the same name is a conflict; an update is a new version.
  auto again = (*store)->create("openai-key", "x-other-value", {});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().sys_errno(), EEXIST);
  auto updated = (*store)->update("openai-key", "sk-live-9876543210", std::nullopt);
  ASSERT_TRUE(updated);
  EXPECT_EQ(updated->version, 2);
  EXPECT_EQ(updated->metadata.at("team"), "ml");  // kept when not given
  EXPECT_EQ(*(*store)->value("openai-key"), "sk-live-9876543210");
  // Root's alone, and the value is in no other file of the state directory.
  struct stat st {};
  ASSERT_EQ(::stat((dir.path + "/secrets.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  for (auto& e : std::filesystem::directory_iterator(dir.path)) {
    if (e.path().filename().string().starts_with("secrets.db")) {
      ASSERT_EQ(::stat(e.path().c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 0077, 0u) << e.path();
    }
  }
  auto page = (*store)->list(0, 10);
  ASSERT_EQ(page.rows.size(), 1u);
  EXPECT_FALSE(page.next_offset);
  ASSERT_TRUE((*store)->remove(s->id));
  EXPECT_TRUE((*store)->get("openai-key").error().is(errc::not_found));
  EXPECT_TRUE((*store)->remove("openai-key").error().is(errc::not_found));
}

TEST(Secrets, BadNamesValuesAndMetadataAreTheCallersMistake) {
  TempDir dir;
  auto store = SecretStore::open(dir.path, limits());
  ASSERT_TRUE(store);
  for (const std::string& name : std::vector<std::string>{"", "sec_reserved", "has space", "dollar$", "brace{", std::string(129, 'a')})
    EXPECT_TRUE((*store)->create(name, "value-123456", {}).error().is(errc::invalid_argument)) << name;
  EXPECT_TRUE((*store)->create("ok", "", {}).error().is(errc::invalid_argument));
  EXPECT_TRUE((*store)->create("ok", std::string(65537, 'v'), {}).error().is(errc::invalid_argument));
  std::map<std::string, std::string> big;
  for (int i = 0; i < 65; ++i) big["k" + std::to_string(i)] = "v";
  EXPECT_TRUE((*store)->create("ok", "value-123456", big).error().is(errc::invalid_argument));
  EXPECT_TRUE((*store)->list(0, 10).rows.empty());
}

TEST(Secrets, PagesFollowEachOther) {
  TempDir dir;
  auto store = SecretStore::open(dir.path, limits());
  ASSERT_TRUE(store);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*store)->create("s" + std::to_string(i), "value-" + std::to_string(i) + "xyz", {}));
  std::set<std::string> seen;
  size_t offset = 0;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = (*store)->list(offset, 2);
    for (auto& r : page.rows) seen.insert(r.name);
    if (!page.next_offset) break;
    offset = *page.next_offset;
  }
  EXPECT_EQ(seen.size(), 5u);
}

TEST(Redaction, AValueSplitAcrossReadsIsStillFound) {
  RedactionSet set({"sk-live-0123456789", "short"});  // "short" is under kMinRedactedBytes
  const std::string text = "key=sk-live-0123456789; again sk-live-0123456789 and sk-live-01234 short\n";
  const std::string want = "key=[redacted]; again [redacted] and sk-live-01234 short\n";
  std::string whole = text;
  set.redact(whole);
  EXPECT_EQ(whole, want);
  // Every way of cutting the text in two, and random cuts into many pieces.
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    StreamRedactor r;
    std::string out = r.feed(set, text.substr(0, cut));
    out += r.feed(set, text.substr(cut));
    out += r.flush();
    EXPECT_EQ(out, want) << "cut at " << cut;
  }
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    StreamRedactor r;
    std::string out;
    for (size_t at = 0; at < text.size();) {
      size_t n = 1 + rng() % 6;
      out += r.feed(set, text.substr(at, n));
      at += n;
    }
    out += r.flush();
    EXPECT_EQ(out, want);
  }
}

TEST(Redaction, OnlyAPossibleStartIsHeldBackAndTheEndReleasesIt) {
  RedactionSet set({"sk-live-0123456789"});
  StreamRedactor r;
  EXPECT_EQ(r.feed(set, "plain output\n"), "plain output\n");  // nothing held
  EXPECT_EQ(r.feed(set, "then sk-li"), "then ");              // may be the start of the value
  EXPECT_TRUE(r.holding());
  EXPECT_EQ(r.feed(set, "ne"), "sk-line");                     // it was not
  EXPECT_EQ(r.feed(set, " sk-live-01"), " ");
  EXPECT_EQ(r.flush(), "sk-live-01");                          // the stream ended: out it goes
  // With nothing to redact, bytes pass as they are.
  RedactionSet none({});
  StreamRedactor p;
  EXPECT_EQ(p.feed(none, "sk-live-0123456789"), "sk-live-0123456789");
}

TEST(Redaction, TheJsonFormOfAValueIsRedactedInCellMessages) {
  RedactionSet set({"pa\"ss\\word-123"});
  std::string line = R"({"type":"stdout","text":"pa\"ss\\word-123\n"})";
  EXPECT_TRUE(set.redact(line));
  EXPECT_EQ(line, R"({"type":"stdout","text":"[redacted]\n"})");
}

}  // namespace
}  // namespace brig::core
