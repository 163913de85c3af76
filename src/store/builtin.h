// The built-in templates (base, minimal, node, python3, code-interpreter-v1): their definitions are
// compiled into brig from templates/<name>/Dockerfile.
#pragma once

#include <map>
#include <string>

#include "store/builder.h"

namespace brig::store {

// name -> Dockerfile text.
const std::map<std::string, std::string>& builtin_templates();

// A template by name, "name:tag" or id. A missing built-in is built first (with progress).
Result<TemplateInfo> resolve_template(sandbox::Engine& engine, TemplateStore& store, const std::string& ref,
                                      BuildProgress& progress);

// Builds built-in `name` (and, first, the built-ins it extends).
Result<TemplateInfo> build_builtin(sandbox::Engine& engine, TemplateStore& store, const std::string& name,
                                   BuildProgress& progress);

}  // namespace brig::store
