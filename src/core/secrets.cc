#include "core/secrets.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "base/util.h"
#include "sandbox/db.h"

namespace brig::core {
namespace {

sqlite3* db(void* p) { return static_cast<sqlite3*>(p); }

constexpr size_t kMaxNameBytes = 128;
constexpr std::string_view kIdPrefix = "sec_";

// KMP failure table: fail[i] is the length of the longest proper prefix of v[0..i] that is
// also its suffix.
std::vector<uint32_t> failure(const std::string& v) {
  std::vector<uint32_t> f(v.size(), 0);
  for (size_t i = 1, k = 0; i < v.size(); ++i) {
    while (k && v[i] != v[k]) k = f[k - 1];
    if (v[i] == v[k]) ++k;
    f[i] = static_cast<uint32_t>(k);
  }
  return f;
}

// How a value reads inside a JSON string (what a code cell's line carries).
std::string json_form(const std::string& v) {
  std::string quoted = nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return quoted.substr(1, quoted.size() - 2);
}

Error bad(std::string message) { return Error::make(errc::invalid_argument, std::move(message)); }

std::string metadata_text(const std::map<std::string, std::string>& m) { return nlohmann::json(m).dump(); }

std::map<std::string, std::string> metadata_of(const std::string& text) {
  std::map<std::string, std::string> out;
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return out;
  for (auto& [k, v] : j.items())
    if (v.is_string()) out[k] = v.get<std::string>();
  return out;
}

SecretInfo row(db::Stmt& st) {
  SecretInfo s;
  s.id = st.text(0);
  s.name = st.text(1);
  s.version = st.i64(2);
  s.metadata = metadata_of(st.text(3));
  s.created_ms = st.i64(4);
  s.updated_ms = st.i64(5);
  return s;
}

}  // namespace

// ---- redaction -------------------------------------------------------------------------------

RedactionSet::RedactionSet(std::vector<std::string> values) {
  for (auto& v : values) {
    if (v.size() < kMinRedactedBytes) continue;
    std::string j = json_form(v);
    if (j != v) values_.push_back(std::move(j));
    values_.push_back(std::move(v));
  }
  std::sort(values_.begin(), values_.end(), [](auto& a, auto& b) { return a.size() > b.size(); });
  values_.erase(std::unique(values_.begin(), values_.end()), values_.end());
  for (auto& v : values_) fail_.push_back(failure(v));
}

bool RedactionSet::redact(std::string& message) const {
  bool any = false;
  for (auto& v : values_) {  // longest first: a value inside another is replaced with it
    for (size_t at = message.find(v); at != std::string::npos; at = message.find(v, at + kRedacted.size())) {
      message.replace(at, v.size(), kRedacted);
      any = true;
    }
  }
  return any;
}

std::string StreamRedactor::feed(const RedactionSet& set, std::string_view in) {
  if (set.empty() && held_.empty()) return std::string(in);
  std::string buf = std::exchange(held_, {});
  buf.append(in);
  // Every whole occurrence, earliest first (the longest value where several start).
  std::string out;
  size_t pos = 0;
  for (;;) {
    size_t best = std::string::npos, len = 0;
    for (auto& v : set.values_) {
      size_t at = buf.find(v, pos);
      if (at < best) best = at, len = v.size();
    }
    if (best == std::string::npos) break;
    out.append(buf, pos, best - pos);
    out.append(kRedacted);
    pos = best + len;
  }
  // The longest tail that is the start of some value waits for the next piece.
  std::string_view rest(buf.data() + pos, buf.size() - pos);
  size_t hold = 0;
  for (size_t i = 0; i < set.values_.size(); ++i) {
    const std::string& v = set.values_[i];
    const auto& f = set.fail_[i];
    size_t from = rest.size() > v.size() - 1 ? rest.size() - (v.size() - 1) : 0;
    size_t k = 0;  // matched prefix of v
    for (size_t j = from; j < rest.size(); ++j) {
      while (k && rest[j] != v[k]) k = f[k - 1];
      if (rest[j] == v[k]) ++k;
      if (k == v.size()) k = f[k - 1];  // a whole value here was replaced above: cannot happen
    }
    hold = std::max(hold, k);
  }
  out.append(rest.substr(0, rest.size() - hold));
  held_.assign(rest.substr(rest.size() - hold));
  return out;
}

// ---- the store -------------------------------------------------------------------------------

Result<std::string> secret_name(const std::string& name) {
  if (name.empty()) return bad("a secret name cannot be empty");
  if (name.size() > kMaxNameBytes) return bad("a secret name is at most 128 characters");
  std::string lower;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'))
      return bad("a secret name may contain only letters, digits, '_' and '-'");
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  if (lower.starts_with(kIdPrefix)) return bad("secret names starting with \"sec_\" are reserved for secret ids");
  return lower;
}

Result<std::shared_ptr<SecretStore>> SecretStore::open(const std::string& state_dir, const config::Limits& limits) {
  const std::string path = state_dir + "/secrets.db";
  // Root's alone from its first byte (SQLite gives its WAL and shared-memory files the
  // database's mode); an existing file is made so too.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Error::from_errno(errno, "open " + path);
  int rc = ::fchmod(fd, 0600);
  ::close(fd);
  if (rc != 0) return Error::from_errno(errno, "chmod " + path);
  BRIG_TRY_ASSIGN(handle, db::open(path,
                                    "CREATE TABLE IF NOT EXISTS secrets (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
                                    "version INTEGER NOT NULL, value BLOB NOT NULL, metadata TEXT NOT NULL, "
                                    "created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"));
  std::shared_ptr<SecretStore> store(new SecretStore(handle, limits));
  std::lock_guard lock(store->mu_);
  store->reload_locked();
  return store;
}

SecretStore::~SecretStore() { sqlite3_close(db(db_)); }

void SecretStore::reload_locked() {
  std::vector<std::string> values;
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db(db_), "SELECT value FROM secrets;", -1, &st, nullptr);
  while (st && sqlite3_step(st) == SQLITE_ROW) {
    const void* p = sqlite3_column_blob(st, 0);
    int n = sqlite3_column_bytes(st, 0);
    if (p && n > 0) values.emplace_back(static_cast<const char*>(p), static_cast<size_t>(n));
  }
  sqlite3_finalize(st);
  redaction_ = std::make_shared<const RedactionSet>(std::move(values));
  redacting_.store(!redaction_->empty(), std::memory_order_release);
}

