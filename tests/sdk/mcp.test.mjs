// `brig mcp` (stdio) driven by the official MCP TypeScript SDK client (pinned 1.32.2).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { spawn } from 'node:child_process'

const env = { BRIG_URL: process.env.E2B_API_URL, BRIG_API_KEY: process.env.E2B_API_KEY, PATH: process.env.PATH }
let client

before(async () => {
  client = new Client({ name: 'brig-tests', version: '1.0.0' })
  await client.connect(new StdioClientTransport({ command: process.env.BRIG_BIN, args: ['mcp'], env }))
})
after(async () => client?.close())

test('initialize negotiates 2025-11-25 and tools/list has valid schemas', async () => {
  assert.equal(client.getServerVersion().name, 'brig')
  const { tools } = await client.listTools()
  const names = tools.map((t) => t.name).sort()
  assert.deepEqual(names, ['create_sandbox', 'kill_sandbox', 'list_files', 'list_sandboxes', 'read_file', 'run_command', 'set_sandbox_timeout', 'write_file'])
  for (const t of tools) {
    assert.equal(t.inputSchema.type, 'object')
    assert.equal(t.outputSchema.type, 'object')
    assert.ok(t.title && t.description && t.annotations)
  }
})

test('create, run, write, read, list, timeout, kill', async () => {
  const created = await client.callTool({ name: 'create_sandbox', arguments: { template: 'base', metadata: { via: 'mcp' } } })
  assert.ok(!created.isError, JSON.stringify(created))
  const id = created.structuredContent.sandbox_id
  assert.match(id, /^[a-z0-9]{20}$/)
  const run = await client.callTool({ name: 'run_command', arguments: { sandbox_id: id, command: 'echo hello; echo oops >&2' } })
  assert.equal(run.structuredContent.exit_code, 0)
  assert.equal(run.structuredContent.stdout, 'hello\n')
  assert.match(run.content[0].text, /<untrusted-[a-z0-9]{12}>\nhello\n\n<\/untrusted-[a-z0-9]{12}>/)
  const failing = await client.callTool({ name: 'run_command', arguments: { sandbox_id: id, command: 'exit 3' } })
  assert.equal(failing.isError, true)
  assert.equal(failing.structuredContent.exit_code, 3)
  await client.callTool({ name: 'write_file', arguments: { sandbox_id: id, path: '/home/user/n.txt', content: 'note' } })
  const read = await client.callTool({ name: 'read_file', arguments: { sandbox_id: id, path: '/home/user/n.txt' } })
  assert.equal(read.structuredContent.content, 'note')
  const files = await client.callTool({ name: 'list_files', arguments: { sandbox_id: id, path: '/home/user' } })
  assert.ok(files.structuredContent.entries.some((e) => e.path === '/home/user/n.txt' && e.type === 'file' && e.size === 4))
  const progress = []
  const slow = await client.callTool(
    { name: 'run_command', arguments: { sandbox_id: id, command: 'for i in 1 2 3; do echo step$i; sleep 0.3; done' } },
    undefined,
    { onprogress: (p) => progress.push(p) },
  )
  assert.equal(slow.structuredContent.stdout, 'step1\nstep2\nstep3\n')
  // The last notification may share a chunk with the response and be dropped by the client.
  assert.ok(progress.length >= 2, JSON.stringify(progress))
  assert.match(progress[0].message, /step1/)
  const listed = await client.callTool({ name: 'list_sandboxes', arguments: { metadata: { via: 'mcp' } } })
  assert.ok(listed.structuredContent.sandboxes.some((s) => s.sandbox_id === id))
  assert.match(listed.content[0].text, /\| Sandbox ID \| Template \| Status \| Info \|/)
  const t = await client.callTool({ name: 'set_sandbox_timeout', arguments: { sandbox_id: id, seconds: 120 } })
  assert.ok(!t.isError)
  const killed = await client.callTool({ name: 'kill_sandbox', arguments: { sandbox_id: id } })
  assert.equal(killed.structuredContent.killed, true)
  const again = await client.callTool({ name: 'kill_sandbox', arguments: { sandbox_id: id } })
  assert.equal(again.isError, true)
  assert.match(again.content[0].text, /no sandbox/)
})

test('tool errors are isError results; protocol errors are JSON-RPC errors', async () => {
  const missing = await client.callTool({ name: 'run_command', arguments: { sandbox_id: 'zzzzzzzzzzzzzzzzzzzz', command: 'true' } })
  assert.equal(missing.isError, true)
  const bad = await client.callTool({ name: 'run_command', arguments: { sandbox_id: 'nope' } })
  assert.equal(bad.isError, true)
  await assert.rejects(client.callTool({ name: 'no_such_tool', arguments: {} }), (e) => e.code === -32602)
})

