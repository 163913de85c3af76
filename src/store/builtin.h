// The built-in templates (base, python3, node, code-interpreter-v1): their definitions are
// compiled into brig from templates/<name>/Dockerfile.
#pragma once

#include <map>
#include <string>

namespace brig::store {

// name -> Dockerfile text.
const std::map<std::string, std::string>& builtin_templates();

}  // namespace brig::store
