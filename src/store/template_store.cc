#include "store/template_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "base/util.h"
#include "sandbox/db.h"

namespace brig::store {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS templates (
  name        TEXT PRIMARY KEY,
  tag         TEXT NOT NULL,
  id          TEXT NOT NULL,
  layers      TEXT NOT NULL,
  config      TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  size        INTEGER NOT NULL,
  source      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS layers (
  key   TEXT PRIMARY KEY,
  size  INTEGER NOT NULL
);
)sql";

Error db_error(sqlite3* handle, std::string_view what) { return db::error(handle, what); }

nlohmann::json config_to_json(const TemplateConfig& c) {
  return {{"user", c.user}, {"workdir", c.workdir}, {"env", c.env}, {"labels", c.labels},
          {"start_cmd", c.start_cmd}, {"ready_cmd", c.ready_cmd}, {"kernels", c.kernels},
          {"definition_sha", c.definition_sha}, {"cpus", c.cpus}, {"memory", c.memory_bytes}, {"disk", c.disk_bytes}};
}

TemplateConfig config_from_json(const std::string& text) {
  TemplateConfig c;
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return c;
  c.user = j.value("user", c.user);
  c.workdir = j.value("workdir", c.workdir);
  c.env = j.value("env", std::map<std::string, std::string>{});
  c.labels = j.value("labels", std::map<std::string, std::string>{});
  c.start_cmd = j.value("start_cmd", "");
  c.ready_cmd = j.value("ready_cmd", "");
  c.kernels = j.value("kernels", std::vector<std::string>{});
  c.definition_sha = j.value("definition_sha", "");
  c.cpus = j.value("cpus", 0.0);
  c.memory_bytes = j.value("memory", uint64_t{0});
  c.disk_bytes = j.value("disk", uint64_t{0});
  return c;
}

// Disk usage of a tree (st_blocks), not following symlinks or crossing into other trees.
uint64_t tree_size(int dirfd) {
  uint64_t total = 0;
  DIR* d = ::fdopendir(dirfd);
  if (!d) {
    ::close(dirfd);
    return 0;
  }
  while (auto* e = ::readdir(d)) {
    if (!std::strcmp(e->d_name, ".") || !std::strcmp(e->d_name, "..")) continue;
    struct stat st;
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    total += static_cast<uint64_t>(st.st_blocks) * 512;
    if (S_ISDIR(st.st_mode)) {
      int sub = ::openat(::dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) total += tree_size(sub);
    }
  }
  ::closedir(d);
  return total;
}

using db::Stmt;

TemplateInfo row_to_info(Stmt& q) {
  TemplateInfo t;
  t.name = q.text(0);
  t.tag = q.text(1);
  t.id = q.text(2);
  auto layers = nlohmann::json::parse(q.text(3), nullptr, false);
  if (layers.is_array())
    for (auto& l : layers)
      if (l.is_string()) t.layers.push_back(l.get<std::string>());
  t.config = config_from_json(q.text(4));
  t.created_ms = q.i64(5);
  t.size_bytes = static_cast<uint64_t>(q.i64(6));
  t.source = q.text(7);
  return t;
}

constexpr const char* kSelect = "SELECT name, tag, id, layers, config, created_at, size, source FROM templates";

}  // namespace


Result<std::unique_ptr<TemplateStore>> TemplateStore::open(const std::string& state_dir, const config::Build& build) {
  std::string layers = state_dir + "/layers";
  if (::mkdir(layers.c_str(), 0755) != 0 && errno != EEXIST) return Error::from_errno(errno, "mkdir(" + layers + ")");
  BRIG_TRY_ASSIGN(handle, db::open(state_dir + "/brig.db", kSchema));
  std::unique_ptr<TemplateStore> store(new TemplateStore(handle, layers, build));
  return store;
}

TemplateStore::~TemplateStore() { sqlite3_close(db_); }

