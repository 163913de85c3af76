// Secrets (E2B's /secrets, e2b-next.md 2.4): named values a sandbox never holds. The API takes a
// value and never gives it back (reads return the metadata only); the values live in their own
// database in the state directory, readable by root only (secrets.db, mode 0600, beside a
// brig.db that holds no value), and are never logged. They are used at egress only (header rules,
// resolved by brig egress; not built yet), and, as a second layer, redacted wherever a sandbox's
// output leaves the daemon: process output (envd's streams, MCP's run_command) and code-cell
// messages.
//
// Thread safety: SecretStore is thread-safe. A RedactionSet is immutable; a StreamRedactor
// belongs to one stream.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "config/config.h"

namespace brig::core {

// What replaces a secret's value in output.
inline constexpr std::string_view kRedacted = "[redacted]";
// Values shorter than this are not redacted (a two-letter secret would blank out half of every
// output); they are still stored, and still used at egress.
inline constexpr size_t kMinRedactedBytes = 6;

struct SecretInfo {
  std::string id;    // "sec_" + 24 hex characters
  std::string name;  // lower-case, [a-z0-9_-]
  int64_t version = 1;
  std::map<std::string, std::string> metadata;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

struct SecretPage {
  std::vector<SecretInfo> rows;
  std::optional<size_t> next_offset;
};

// The values to redact, and for each a KMP failure table (to find, in linear time, how much of
// a stream's tail may be the start of a value).
class RedactionSet {
 public:
  explicit RedactionSet(std::vector<std::string> values);
  bool empty() const { return values_.empty(); }
  // Every occurrence of a value in a complete message (a code cell's line), raw or as it reads
  // inside a JSON string, replaced by kRedacted. Returns whether anything was replaced.
  bool redact(std::string& message) const;

 private:
  friend class StreamRedactor;
  std::vector<std::string> values_;       // longest first
  std::vector<std::vector<uint32_t>> fail_;
};

// Redaction of a byte stream that arrives in pieces: a value split across two reads is still
// found, because a tail that may be the start of a value is held back until the next piece (or
// the end of the stream) tells.
class StreamRedactor {
 public:
  // The bytes that can go out now.
  std::string feed(const RedactionSet& set, std::string_view in);
  // The end of the stream: what was held back.
  std::string flush() { return std::exchange(held_, {}); }
  bool holding() const { return !held_.empty(); }

 private:
  std::string held_;
};

class SecretStore {
 public:
  static Result<std::shared_ptr<SecretStore>> open(const std::string& state_dir, const config::Limits& limits);
  ~SecretStore();
  SecretStore(const SecretStore&) = delete;
  SecretStore& operator=(const SecretStore&) = delete;

  // errc::invalid_argument for a bad name, value or metadata; EEXIST (409) for a taken name;
  // errc::limit_exceeded past limits.secrets.
  Result<SecretInfo> create(const std::string& name, const std::string& value,
                            const std::map<std::string, std::string>& metadata);
  // A new version: the value replaced (only the current one is kept), metadata replaced when given.
  Result<SecretInfo> update(const std::string& id_or_name, const std::string& value,
                            const std::optional<std::map<std::string, std::string>>& metadata);
  Result<SecretInfo> get(const std::string& id_or_name);
  Result<> remove(const std::string& id_or_name);
  SecretPage list(size_t offset, size_t limit);
  // The current value of the secret named `name` (for egress rules); errc::not_found if none.
  Result<std::string> value(const std::string& name);
  // The values to redact now (a snapshot; replaced, never changed, when a secret changes).
  std::shared_ptr<const RedactionSet> redaction() const;
  // Whether there is anything to redact: one atomic load, for the output path's every read.
  bool redacting() const { return redacting_.load(std::memory_order_acquire); }
  // Called after each create, update and remove, on the caller's thread, with no lock held (the
  // service tells brig egress the header rules' new values). Set once, before any change.
  void on_change(std::function<void()> fn) { on_change_ = std::move(fn); }

 private:
  SecretStore(void* db, const config::Limits& limits) : db_(db), limits_(limits) {}
  Result<SecretInfo> find_locked(const std::string& id_or_name);
  Result<> check_value(const std::string& value) const;
  Result<> check_metadata(const std::map<std::string, std::string>& metadata) const;
  void reload_locked();
  struct Changed {
    SecretStore* store;
    bool fire = false;
    ~Changed() {
      if (fire && store->on_change_) store->on_change_();
    }
  };

  std::function<void()> on_change_;
  mutable std::mutex mu_;
  void* db_;
  config::Limits limits_;
  std::shared_ptr<const RedactionSet> redaction_;
  std::atomic<bool> redacting_{false};
};

// "Name" lower-cased if it is a usable secret name (E2B's: [a-zA-Z0-9_-], at most 128, not
// starting with the reserved "sec_"); the reason otherwise.
Result<std::string> secret_name(const std::string& name);

}  // namespace brig::core
