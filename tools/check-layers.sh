#!/usr/bin/env bash
# The layering check (Chromium's DEPS idea, small): every `#include "dir/..."` in src/ must
# point to the same folder or to one the folder may depend on, as listed below, lowest first.
# In-sandbox code (init: brig-init and the kernel host) never includes host code, and host code
# reaches it only through its entry point, init/init.h. Only src/cli and src/config read the
# environment. Exits 1 and lists each violation.
#   tools/check-layers.sh [src-dir]
set -euo pipefail
src=${1:-$(cd "$(dirname "$0")/../src" && pwd)}

declare -A allowed=(
  [base]=""
  # The typed configuration: every layer above base may take its sections as parameters.
  [config]="base"
  [sys]="base config"
  [isolate]="base config sys"
  [policy]="base config sys isolate"
  [init]="base config sys isolate"
  [sandbox]="base config sys isolate policy init"
  [store]="base config sys sandbox"
  # The core service: typed commands over the engine and the store; no HTTP.
  [core]="base config sys sandbox store egress"
  # brig-egress: the egress proxy's own process (policy: its seccomp allowlist); never the core.
  [egress]="base config sys isolate policy"
  [client]="base config"
  [mcp]="base config client"
  # The daemon's adapters over the core (and the MCP it hosts).
  [server]="base config sys sandbox store core client mcp envd egress"
  [cli]="base config sys isolate policy sandbox store core client mcp server egress"
)
# Host folders that may include these headers of a layer they may not otherwise see.
declare -A entry_points=([init]="init/init.h")

status=0
for dir in "$src"/*/; do
  layer=$(basename "$dir")
  if [[ -z ${allowed[$layer]+set} ]]; then
    echo "check-layers: src/$layer is not in the layer table of $0" >&2
    status=1
    continue
  fi
  while IFS=: read -r file line text; do
    target=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]+"([^/"]+)\/.*/\1/' <<<"$text")
    header=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]+"([^"]+)".*/\1/' <<<"$text")
    [[ $target == "$layer" ]] && continue
    [[ " ${allowed[$layer]} " == *" $target "* ]] || {
      # A header outside any layer folder (generated protobuf code, third party): not ours to check.
      [[ -z ${allowed[$target]+set} && $target != envd ]] && continue
      echo "src/${file#"$src"/}:$line: $layer may not include $header ($layer sees: ${allowed[$layer]:-nothing})"
      status=1
      continue
    }
    if [[ -n ${entry_points[$target]+set} && $layer != "$target" ]]; then
      [[ " ${entry_points[$target]} " == *" $header "* ]] || {
        echo "src/${file#"$src"/}:$line: $layer may include only ${entry_points[$target]} of $target, not $header"
        status=1
      }
    fi
  done < <(grep -HnE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"[^/"]+/' "$dir"*.h "$dir"*.cc 2>/dev/null || true)
done

# Only the CLI and the configuration read the environment: libraries take the configuration as
# a parameter (config/config.h). A getenv or environ after a "." is code in a string (Python's
# os.environ, R's Sys.getenv), not a call.
while IFS= read -r hit; do
  echo "src/${hit#"$src"/}" | cut -d: -f1,2 | tr -d '\n'
  echo ": only src/cli and src/config read the environment; take the setting as a parameter"
  status=1
done < <(grep -rnE '(^|[^.A-Za-z0-9_])(secure_)?getenv[[:space:]]*\(|(^|[^.A-Za-z0-9_])environ([^A-Za-z0-9_]|$)' \
           --include='*.cc' --include='*.h' "$src" | grep -vE "^$src/(cli|config)/" || true)

((status)) || echo "check-layers: ok ($(ls -d "$src"/*/ | wc -l) layers; no environment read below the CLI)"
exit $status
