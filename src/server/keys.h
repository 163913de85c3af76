// API keys: created with `brig key create` (shown once, stored as a sha256 hash in the state
// directory's database) or given to the daemon in BRIG_API_KEY. Never logged.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "store/template_store.h"

namespace brig::server {

class KeyStore {
 public:
  static Result<std::unique_ptr<KeyStore>> open(const std::string& state_dir);
  ~KeyStore();
  // A new key ("brig_" + 40 chars); only its hash is kept.
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

}  // namespace brig::server