test('raw stdio: parse errors, requests before initialize, server/discover', async () => {
  const child = spawn(process.env.BRIG_BIN, ['mcp'], { env, stdio: ['pipe', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  child.stdin.write('{not json\n')
  child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }) + '\n')
  child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: 'd', method: 'server/discover' }) + '\n')
  child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'initialize', params: { protocolVersion: '1999-01-01', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } }) + '\n')
  child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'ping' }) + '\n')
  child.stdin.end()
  await new Promise((r) => child.on('exit', r))
  const lines = out.trim().split('\n').map((l) => JSON.parse(l))
  assert.equal(lines[0].error.code, -32700)
  assert.equal(lines[0].id, null)
  assert.ok(lines[1].error, 'a request before initialize is an error, not an exit')
  assert.equal(lines[1].id, 1)
  assert.equal(lines[2].id, 'd')
  assert.equal(lines[2].error.code, -32601)
  assert.equal(lines[3].result.protocolVersion, '2025-11-25')
  assert.deepEqual(lines[4], { jsonrpc: '2.0', id: 3, result: {} })
})

// ---- Streamable HTTP at /mcp on the daemon (stateless) ----
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
const mcpUrl = new URL('/mcp', process.env.E2B_API_URL)
const bearer = { Authorization: `Bearer ${process.env.E2B_API_KEY}` }

test('HTTP: the official client lists tools and runs a command, with progress over SSE', async () => {
  const http = new Client({ name: 'brig-tests-http', version: '1.0.0' })
  await http.connect(new StreamableHTTPClientTransport(mcpUrl, { requestInit: { headers: bearer } }))
  const { tools } = await http.listTools()
  assert.ok(tools.some((t) => t.name === 'run_command'))
  const created = await http.callTool({ name: 'create_sandbox', arguments: {} })
  const id = created.structuredContent.sandbox_id
  const progress = []
  const run = await http.callTool(
    { name: 'run_command', arguments: { sandbox_id: id, command: 'for i in 1 2 3; do echo s$i; sleep 0.2; done' } },
    undefined,
    { onprogress: (p) => progress.push(p) },
  )
  assert.equal(run.structuredContent.stdout, 's1\ns2\ns3\n')
  assert.ok(progress.length >= 3, JSON.stringify(progress))
  const killed = await http.callTool({ name: 'kill_sandbox', arguments: { sandbox_id: id } })
  assert.equal(killed.structuredContent.killed, true)
  await http.close()
})

test('HTTP: status codes of the transport', async () => {
  const post = (body, headers = {}) =>
    fetch(mcpUrl, {
      method: 'POST',
      headers: { ...bearer, Accept: 'application/json, text/event-stream', 'Content-Type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    })
  const ping = { jsonrpc: '2.0', id: 1, method: 'ping' }
  let res = await post(ping)
  assert.equal(res.status, 200)
  assert.deepEqual(await res.json(), { jsonrpc: '2.0', id: 1, result: {} })
  res = await post(ping, { Authorization: 'Bearer wrong' })
  assert.equal(res.status, 401)
  assert.match(res.headers.get('www-authenticate'), /^Bearer /)
  res = await post(ping, { Accept: 'application/json' })
  assert.equal(res.status, 406)
  res = await post(ping, { 'Content-Type': 'text/plain' })
  assert.equal(res.status, 415)
  res = await post(ping, { 'MCP-Protocol-Version': '1999-01-01' })
  assert.equal(res.status, 400)
  res = await post('{broken')
  assert.equal(res.status, 400)
  assert.equal((await res.json()).error.code, -32700)
  res = await post([ping])
  assert.equal(res.status, 400)
  res = await post({ jsonrpc: '2.0', method: 'notifications/initialized' })
  assert.equal(res.status, 202)
  res = await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'nope', arguments: {} } })
  assert.equal(res.status, 200)
  assert.equal((await res.json()).error.code, -32602)
  res = await post('{"jsonrpc":"2.0","id":3,"method":"ping","pad":"' + 'x'.repeat(2 << 20) + '"}')
  assert.equal(res.status, 413)
  res = await post(ping, { Origin: 'http://evil.example' })
  assert.equal(res.status, 403)
  res = await fetch(mcpUrl, { headers: { ...bearer, Accept: 'text/event-stream' } })
  assert.equal(res.status, 405)
  assert.equal(res.headers.get('allow'), 'POST')
  res = await fetch(mcpUrl, { method: 'DELETE', headers: bearer })
  assert.equal(res.status, 405)
})
