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
  if (sqlite3_exec(handle, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", nullptr, nullptr, nullptr) != SQLITE_OK ||
      sqlite3_exec(handle, schema, nullptr, nullptr, nullptr) != SQLITE_OK) {
    Error e = error(handle, "initialise " + path);
    sqlite3_close(handle);
    return e;
  }
  return handle;
}

}  // namespace brig::db
