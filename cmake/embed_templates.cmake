# Generates a C++ source holding the built-in template definitions (templates/<name>/Dockerfile),
# so the brig binary can build them on first use wherever it is installed.
# Inputs: SRC_DIR (templates/), OUT (the .cc to write).
file(GLOB dirs RELATIVE ${SRC_DIR} ${SRC_DIR}/*)
list(SORT dirs)
set(body "")
foreach(name ${dirs})
  if(EXISTS ${SRC_DIR}/${name}/Dockerfile)
    file(READ ${SRC_DIR}/${name}/Dockerfile text)
    string(APPEND body "    {\"${name}\", R\"brig_template(${text})brig_template\"},\n")
  endif()
endforeach()
file(WRITE ${OUT}.tmp "// Generated from templates/*/Dockerfile by cmake/embed_templates.cmake. Do not edit.\n#include \"store/builtin.h\"\n\nnamespace brig::store {\n\nconst std::map<std::string, std::string>& builtin_templates() {\n  static const std::map<std::string, std::string> templates = {\n${body}  };\n  return templates;\n}\n\n}  // namespace brig::store\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