std::shared_ptr<const RedactionSet> SecretStore::redaction() const {
  std::lock_guard lock(mu_);
  return redaction_;
}

Result<> SecretStore::check_value(const std::string& value) const {
  if (value.empty()) return bad("a secret's value cannot be empty");
  if (value.size() > limits_.secret_value_bytes)
    return bad("a secret's value is at most " + std::to_string(limits_.secret_value_bytes) +
               " bytes (limits.secret_value_bytes)");
  return ok();
}

Result<> SecretStore::check_metadata(const std::map<std::string, std::string>& m) const {
  if (m.size() > limits_.metadata_entries)
    return bad("at most " + std::to_string(limits_.metadata_entries) + " metadata entries (limits.metadata_entries)");
  size_t total = 0;
  for (auto& [k, v] : m) {
    if (k.empty() || k.size() > limits_.metadata_key_bytes)
      return bad("a metadata key is 1 to " + std::to_string(limits_.metadata_key_bytes) + " bytes");
    if (v.size() > limits_.metadata_value_bytes)
      return bad("a metadata value is at most " + std::to_string(limits_.metadata_value_bytes) + " bytes");
    total += k.size() + v.size();
  }
  if (total > limits_.metadata_total_bytes)
    return bad("metadata is at most " + std::to_string(limits_.metadata_total_bytes) + " bytes in all");
  return ok();
}

Result<SecretInfo> SecretStore::find_locked(const std::string& id_or_name) {
  std::string key = id_or_name;
  bool by_id = key.starts_with(kIdPrefix);
  if (!by_id) {
    auto name = secret_name(key);
    if (!name) return Error::make(errc::not_found, "secret '" + key.substr(0, 128) + "' not found");
    key = *name;
  }
  db::Stmt st(db(db_), by_id ? "SELECT id, name, version, metadata, created_at, updated_at FROM secrets WHERE id = ?;"
                             : "SELECT id, name, version, metadata, created_at, updated_at FROM secrets WHERE name = ?;");
  st.bind(1, key);
  if (st.step() != SQLITE_ROW) return Error::make(errc::not_found, "secret '" + id_or_name.substr(0, 128) + "' not found");
  return row(st);
}

