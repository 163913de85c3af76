#include "sandbox/db.h"

namespace brig::db {

Result<sqlite3*> open(const std::string& path, const char* schema) {
  sqlite3* handle = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &handle, flags, nullptr) != SQLITE_OK) {
    Error e = error(handle, "open " + path);
    sqlite3_close(handle);
    return e;
  }
  sqlite3_busy_timeout(handle, 10'000);
  // No checkpoint when a connection closes: the last one to close would otherwise checkpoint
  // and delete the WAL, and the next process to write (every `brig run`) would create it again,
  // four fsyncs per short-lived process, tens of ms on a busy disk. The WAL stays (up to the
  // 1000-page auto-checkpoint, which still syncs) and is replayed by whoever opens it next.
  sqlite3_db_config(handle, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  if (sqlite3_exec(handle, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", nullptr, nullptr, nullptr) != SQLITE_OK ||
      sqlite3_exec(handle, schema, nullptr, nullptr, nullptr) != SQLITE_OK) {
    Error e = error(handle, "initialise " + path);
    sqlite3_close(handle);
    return e;
  }
  return handle;
}

}  // namespace brig::db
