// API keys: created with `brig key create` (shown once, stored as a sha256 hash in the state
// directory's database) or given to the daemon in BRIG_API_KEY. Never logged.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "core/ingress.h"

namespace brig::core {

// New keys look like E2B's ("e2b_" + 40 hex characters): the official Python SDK refuses any
// other shape before it sends a request. Keys minted earlier ("brig_…") stay valid.
inline constexpr std::string_view kKeyPrefix = "e2b_";
// The shape brig mints: kKeyPrefix + 40 lowercase hex characters.
bool looks_like_e2b_key(std::string_view key);

class KeyStore {
 public:
  static Result<std::unique_ptr<KeyStore>> open(const std::string& state_dir);
  ~KeyStore();
  // A new key (kKeyPrefix + 40 hex characters); only its hash is kept.
  Result<std::string> create(const std::string& name);
  bool valid(const std::string& key);
  // Adds a key that is valid for this process only (BRIG_API_KEY).
  void add_ephemeral(const std::string& key);
  size_t count();

 private:
  explicit KeyStore(void* db) : db_(db) {}
  void* db_;
  std::string ephemeral_hash_;
};

// What the daemon must remember about its sandboxes across restarts (to re-adopt them): the
// envd access token, the template, the ingress rules and the egress configuration (E2B's, as
// given: network_to_text). In the state dir's database, like the key hashes.
class DaemonState {
 public:
  struct Saved {
    std::string token;
    std::string template_name;
    Ingress ingress;
    std::string network;  // network_to_text
  };
  static Result<std::unique_ptr<DaemonState>> open(const std::string& state_dir);
  ~DaemonState();
  void save(const std::string& id, const Saved& saved);
  void save_network(const std::string& id, const std::string& network);
  std::optional<Saved> load(const std::string& id);
  void forget(const std::string& id);

 private:
  explicit DaemonState(void* db) : db_(db) {}
  void* db_;
};

}  // namespace brig::core
