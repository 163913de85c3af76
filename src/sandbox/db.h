// SQLite helpers shared by everything that keeps state in <state-dir>/brig.db (the sandbox
// registry, the template store, the daemon's keys and sandbox tokens): one way to open the
// database and one prepared-statement wrapper.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace brig::db {

// Opens (creating) the database in WAL mode with synchronous=NORMAL (no fsync per commit;
// a power cut may lose the last transactions, never corrupt the file), no checkpoint on close
// (the WAL outlives short-lived processes) and a 10 s busy timeout, then runs `schema`. The
// caller owns the handle (sqlite3_close).
Result<sqlite3*> open(const std::string& path, const char* schema);

inline Error error(sqlite3* db, std::string_view what) {
  return Error::make(errc::protocol, std::string(what) + ": " + sqlite3_errmsg(db));
}

// A prepared statement, finalised on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return stmt_ != nullptr; }
  Stmt& bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  int step() { return stmt_ ? sqlite3_step(stmt_) : SQLITE_ERROR; }
  int64_t i64(int col) { return sqlite3_column_int64(stmt_, col); }
  std::string text(int col) {
    auto* p = sqlite3_column_text(stmt_, col);
    return p ? reinterpret_cast<const char*>(p) : "";  // SAFETY: SQLite text is a byte string
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace brig::db
