#include "sandbox/registry.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "isolate/userns.h"
#include "sandbox/db.h"

namespace brig::sandbox {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS sandboxes (
  id          TEXT PRIMARY KEY,
  slot        INTEGER NOT NULL UNIQUE,
  template    TEXT NOT NULL,
  state       TEXT NOT NULL,
  started_at  INTEGER NOT NULL,
  end_at      INTEGER NOT NULL,
  memory      INTEGER NOT NULL,
  cpu_millis  INTEGER NOT NULL,
  disk        INTEGER NOT NULL,
  metadata    TEXT NOT NULL,
  env_keys    TEXT NOT NULL,
  init_pid    INTEGER NOT NULL DEFAULT 0,
  init_start  INTEGER NOT NULL DEFAULT 0,
  owner_pid   INTEGER NOT NULL,
  net_index   INTEGER NOT NULL DEFAULT -1
);
)sql";

using db::Stmt;
Error db_error(sqlite3* handle, std::string_view what) { return db::error(handle, what); }

std::string to_json(const std::map<std::string, std::string>& m) { return nlohmann::json(m).dump(); }
std::map<std::string, std::string> from_json(const std::string& s) {
  auto j = nlohmann::json::parse(s, nullptr, false);
  if (!j.is_object()) return {};
  std::map<std::string, std::string> out;
  for (auto& [k, v] : j.items())
    if (v.is_string()) out[k] = v.get<std::string>();
  return out;
}

}  // namespace

Result<std::unique_ptr<Registry>> Registry::open(const std::string& path) {
  BRIG_TRY_ASSIGN(handle, db::open(path, kSchema));
  // A database made before sandboxes had networks: add the column (a process racing us may
  // have added it already, which is the same outcome).
  sqlite3_exec(handle, "ALTER TABLE sandboxes ADD COLUMN net_index INTEGER NOT NULL DEFAULT -1;", nullptr, nullptr, nullptr);
  // ... and before they could be paused.
  sqlite3_exec(handle, "ALTER TABLE sandboxes ADD COLUMN paused_left INTEGER NOT NULL DEFAULT 0;", nullptr, nullptr, nullptr);
  // ... and before they could be paused to their disk (booted again from their spec).
  sqlite3_exec(handle, "ALTER TABLE sandboxes ADD COLUMN paused_to INTEGER NOT NULL DEFAULT 0;", nullptr, nullptr, nullptr);
  sqlite3_exec(handle, "ALTER TABLE sandboxes ADD COLUMN spec TEXT NOT NULL DEFAULT '';", nullptr, nullptr, nullptr);
  // The specs hold the sandboxes' environments: root's alone (the WAL files follow its mode).
  (void)::chmod(path.c_str(), 0600);
  return std::unique_ptr<Registry>(new Registry(handle));
}

Registry::~Registry() { sqlite3_close(db_); }

Result<> Registry::exec(const char* sql) {
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return db_error(db_, "sqlite");
  return ok();
}

Result<uint32_t> Registry::insert_creating(const SandboxInfo& info, int owner_pid, const std::string& spec) {
  std::lock_guard lock(mu_);
  // IMMEDIATE takes the write lock now: no other process can pick the same slot.
  BRIG_TRY(exec("BEGIN IMMEDIATE;"));
  auto rollback = [&](Error e) {
    (void)exec("ROLLBACK;");
    return e;
  };
  uint32_t slot = 0;
  {
    Stmt q(db_, "SELECT slot FROM sandboxes ORDER BY slot;");
    if (!q.ok()) return rollback(db_error(db_, "select slots"));
    while (q.step() == SQLITE_ROW) {
      if (static_cast<uint32_t>(q.i64(0)) != slot) break;
      ++slot;
    }
  }
  if (slot >= isolate::kMaxSandboxSlots) return rollback(Error::make(errc::limit_exceeded, "no free sandbox slot"));
  std::map<std::string, std::string> env_keys;
  for (auto& [k, v] : info.env) env_keys[k] = "";  // listed by key; the values are in the spec only
  Stmt ins(db_,
           "INSERT INTO sandboxes (id, slot, template, state, started_at, end_at, memory, cpu_millis, disk, "
           "metadata, env_keys, owner_pid, spec) VALUES (?,?,?,'creating',?,?,?,?,?,?,?,?,?);");
  if (!ins.ok()) return rollback(db_error(db_, "insert"));
  ins.bind(1, info.id).bind(2, static_cast<int64_t>(slot)).bind(3, info.template_name);
  ins.bind(4, info.started_at_ms).bind(5, info.end_at_ms).bind(6, static_cast<int64_t>(info.memory_bytes));
  ins.bind(7, static_cast<int64_t>(info.cpu_millis)).bind(8, static_cast<int64_t>(info.disk_bytes));
  ins.bind(9, to_json(info.metadata)).bind(10, to_json(env_keys)).bind(11, static_cast<int64_t>(owner_pid));
  ins.bind(12, spec);
  if (ins.step() != SQLITE_DONE) return rollback(db_error(db_, "insert sandbox"));
  BRIG_TRY(exec("COMMIT;"));
  return slot;
}

