// TemplateStore: built templates and their layers under the state directory.
//
//   state_dir/layers/<key>/        one read-only layer (a directory tree owned by host root),
//                                  named by the content hash of the step that made it and of
//                                  everything before it; immutable once committed
//   state_dir/brig.db: templates   name, tag, id, layer keys (topmost first), runtime config
//
// Thread safety: all methods are serialised internally.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "config/config.h"

namespace brig::store {

struct TemplateConfig {
  std::string user = "user";
  std::string workdir = "/home/user";
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> labels;
  std::string start_cmd, ready_cmd;
  std::vector<std::string> kernels;  // code-interpreter kernels started with each sandbox
  std::string definition_sha;        // sha256 of the Dockerfile it was built from
  double cpus = 0;            // 0 = brig's default
  uint64_t memory_bytes = 0;  // 0 = brig's default
  uint64_t disk_bytes = 0;    // 0 = brig's default
};

struct TemplateInfo {
  std::string name;
  std::string tag = "latest";
  std::string id;                   // 20 chars of the final layer key
  std::vector<std::string> layers;  // layer keys, topmost first
  TemplateConfig config;
  int64_t created_ms = 0;
  uint64_t size_bytes = 0;          // sum of the layers' disk usage
  std::string source;               // the definition it was built from
};

class TemplateStore {
 public:
  // `build`: how templates are built from this store (builder.h), whoever asks for a build.
  static Result<std::unique_ptr<TemplateStore>> open(const std::string& state_dir, const config::Build& build = {});
  ~TemplateStore();

  const config::Build& build_config() const { return build_; }

  std::string layer_path(const std::string& key) const { return layers_dir_ + "/" + key; }
  bool has_layer(const std::string& key) const;
  // A fresh private directory for building a layer (state_dir/layers/.build-XXXXXX).
  Result<std::string> make_build_dir();
  // Moves `tree` (a directory inside a build dir) into place as layer `key`; returns its size.
  Result<uint64_t> commit_layer(const std::string& key, const std::string& tree);
  uint64_t layer_size(const std::string& key);

  // Stores (or replaces, by name) a template.
  Result<> put(const TemplateInfo& info);
  // By name, "name:tag", id, or a unique id prefix of at least 6 chars.
  Result<std::optional<TemplateInfo>> find(const std::string& ref);
  Result<std::vector<TemplateInfo>> list();
  Result<> remove(const std::string& name);

  std::vector<std::string> layer_paths(const TemplateInfo& t) const;

 private:
  TemplateStore(sqlite3* db, std::string layers_dir, config::Build build)
      : db_(db), layers_dir_(std::move(layers_dir)), build_(std::move(build)) {}
  sqlite3* db_;
  std::string layers_dir_;
  const config::Build build_;
  std::mutex mu_;
};

// sha256 of `data`, hex.

}  // namespace brig::store
