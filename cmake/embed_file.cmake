# Generates a C++ source defining `extern const char* const ${NAME}` with the text of ${IN}
# (a file shipped inside the brig binary, e.g. a script the kernel host writes into sandboxes).
# Inputs: IN, OUT, NAME.
file(READ ${IN} text)
file(WRITE ${OUT}.tmp "// Generated from ${IN} by cmake/embed_file.cmake. Do not edit.\nextern const char* const ${NAME};\nconst char* const ${NAME} = R\"brig_embed(${text})brig_embed\";\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