Result<> Registry::mark_running(const SandboxRecord& r) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "UPDATE sandboxes SET state='running', init_pid=?, init_start=?, net_index=? WHERE id=?;");
  q.bind(1, static_cast<int64_t>(r.init_pid)).bind(2, static_cast<int64_t>(r.init_start));
  q.bind(3, static_cast<int64_t>(r.net_index)).bind(4, r.id);
  if (q.step() != SQLITE_DONE) return db_error(db_, "update sandbox");
  return ok();
}

Result<> Registry::set_end_at(const std::string& id, int64_t end_at_ms) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "UPDATE sandboxes SET end_at=? WHERE id=?;");
  q.bind(1, end_at_ms).bind(2, id);
  if (q.step() != SQLITE_DONE) return db_error(db_, "update sandbox");
  return ok();
}

Result<> Registry::set_paused(const std::string& id, int64_t left_ms) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "UPDATE sandboxes SET state='paused', paused_left=?, paused_to=0 WHERE id=? AND state='running';");
  q.bind(1, left_ms).bind(2, id);
  if (q.step() != SQLITE_DONE) return db_error(db_, "update sandbox");
  if (sqlite3_changes(db_) != 1) return Error::make(errc::conflict, "sandbox '" + id + "' is not running");
  return ok();
}

Result<> Registry::set_resumed(const std::string& id, int64_t end_at_ms) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "UPDATE sandboxes SET state='running', end_at=?, paused_left=0 WHERE id=? AND state='paused';");
  q.bind(1, end_at_ms).bind(2, id);
  if (q.step() != SQLITE_DONE) return db_error(db_, "update sandbox");
  if (sqlite3_changes(db_) != 1) return Error::make(errc::conflict, "sandbox '" + id + "' is not paused");
  return ok();
}

Result<> Registry::set_stopped(const std::string& id, SandboxInfo::Paused how) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "UPDATE sandboxes SET paused_to=?, init_pid=0, init_start=0, net_index=-1 WHERE id=? AND state='paused';");
  q.bind(1, static_cast<int64_t>(how)).bind(2, id);
  if (q.step() != SQLITE_DONE) return db_error(db_, "update sandbox");
  if (sqlite3_changes(db_) != 1) return Error::make(errc::conflict, "sandbox '" + id + "' is not paused");
  return ok();
}

Result<> Registry::set_rebooted(const SandboxRecord& r, int64_t end_at_ms) {
  std::lock_guard lock(mu_);
  Stmt q(db_,
         "UPDATE sandboxes SET state='running', init_pid=?, init_start=?, net_index=?, owner_pid=?, end_at=?, "
         "paused_left=0, paused_to=0 WHERE id=? AND state='paused';");
  q.bind(1, static_cast<int64_t>(r.init_pid)).bind(2, static_cast<int64_t>(r.init_start));
  q.bind(3, static_cast<int64_t>(r.net_index)).bind(4, static_cast<int64_t>(r.owner_pid)).bind(5, end_at_ms).bind(6, r.id);
  if (q.step() != SQLITE_DONE) return db_error(db_, "update sandbox");
  if (sqlite3_changes(db_) != 1) return Error::make(errc::conflict, "sandbox '" + r.id + "' is not paused");
  return ok();
}

