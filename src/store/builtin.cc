#include "store/builtin.h"

#include <cstdio>

#include "base/util.h"

namespace brig::store {

Result<TemplateInfo> build_builtin(sandbox::Engine& engine, TemplateStore& store, const std::string& name,
                                          BuildProgress& progress) {
  auto it = builtin_templates().find(name);
  if (it == builtin_templates().end()) {
    std::string names;
    for (auto& [n, _] : builtin_templates()) names += (names.empty() ? "" : ", ") + n;
    return Error::make(errc::not_found, "template '" + name + "' not found (built-ins: " + names +
                                            "; `brig template list` shows what is built; `brig run --rootfs DIR` uses a directory)");
  }
  std::fprintf(stderr, "brig: building built-in template '%s' (first use; later uses are instant)\n", name.c_str());
  BuildRequest req;
  req.definition = it->second;
  req.definition_name = "templates/" + name + "/Dockerfile";
  req.name = name;
  req.resolve_parent = [&](const std::string& parent) { return resolve_template(engine, store, parent, progress); };
  return build_template(engine, store, req, progress);
}

Result<TemplateInfo> resolve_template(sandbox::Engine& engine, TemplateStore& store,
                                             const std::string& ref, BuildProgress& progress) {
  BRIG_TRY_ASSIGN(found, store.find(ref));
  if (found) {
    bool complete = true;
    for (auto& l : found->layers) complete &= store.has_layer(l);
    // A built-in whose definition changed with this brig version is rebuilt (unchanged
    // steps come from the layer cache).
    auto builtin = builtin_templates().find(ref);
    bool current = builtin == builtin_templates().end() || found->config.definition_sha == sha256_hex(builtin->second);
    if (complete && current) return *found;
    if (!builtin_templates().count(ref))
      return Error::make(errc::not_found, "template '" + ref + "' has missing layers; rebuild it");
  }
  return build_builtin(engine, store, ref, progress);
}

}  // namespace brig::store