bool TemplateStore::has_layer(const std::string& key) const {
  struct stat st;
  return ::stat(layer_path(key).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Result<std::string> TemplateStore::make_build_dir() {
  std::string tmpl = layers_dir_ + "/.build-XXXXXX";
  if (!::mkdtemp(tmpl.data())) return Error::from_errno(errno, "mkdtemp(" + tmpl + ")");
  return tmpl;
}

Result<uint64_t> TemplateStore::commit_layer(const std::string& key, const std::string& tree) {
  if (::chmod(tree.c_str(), 0755) != 0) return Error::from_errno(errno, "chmod(" + tree + ")");
  const std::string dest = layer_path(key);
  if (::rename(tree.c_str(), dest.c_str()) != 0 && errno != ENOTEMPTY && errno != EEXIST)
    return Error::from_errno(errno, "rename(" + tree + ", " + dest + ")");
  int fd = ::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  uint64_t size = fd >= 0 ? tree_size(fd) : 0;
  std::lock_guard lock(mu_);
  Stmt q(db_, "INSERT OR REPLACE INTO layers (key, size) VALUES (?, ?);");
  q.bind(1, key).bind(2, static_cast<int64_t>(size));
  if (q.step() != SQLITE_DONE) return db_error(db_, "insert layer");
  return size;
}

uint64_t TemplateStore::layer_size(const std::string& key) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT size FROM layers WHERE key=?;");
  q.bind(1, key);
  return q.step() == SQLITE_ROW ? static_cast<uint64_t>(q.i64(0)) : 0;
}

Result<> TemplateStore::put(const TemplateInfo& t) {
  std::lock_guard lock(mu_);
  Stmt q(db_,
         "INSERT OR REPLACE INTO templates (name, tag, id, layers, config, created_at, size, source) "
         "VALUES (?,?,?,?,?,?,?,?);");
  q.bind(1, t.name).bind(2, t.tag).bind(3, t.id).bind(4, nlohmann::json(t.layers).dump());
  q.bind(5, config_to_json(t.config).dump()).bind(6, t.created_ms).bind(7, static_cast<int64_t>(t.size_bytes));
  q.bind(8, t.source);
  if (q.step() != SQLITE_DONE) return db_error(db_, "insert template");
  return ok();
}

Result<std::optional<TemplateInfo>> TemplateStore::find(const std::string& ref) {
  if (ref.empty() || ref.size() > 256) return std::optional<TemplateInfo>();
  std::string name = ref, tag;
  if (auto colon = ref.find(':'); colon != std::string::npos) {
    name = ref.substr(0, colon);
    tag = ref.substr(colon + 1);
  }
  BRIG_TRY_ASSIGN(all, list());
  for (auto& t : all)
    if (t.name == name && (tag.empty() || t.tag == tag)) return std::optional<TemplateInfo>(t);
  std::optional<TemplateInfo> by_id;
  for (auto& t : all) {
    if (t.id == ref) return std::optional<TemplateInfo>(t);
    if (ref.size() >= 6 && t.id.starts_with(ref)) {
      if (by_id && by_id->id != t.id) return Error::make(errc::invalid_argument, "template id prefix '" + ref + "' is ambiguous");
      by_id = t;
    }
  }
  return by_id;
}

Result<std::vector<TemplateInfo>> TemplateStore::list() {
  std::lock_guard lock(mu_);
  Stmt q(db_, (std::string(kSelect) + " ORDER BY name;").c_str());
  if (!q.ok()) return db_error(db_, "select templates");
  std::vector<TemplateInfo> out;
  while (q.step() == SQLITE_ROW) out.push_back(row_to_info(q));
  return out;
}

Result<> TemplateStore::remove(const std::string& name) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "DELETE FROM templates WHERE name=?;");
  q.bind(1, name);
  if (q.step() != SQLITE_DONE) return db_error(db_, "delete template");
  return ok();
}

std::vector<std::string> TemplateStore::layer_paths(const TemplateInfo& t) const {
  std::vector<std::string> out;
  for (auto& k : t.layers) out.push_back(layer_path(k));
  return out;
}

}  // namespace brig::store
