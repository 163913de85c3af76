// The MCP Inspector CLI (@modelcontextprotocol/inspector, pinned 2.12.0, `--cli`) against both
// transports: `brig mcp` on stdio, and POST /mcp with the API key as a bearer header. Each run
// gets a fresh HOME (the Inspector keeps a catalog, secrets and OAuth state under ~). The
// Inspector needs Node >= 22.19: NODE22_BIN (a bin directory, tests/mcp/node22.sh prints one)
// goes first on its PATH.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { brigUrl, apiKey, brigBin, mcpUrl } from './helpers.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const node22 = process.env.NODE22_BIN ?? join(process.env.BRIG_CACHE_DIR ?? '/var/cache/brig', 'node22/node_modules/node/bin')
const toolNames = [
  'create_sandbox', 'download_files', 'get_sandbox_url', 'kill_sandbox', 'list_files', 'list_sandboxes',
  'pause_sandbox', 'read_file', 'resume_sandbox', 'run_code', 'run_command', 'set_sandbox_timeout', 'upload_files',
  'write_file',
]

// `npx @modelcontextprotocol/inspector --cli --format json ...args`: { code, out, err, json, home }.
async function inspector(args) {
  const home = mkdtempSync(join(tmpdir(), 'brig-inspector-home-'))
  const env = {
    PATH: `${node22}:${process.env.PATH}`,
    HOME: home,
    BRIG_URL: brigUrl,
    BRIG_API_KEY: apiKey,
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    NO_COLOR: '1',
  }
  try {
    return await new Promise((resolve) => {
      execFile(
        'npx',
        ['--no-install', '@modelcontextprotocol/inspector', '--cli', '--format', 'json', ...args],
        { cwd: here, env, timeout: 90_000, maxBuffer: 64 << 20 },
        (error, out, err) => {
          let json
          try {
            json = JSON.parse(out)
          } catch {}
          let errJson
          try {
            errJson = JSON.parse(err.trim().split('\n').filter((l) => l.startsWith('{')).pop() ?? '')
          } catch {}
          resolve({ code: error ? (error.code ?? 'killed') : 0, out, err, json, errJson, homeFiles: readdirSync(home) })
        },
      )
    })
  } finally {
    rmSync(home, { recursive: true, force: true })
  }
}
const show = (r) => `exit ${r.code}\nstdout: ${r.out.slice(0, 2000)}\nstderr: ${r.err.slice(0, 2000)}`

// `brig mcp` gets only the environment the Inspector passes it (-e), not the Inspector's own.
const stdio = ['-e', `BRIG_URL=${brigUrl}`, '-e', `BRIG_API_KEY=${apiKey}`, brigBin, 'mcp']
const http = [mcpUrl.href, '--transport', 'http', '--header', `Authorization: Bearer ${apiKey}`]

test('the Inspector is the pinned version and runs on Node 22', async () => {
  const r = await inspector(['--version'])
  assert.equal(r.code, 0, show(r))
  assert.match(r.out + r.err, /2\.12\.0/)
})

for (const [name, target] of [['stdio', stdio], ['http', http]]) {
  test(`${name}: tools/list lists the tools, schemas portable (--strict)`, async () => {
    const r = await inspector([...target, '--method', 'tools/list', '--strict'])
    assert.equal(r.code, 0, show(r))
    assert.deepEqual(r.json.result.tools.map((t) => t.name).sort(), toolNames)
    for (const t of r.json.result.tools) assert.equal(t.inputSchema.type, 'object')
  })

  test(`${name}: tools/call list_sandboxes, and a whole sandbox round trip`, async () => {
    const list = await inspector([...target, '--method', 'tools/call', '--tool-name', 'list_sandboxes'])
    assert.equal(list.code, 0, show(list))
    assert.ok(Array.isArray(list.json.result.structuredContent.sandboxes), show(list))
    const created = await inspector([...target, '--method', 'tools/call', '--tool-name', 'create_sandbox', '--tool-arg', 'template=base'])
    assert.equal(created.code, 0, show(created))
    const id = created.json.result.structuredContent.sandbox_id
    assert.match(id, /^[a-z0-9]{20}$/)
    try {
      const run = await inspector([
        ...target, '--method', 'tools/call', '--tool-name', 'run_command',
        '--tool-args-json', JSON.stringify({ sandbox_id: id, command: 'echo via-inspector' }),
      ])
      assert.equal(run.code, 0, show(run))
      assert.equal(run.json.result.structuredContent.stdout, 'via-inspector\n')
      // A tool error is exit 5 (tool_error), with the result still printed.
      const failing = await inspector([
        ...target, '--method', 'tools/call', '--tool-name', 'run_command',
        '--tool-args-json', JSON.stringify({ sandbox_id: id, command: 'exit 4' }),
      ])
      assert.equal(failing.code, 5, show(failing))
      assert.equal(failing.json.result.isError, true)
      assert.equal(failing.json.result.structuredContent.exit_code, 4)
    } finally {
      const killed = await inspector([...target, '--method', 'tools/call', '--tool-name', 'kill_sandbox', '--tool-arg', `sandbox_id=${id}`])
      assert.equal(killed.code, 0, show(killed))
    }
  })

  test(`${name}: an unknown tool fails; resources/list is empty (no resources capability)`, async () => {
    const tool = await inspector([...target, '--method', 'tools/call', '--tool-name', 'no_such_tool'])
    assert.notEqual(tool.code, 0, show(tool))
    assert.match(tool.err, /no_such_tool|-32602/, show(tool))
    // The Inspector answers this itself from the capabilities brig declared (tools only).
    const resources = await inspector([...target, '--method', 'resources/list'])
    assert.equal(resources.code, 0, show(resources))
    assert.deepEqual(resources.json.result.resources, [])
  })
}

test('http: no key or a wrong key is refused (auth_required, exit 3), never an OAuth prompt', async () => {
  for (const headers of [[], ['--header', 'Authorization: Bearer wrong']]) {
    const r = await inspector([mcpUrl.href, '--transport', 'http', ...headers, '--stored-auth-only', '--method', 'tools/list'])
    assert.equal(r.code, 3, show(r))
    assert.equal(r.errJson?.error?.code, 'auth_required', show(r))
    assert.equal(r.json, undefined, 'no tools listed')
  }
})
