#include "core/keys.h"

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "base/util.h"
#include "sandbox/db.h"

namespace brig::core {
namespace {
sqlite3* db(void* p) { return static_cast<sqlite3*>(p); }
}  // namespace

bool looks_like_e2b_key(std::string_view key) {
  if (!key.starts_with(kKeyPrefix) || key.size() != kKeyPrefix.size() + 40) return false;
  return key.substr(kKeyPrefix.size()).find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

Result<std::unique_ptr<KeyStore>> KeyStore::open(const std::string& state_dir) {
  BRIG_TRY_ASSIGN(handle, db::open(state_dir + "/brig.db",
                                    "CREATE TABLE IF NOT EXISTS api_keys (hash TEXT PRIMARY KEY, name TEXT NOT NULL, "
                                    "created_at INTEGER NOT NULL);"));
  return std::unique_ptr<KeyStore>(new KeyStore(handle));
}

KeyStore::~KeyStore() { sqlite3_close(db(db_)); }

Result<std::string> KeyStore::create(const std::string& name) {
  std::string key = std::string(kKeyPrefix) + random_hex(20);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db(db_), "INSERT INTO api_keys (hash, name, created_at) VALUES (?, ?, ?);", -1, &st, nullptr);
  std::string hash = sha256_hex(key);
  sqlite3_bind_text(st, 1, hash.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, name.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 3, now_unix_ms());
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return Error::make(errc::protocol, "store key");
  return key;
}

bool KeyStore::valid(const std::string& key) {
  if (key.empty() || key.size() > 512) return false;
  std::string hash = sha256_hex(key);
  if (!ephemeral_hash_.empty() && CRYPTO_memcmp(hash.data(), ephemeral_hash_.data(), hash.size()) == 0) return true;
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db(db_), "SELECT 1 FROM api_keys WHERE hash = ?;", -1, &st, nullptr);
  sqlite3_bind_text(st, 1, hash.c_str(), -1, SQLITE_TRANSIENT);
  bool found = sqlite3_step(st) == SQLITE_ROW;
  sqlite3_finalize(st);
  return found;
}

void KeyStore::add_ephemeral(const std::string& key) { ephemeral_hash_ = sha256_hex(key); }

size_t KeyStore::count() {
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db(db_), "SELECT COUNT(*) FROM api_keys;", -1, &st, nullptr);
  size_t n = sqlite3_step(st) == SQLITE_ROW ? static_cast<size_t>(sqlite3_column_int64(st, 0)) : 0;
  sqlite3_finalize(st);
  return n + (ephemeral_hash_.empty() ? 0 : 1);
}

Result<std::unique_ptr<DaemonState>> DaemonState::open(const std::string& state_dir) {
  BRIG_TRY_ASSIGN(handle, db::open(state_dir + "/brig.db",
                                    "CREATE TABLE IF NOT EXISTS daemon_sandboxes (id TEXT PRIMARY KEY, token TEXT NOT "
                                    "NULL, template TEXT NOT NULL);"));
  // Columns that came later: a database of an older brig gets them here (the error when they
  // exist already is expected and ignored).
  for (const char* column : {"public_traffic INTEGER NOT NULL DEFAULT 1", "mask_host TEXT NOT NULL DEFAULT ''",
                             "network TEXT NOT NULL DEFAULT ''",
                             "https_ports TEXT NOT NULL DEFAULT ''"}) {
    std::string sql = std::string("ALTER TABLE daemon_sandboxes ADD COLUMN ") + column + ";";
    sqlite3_exec(db(handle), sql.c_str(), nullptr, nullptr, nullptr);
  }
  return std::unique_ptr<DaemonState>(new DaemonState(handle));
}

DaemonState::~DaemonState() { sqlite3_close(db(db_)); }

void DaemonState::save(const std::string& id, const Saved& saved) {
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db(db_),
                     "INSERT OR REPLACE INTO daemon_sandboxes (id, token, template, public_traffic, mask_host, network, "
                     "https_ports) VALUES (?, ?, ?, ?, ?, ?, ?);",
                     -1, &st, nullptr);
  sqlite3_bind_text(st, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, saved.token.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 3, saved.template_name.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(st, 4, saved.ingress.allow_public_traffic ? 1 : 0);
  sqlite3_bind_text(st, 5, saved.ingress.mask_request_host.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 6, saved.network.c_str(), -1, SQLITE_TRANSIENT);
  std::string https;  // "443,8443"
  for (uint16_t p : saved.ingress.https_ports) https += (https.empty() ? "" : ",") + std::to_string(p);
  sqlite3_bind_text(st, 7, https.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_step(st);
  sqlite3_finalize(st);
}

void DaemonState::save_network(const std::string& id, const std::string& network) {
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db(db_), "UPDATE daemon_sandboxes SET network = ? WHERE id = ?;", -1, &st, nullptr);
  sqlite3_bind_text(st, 1, network.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_step(st);
  sqlite3_finalize(st);
}

std::optional<DaemonState::Saved> DaemonState::load(const std::string& id) {
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db(db_), "SELECT token, template, public_traffic, mask_host, network, https_ports FROM daemon_sandboxes "
                     "WHERE id = ?;", -1,
                     &st, nullptr);
  sqlite3_bind_text(st, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  std::optional<Saved> out;
  if (sqlite3_step(st) == SQLITE_ROW) {
    auto text = [st](int col) {
      const unsigned char* t = sqlite3_column_text(st, col);
      return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();  // SAFETY: SQLite text
    };
    out.emplace();
    out->token = text(0);
    out->template_name = text(1);
    out->ingress.allow_public_traffic = sqlite3_column_int(st, 2) != 0;
    out->ingress.mask_request_host = text(3);
    out->network = text(4);
    for (const std::string& p : split(text(5), ',')) {
      unsigned long n = 0;
      if (!p.empty() && p.size() <= 5 && p.find_first_not_of("0123456789") == std::string::npos &&
          (n = std::stoul(p)) >= 1 && n <= 65535)
        out->ingress.https_ports.push_back(static_cast<uint16_t>(n));
    }
  }
  sqlite3_finalize(st);
  return out;
}

void DaemonState::forget(const std::string& id) {
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db(db_), "DELETE FROM daemon_sandboxes WHERE id = ?;", -1, &st, nullptr);
  sqlite3_bind_text(st, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_step(st);
  sqlite3_finalize(st);
}

void DaemonState::retain(const std::set<std::string>& ids) {
  std::vector<std::string> gone;
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db(db_), "SELECT id FROM daemon_sandboxes;", -1, &st, nullptr);
  while (sqlite3_step(st) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    std::string id = t ? reinterpret_cast<const char*>(t) : "";  // SAFETY: SQLite text
    if (!ids.count(id)) gone.push_back(std::move(id));
  }
  sqlite3_finalize(st);
  for (auto& id : gone) forget(id);
}

}  // namespace brig::core