Result<> Registry::set_owner(const std::string& id, int owner_pid) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "UPDATE sandboxes SET owner_pid=? WHERE id=?;");
  q.bind(1, static_cast<int64_t>(owner_pid)).bind(2, id);
  if (q.step() != SQLITE_DONE) return db_error(db_, "update sandbox");
  return ok();
}

Result<> Registry::mark_pooled(const std::string& id) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "UPDATE sandboxes SET state='pooled' WHERE id=?;");
  q.bind(1, id);
  if (q.step() != SQLITE_DONE) return db_error(db_, "update sandbox");
  return ok();
}

Result<> Registry::assign(const SandboxInfo& info, const std::string& spec) {
  std::lock_guard lock(mu_);
  std::map<std::string, std::string> env_keys;
  for (auto& [k, v] : info.env) env_keys[k] = "";
  Stmt q(db_,
         "UPDATE sandboxes SET state='running', template=?, started_at=?, end_at=?, metadata=?, env_keys=?, spec=? "
         "WHERE id=?;");
  q.bind(1, info.template_name).bind(2, info.started_at_ms).bind(3, info.end_at_ms);
  q.bind(4, to_json(info.metadata)).bind(5, to_json(env_keys)).bind(6, spec).bind(7, info.id);
  if (q.step() != SQLITE_DONE) return db_error(db_, "update sandbox");
  return ok();
}

Result<> Registry::remove(const std::string& id) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "DELETE FROM sandboxes WHERE id=?;");
  q.bind(1, id);
  if (q.step() != SQLITE_DONE) return db_error(db_, "delete sandbox");
  return ok();
}

namespace {
RegistryRow row_from(Stmt& q) {
  RegistryRow r;
  r.info.id = q.text(0);
  r.record.id = r.info.id;
  r.record.slot = static_cast<uint32_t>(q.i64(1));
  r.info.template_name = q.text(2);
  r.info.state = q.text(3);
  r.info.started_at_ms = q.i64(4);
  r.info.end_at_ms = q.i64(5);
  r.info.memory_bytes = static_cast<uint64_t>(q.i64(6));
  r.info.cpu_millis = static_cast<uint32_t>(q.i64(7));
  r.info.disk_bytes = static_cast<uint64_t>(q.i64(8));
  r.info.metadata = from_json(q.text(9));
  r.info.env = from_json(q.text(10));
  r.record.init_pid = static_cast<int>(q.i64(11));
  r.record.init_start = static_cast<uint64_t>(q.i64(12));
  r.record.owner_pid = static_cast<int>(q.i64(13));
  r.record.net_index = static_cast<int32_t>(q.i64(14));
  r.info.paused_left_ms = q.i64(15);
  const int64_t paused_to = q.i64(16);
  r.info.paused = paused_to == 1 ? SandboxInfo::Paused::disk
                  : paused_to == 2 ? SandboxInfo::Paused::memory_lost
                                   : SandboxInfo::Paused::memory;
  r.spec = q.text(17);
  return r;
}
constexpr const char* kColumns =
    "SELECT id, slot, template, state, started_at, end_at, memory, cpu_millis, disk, metadata, env_keys, "
    "init_pid, init_start, owner_pid, net_index, paused_left, paused_to, spec FROM sandboxes";
}  // namespace

Result<std::vector<RegistryRow>> Registry::all() {
  std::lock_guard lock(mu_);
  Stmt q(db_, (std::string(kColumns) + " ORDER BY started_at;").c_str());
  if (!q.ok()) return db_error(db_, "select sandboxes");
  std::vector<RegistryRow> out;
  while (q.step() == SQLITE_ROW) out.push_back(row_from(q));
  return out;
}

Result<std::optional<RegistryRow>> Registry::get(const std::string& id) {
  std::lock_guard lock(mu_);
  Stmt q(db_, (std::string(kColumns) + " WHERE id=?;").c_str());
  if (!q.ok()) return db_error(db_, "select sandbox");
  q.bind(1, id);
  if (q.step() != SQLITE_ROW) return std::optional<RegistryRow>();
  return std::optional<RegistryRow>(row_from(q));
}

}  // namespace brig::sandbox
