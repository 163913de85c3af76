#!/usr/bin/env bash
# Runs the official MCP conformance scenarios (@modelcontextprotocol/conformance, pinned in
# package.json) that apply to brig's Streamable HTTP endpoint (POST /mcp: stateless, tools only).
#   BRIG_URL=http://127.0.0.1:PORT BRIG_API_KEY=... tests/mcp/conformance.sh
# (tests/mcp/run.sh starts a daemon and sets both.) Needs Node 22: installed once by node22.sh
# under ${BRIG_CACHE_DIR:-/var/cache/brig}/node22. Exits non-zero if a scenario fails.
#
# The runner has no option to send a header, and /mcp requires `Authorization: Bearer <key>`;
# so it talks to auth-proxy.mjs, a loopback proxy that adds the header and forwards everything
# else (Host and Origin included) untouched.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${BRIG_URL:?set BRIG_URL (the daemon, e.g. http://127.0.0.1:49982)}"
: "${BRIG_API_KEY:?set BRIG_API_KEY}"
export BRIG_URL BRIG_API_KEY

# Scenarios for a server with tools only, no sessions.
scenarios=(
  server-initialize        # initialize: result structure, protocol version, serverInfo
  ping                     # ping answers {}
  tools-list               # tools/list: every tool has a name, description and an object inputSchema
  dns-rebinding-protection # a non-loopback Host/Origin is refused (403); loopback ones are served
)
# Not run, and why:
#   tools-call-simple-text, tools-call-image, tools-call-audio, tools-call-embedded-resource,
#   tools-call-mixed-content, tools-call-with-logging, tools-call-error, tools-call-with-progress,
#   tools-call-sampling, tools-call-elicitation, json-schema-2020-12
#       call fixture tools of the conformance reference server (test_simple_text,
#       test_error_handling, test_tool_with_progress, json_schema_2020_12_tool, ...), which
#       brig does not have; its own tools' content, errors and progress are in tools.test.mjs.
#   tools-call-sampling, tools-call-elicitation, elicitation-sep1034-defaults,
#   elicitation-sep1330-enums
#       server-to-client requests (sampling, elicitation): brig makes none.
#   logging-set-level, tools-call-with-logging
#       the logging capability: brig does not declare it.
#   completion-complete
#       the completions capability (for prompts and resource templates): not declared.
#   resources-list, resources-read-text, resources-read-binary, resources-templates-read,
#   resources-subscribe, resources-unsubscribe
#       the resources capability: not declared (archives come back as embedded resources in a
#       tool result instead).
#   prompts-list, prompts-get-simple, prompts-get-with-args, prompts-get-embedded-resource,
#   prompts-get-with-image
#       the prompts capability: not declared.
#   server-sse-polling, server-sse-multiple-streams
#       resumable SSE streams within an Mcp-Session-Id session (SEP-1699), with the
#       test_reconnection fixture tool: /mcp is stateless (no sessions, GET is 405).

PATH=$("$here/node22.sh"):$PATH
export PATH npm_config_update_notifier=false npm_config_fund=false
cd "$here"
[[ -x node_modules/.bin/conformance ]] || npm ci --no-audit --no-fund >/dev/null
echo "conformance: @modelcontextprotocol/conformance $(node -p "require('./node_modules/@modelcontextprotocol/conformance/package.json').version") on node $(node --version)"

work=$(mktemp -d /tmp/brig-conformance-XXXXXX)
proxy_pid=
cleanup() {
  [[ -n $proxy_pid ]] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
  true
}
trap cleanup EXIT
node auth-proxy.mjs "$BRIG_URL" >"$work/proxy.out" 2>&1 &
proxy_pid=$!
port=
for _ in $(seq 1 100); do
  port=$(awk '/^listening /{print $2}' "$work/proxy.out")
  [[ -n $port ]] && break
  kill -0 "$proxy_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n $port ]] || { echo "conformance: the auth proxy did not start:"; cat "$work/proxy.out"; exit 1; }
url=http://127.0.0.1:$port/mcp

status=0
declare -A result
for s in "${scenarios[@]}"; do
  if node_modules/.bin/conformance server --url "$url" --scenario "$s" -o "$work/results" >"$work/$s.log" 2>&1; then
    result[$s]=PASS
  else
    result[$s]=FAIL
    status=1
    echo "---- $s failed:"
    cat "$work/$s.log"
  fi
done
echo "conformance results:"
for s in "${scenarios[@]}"; do
  checks=$(grep -ho 'Passed: [0-9]*/[0-9]*, [0-9]* failed, [0-9]* warnings' "$work/$s.log" | tail -1)
  printf '  %-26s %s  %s\n' "$s" "${result[$s]}" "$checks"
done
if ((status)); then echo "conformance: checks.json of each scenario in $work/results"; else rm -rf "$work"; fi
exit $status