Result<SecretInfo> SecretStore::create(const std::string& raw_name, const std::string& value,
                                       const std::map<std::string, std::string>& metadata) {
  BRIG_TRY_ASSIGN(name, secret_name(raw_name));
  BRIG_TRY(check_value(value));
  BRIG_TRY(check_metadata(metadata));
  Changed changed{this};  // after the lock is let go of
  std::lock_guard lock(mu_);
  {
    db::Stmt count(db(db_), "SELECT COUNT(*) FROM secrets;");
    if (count.step() == SQLITE_ROW && count.i64(0) >= static_cast<int64_t>(limits_.secrets))
      return Error::make(errc::limit_exceeded,
                         "this server keeps at most " + std::to_string(limits_.secrets) + " secrets (limits.secrets)");
  }
  if (find_locked(name)) return Error::from_errno(EEXIST, "a secret named '" + name + "' exists");
  SecretInfo s;
  s.id = std::string(kIdPrefix) + random_hex(12);
  s.name = name;
  s.metadata = metadata;
  s.created_ms = s.updated_ms = now_unix_ms();
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db(db_),
                     "INSERT INTO secrets (id, name, version, value, metadata, created_at, updated_at) "
                     "VALUES (?, ?, 1, ?, ?, ?, ?);",
                     -1, &st, nullptr);
  sqlite3_bind_text(st, 1, s.id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, s.name.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_blob(st, 3, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  std::string meta = metadata_text(metadata);
  sqlite3_bind_text(st, 4, meta.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 5, s.created_ms);
  sqlite3_bind_int64(st, 6, s.updated_ms);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return db::error(db(db_), "store the secret");
  reload_locked();
  changed.fire = true;
  return s;
}

Result<SecretInfo> SecretStore::update(const std::string& id_or_name, const std::string& value,
                                       const std::optional<std::map<std::string, std::string>>& metadata) {
  BRIG_TRY(check_value(value));
  if (metadata) BRIG_TRY(check_metadata(*metadata));
  Changed changed{this};
  std::lock_guard lock(mu_);
  BRIG_TRY_ASSIGN(s, find_locked(id_or_name));
  s.version += 1;
  s.updated_ms = std::max(now_unix_ms(), s.created_ms);
  if (metadata) s.metadata = *metadata;
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db(db_), "UPDATE secrets SET version = ?, value = ?, metadata = ?, updated_at = ? WHERE id = ?;", -1,
                     &st, nullptr);
  sqlite3_bind_int64(st, 1, s.version);
  sqlite3_bind_blob(st, 2, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  std::string meta = metadata_text(s.metadata);
  sqlite3_bind_text(st, 3, meta.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 4, s.updated_ms);
  sqlite3_bind_text(st, 5, s.id.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return db::error(db(db_), "update the secret");
  reload_locked();
  changed.fire = true;
  return s;
}

Result<SecretInfo> SecretStore::get(const std::string& id_or_name) {
  std::lock_guard lock(mu_);
  return find_locked(id_or_name);
}

Result<> SecretStore::remove(const std::string& id_or_name) {
  Changed changed{this};
  std::lock_guard lock(mu_);
  BRIG_TRY_ASSIGN(s, find_locked(id_or_name));
  db::Stmt st(db(db_), "DELETE FROM secrets WHERE id = ?;");
  st.bind(1, s.id);
  if (st.step() != SQLITE_DONE) return db::error(db(db_), "delete the secret");
  reload_locked();
  changed.fire = true;
  return ok();
}

SecretPage SecretStore::list(size_t offset, size_t limit) {
  std::lock_guard lock(mu_);
  SecretPage page;
  db::Stmt st(db(db_), "SELECT id, name, version, metadata, created_at, updated_at FROM secrets "
                       "ORDER BY created_at, id LIMIT ? OFFSET ?;");
  st.bind(1, static_cast<int64_t>(limit) + 1).bind(2, static_cast<int64_t>(offset));
  while (st.step() == SQLITE_ROW) page.rows.push_back(row(st));
  if (page.rows.size() > limit) {
    page.rows.pop_back();
    page.next_offset = offset + limit;
  }
  return page;
}

Result<std::string> SecretStore::value(const std::string& name) {
  std::lock_guard lock(mu_);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db(db_), "SELECT value FROM secrets WHERE name = ?;", -1, &st, nullptr);
  sqlite3_bind_text(st, 1, name.c_str(), -1, SQLITE_TRANSIENT);
  std::optional<std::string> out;
  if (sqlite3_step(st) == SQLITE_ROW) {
    const void* p = sqlite3_column_blob(st, 0);
    out.emplace(p ? static_cast<const char*>(p) : "", static_cast<size_t>(sqlite3_column_bytes(st, 0)));
  }
  sqlite3_finalize(st);
  if (!out) return Error::make(errc::not_found, "secret '" + name.substr(0, 128) + "' not found");
  return std::move(*out);
}

}  // namespace brig::core
