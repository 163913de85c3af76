// brig's MCP server, both transports, driven by the official MCP TypeScript SDK client
// (pinned 1.32.2): `brig mcp` on stdio and POST /mcp on the daemon (Streamable HTTP).
// The protocol layer: initialize and version negotiation, tools/list and its schemas, the
// JSON-RPC error mapping and every status code of the HTTP transport. The tools themselves
// are in tools.test.mjs.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import http from 'node:http'
import { Ajv2020 } from 'ajv/dist/2020.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { connect, stdioEnv, brigBin, mcpUrl, bearer, processes, sleep } from './helpers.mjs'

const toolNames = [
  'create_sandbox', 'download_files', 'get_sandbox_url', 'kill_sandbox', 'list_files', 'list_sandboxes',
  'pause_sandbox', 'read_file', 'resume_sandbox', 'run_code', 'run_command', 'set_sandbox_timeout', 'upload_files',
  'write_file',
]
let client

before(async () => {
  client = await connect('stdio')
})
after(async () => client?.close())

test('initialize: server info and capabilities; tools/list has valid JSON Schema 2020-12 schemas', async () => {
  assert.equal(client.getServerVersion().name, 'brig')
  assert.deepEqual(client.getServerCapabilities().tools, { listChanged: false })
  assert.match(client.getInstructions(), /untrusted/)
  const { tools } = await client.listTools()
  assert.deepEqual(tools.map((t) => t.name).sort(), toolNames)
  const ajv = new Ajv2020({ strict: true, allErrors: true })
  for (const t of tools) {
    assert.equal(t.inputSchema.type, 'object', t.name)
    assert.equal(t.outputSchema.type, 'object', t.name)
    assert.ok(t.title && t.description && t.annotations, t.name)
    // Each schema compiles under strict Ajv (no unknown keywords, no contradictions).
    assert.doesNotThrow(() => ajv.compile(t.inputSchema), `${t.name} inputSchema`)
    assert.doesNotThrow(() => ajv.compile(t.outputSchema), `${t.name} outputSchema`)
    for (const r of t.inputSchema.required ?? []) assert.ok(r in t.inputSchema.properties, `${t.name}: required ${r} is a property`)
    for (const r of t.outputSchema.required ?? []) assert.ok(r in t.outputSchema.properties, `${t.name}: required ${r} is a property`)
  }
  const validate = ajv.compile(tools.find((t) => t.name === 'run_command').inputSchema)
  assert.ok(validate({ sandbox_id: 'a'.repeat(20), command: 'ls' }))
  assert.ok(!validate({ sandbox_id: 'nope', command: 'ls' }))
  assert.ok(!validate({ sandbox_id: 'a'.repeat(20), command: 'ls', extra: 1 }))
})

test('create, run, write, read, list, timeout, kill (stdio)', async () => {
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
  assert.match(listed.content[0].text, /\| Sandbox ID \| Template \| Status \| CPU \| Memory \| Info \|/)
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
  await assert.rejects(client.callTool({ name: 'no_such_tool', arguments: {} }), (e) => e.code === -32602 && /unknown tool/.test(e.message))
})

// Raw newline-delimited JSON-RPC on `brig mcp`'s stdin; returns the parsed output lines.
async function rawStdio(messages) {
  const child = spawn(brigBin, ['mcp'], { env: stdioEnv, stdio: ['pipe', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  for (const m of messages) child.stdin.write((typeof m === 'string' ? m : JSON.stringify(m)) + '\n')
  child.stdin.end()
  const code = await new Promise((r) => child.on('exit', r))
  assert.equal(code, 0, 'brig mcp exits 0 at the end of its input')
  return out.trim().split('\n').map((l) => JSON.parse(l))
}
const init = (id, protocolVersion) => ({
  jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion, capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
})

test('raw stdio: parse errors, requests before initialize, server/discover', async () => {
  const lines = await rawStdio([
    '{not json',
    { jsonrpc: '2.0', id: 1, method: 'tools/list' },
    { jsonrpc: '2.0', id: 'd', method: 'server/discover' },
    init(2, '1999-01-01'),
    { jsonrpc: '2.0', id: 3, method: 'ping' },
  ])
  assert.equal(lines[0].error.code, -32700)
  assert.equal(lines[0].id, null)
  assert.ok(lines[1].error, 'a request before initialize is an error, not an exit')
  assert.equal(lines[1].id, 1)
  assert.equal(lines[2].id, 'd')
  assert.equal(lines[2].error.code, -32601)
  assert.equal(lines[3].result.protocolVersion, '2025-11-25')
  assert.deepEqual(lines[4], { jsonrpc: '2.0', id: 3, result: {} })
})

test('raw stdio: version negotiation, bad requests and bad arguments', async () => {
  const lines = await rawStdio([
    init(1, '2025-06-18'),
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'no_such_tool', arguments: {} } },
    { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'run_command', arguments: 'ls' } },
    { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { arguments: {} } },
    { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'set_sandbox_timeout', arguments: { sandbox_id: 'a'.repeat(20), seconds: 'soon' } } },
    { jsonrpc: '2.0', id: 6, method: 'no/such/method' },
    { jsonrpc: '2.0', id: 7, method: 'resources/list' },
    [{ jsonrpc: '2.0', id: 8, method: 'ping' }],
    { jsonrpc: '1.0', id: 9, method: 'ping' },
  ])
  assert.equal(lines.length, 9, 'the notification gets no answer')
  // tools/call may be answered out of order (calls run concurrently): match answers by id.
  const byId = Object.fromEntries(lines.map((l) => [l.id, l]))
  assert.equal(byId[1].result.protocolVersion, '2025-06-18', 'a supported older version is kept')
  assert.deepEqual(byId[1].result.capabilities, { tools: { listChanged: false } })
  assert.equal(byId[2].error.code, -32602, 'unknown tool')
  assert.equal(byId[3].error.code, -32602, 'arguments must be an object')
  assert.equal(byId[4].error.code, -32602, 'a tool name is required')
  assert.equal(byId[5].result.isError, true, 'a badly typed argument is a tool error')
  assert.match(byId[5].result.content[0].text, /invalid arguments/)
  assert.equal(byId[6].error.code, -32601)
  assert.equal(byId[7].error.code, -32601, 'no resources capability')
  assert.equal(byId[9].error.code, -32600)
  const batch = lines.filter((l) => l.id === null)
  assert.equal(batch.length, 1)
  assert.equal(batch[0].error.code, -32600, 'batches are refused')
  for (const v of ['2025-03-26', '2025-11-25']) assert.equal((await rawStdio([init(1, v)]))[0].result.protocolVersion, v)
  assert.equal((await rawStdio([init(1, '2024-11-05')]))[0].result.protocolVersion, '2025-11-25', 'an unsupported version gets the latest')
})

// ---- Streamable HTTP at /mcp on the daemon (stateless) ----

test('HTTP: the official client negotiates 2025-11-25, lists tools and runs a command, with progress over SSE', async () => {
  const transport = new StreamableHTTPClientTransport(mcpUrl, { requestInit: { headers: bearer } })
  const http = new Client({ name: 'brig-tests-http', version: '1.0.0' })
  await http.connect(transport)
  assert.equal(transport.protocolVersion, '2025-11-25')
  assert.equal(transport.sessionId, undefined, 'stateless: no Mcp-Session-Id')
  const { tools } = await http.listTools()
  assert.deepEqual(tools.map((t) => t.name).sort(), toolNames)
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
  assert.deepEqual(progress.map((p) => p.progress), [...progress.map((p) => p.progress)].sort((a, b) => a - b), 'progress increases')
  const killed = await http.callTool({ name: 'kill_sandbox', arguments: { sandbox_id: id } })
  assert.equal(killed.structuredContent.killed, true)
  await http.close()
})

const post = (body, headers = {}) =>
  fetch(mcpUrl, {
    method: 'POST',
    headers: { ...bearer, Accept: 'application/json, text/event-stream', 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
const ping = { jsonrpc: '2.0', id: 1, method: 'ping' }

test('HTTP: status codes of the transport', async () => {
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

test('HTTP: authentication', async () => {
  const { Authorization, ...noAuth } = bearer
  const res = await fetch(mcpUrl, {
    method: 'POST',
    headers: { ...noAuth, Accept: 'application/json, text/event-stream', 'Content-Type': 'application/json' },
    body: JSON.stringify(ping),
  })
  assert.equal(res.status, 401, 'no key')
  assert.match(res.headers.get('www-authenticate'), /^Bearer error="invalid_token"/)
  const body = await res.json()
  assert.equal(body.jsonrpc, '2.0')
  assert.equal(body.error.code, -32000)
  assert.equal((await post(ping, { Authorization: `Basic ${Buffer.from('user:').toString('base64')}` })).status, 401, 'not a bearer token')
  assert.equal((await post(ping, { Authorization: `Bearer ${bearer.Authorization.slice(7)}x` })).status, 401, 'a longer key')
  assert.equal((await post(ping, { Authorization: 'Bearer ' })).status, 401, 'an empty key')
  // The official client surfaces the 401 at connect.
  const c = new Client({ name: 'no-key', version: '1' })
  await assert.rejects(
    c.connect(new StreamableHTTPClientTransport(mcpUrl, { requestInit: { headers: { Authorization: 'Bearer wrong' } } })),
    (e) => e.code === 401 || /401|invalid API key/.test(String(e.message)),
  )
})

test('HTTP: Origin and Host (DNS rebinding)', async () => {
  const port = mcpUrl.port
  for (const origin of [`http://127.0.0.1:${port}`, `http://localhost:${port}`, 'http://[::1]']) {
    const res = await post(ping, { Origin: origin })
    assert.equal(res.status, 200, origin)
  }
  for (const origin of ['http://evil.example', 'http://127.0.0.1.evil.example', 'null', 'https://localhost.evil.example:443']) {
    const res = await post(ping, { Origin: origin })
    assert.equal(res.status, 403, origin)
  }
  // Forbidden before authentication: a bad Origin with no key is still 403.
  const res = await fetch(mcpUrl, { method: 'POST', headers: { Origin: 'http://evil.example', 'Content-Type': 'application/json' }, body: '{}' })
  assert.equal(res.status, 403)
  // A rebound name in Host (fetch cannot set Host; node:http can).
  const withHost = (host) =>
    new Promise((resolve, reject) => {
      const req = http.request(
        { host: mcpUrl.hostname, port: mcpUrl.port, path: '/mcp', method: 'POST',
          headers: { ...bearer, Host: host, Accept: 'application/json, text/event-stream', 'Content-Type': 'application/json' } },
        (r) => (r.resume(), resolve(r.statusCode)),
      )
      req.on('error', reject)
      req.end(JSON.stringify(ping))
    })
  assert.equal(await withHost('evil.example'), 403)
  assert.equal(await withHost(`evil.example:${mcpUrl.port}`), 403)
  assert.equal(await withHost(`localhost:${mcpUrl.port}`), 200)
  assert.equal(await withHost(`127.0.0.1:${mcpUrl.port}`), 200)
})

test('HTTP: GET and DELETE are 405 with Allow: POST, whatever the headers', async () => {
  for (const method of ['GET', 'DELETE', 'PUT', 'PATCH']) {
    for (const headers of [bearer, { ...bearer, Accept: 'text/event-stream', 'Mcp-Session-Id': 'x' }, {}]) {
      const res = await fetch(mcpUrl, { method, headers })
      assert.equal(res.status, 405, `${method} ${JSON.stringify(headers)}`)
      assert.equal(res.headers.get('allow'), 'POST')
    }
  }
})

test('HTTP: initialize and version negotiation on the wire', async () => {
  for (const [asked, got] of [['2025-11-25', '2025-11-25'], ['2025-06-18', '2025-06-18'], ['2025-03-26', '2025-03-26'], ['2024-11-05', '2025-11-25']]) {
    const res = await post(init(1, asked))
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type'), /^application\/json/)
    const body = await res.json()
    assert.equal(body.result.protocolVersion, got, `asked ${asked}`)
    assert.equal(body.result.serverInfo.name, 'brig')
    assert.equal(res.headers.get('mcp-session-id'), null, 'stateless: no session')
  }
  for (const v of ['2025-11-25', '2025-06-18', '2025-03-26']) assert.equal((await post(ping, { 'MCP-Protocol-Version': v })).status, 200, v)
  assert.equal((await post(ping, { 'MCP-Protocol-Version': '2024-11-05' })).status, 400)
  // Stateless: a request needs no prior initialize on the same connection.
  const res = await post({ jsonrpc: '2.0', id: 2, method: 'tools/list' })
  assert.equal(res.status, 200)
  assert.equal((await res.json()).result.tools.length, toolNames.length)
})

test('HTTP: a 2 MB body is refused with 413 and nothing runs', async () => {
  const big = JSON.stringify({
    jsonrpc: '2.0', id: 9, method: 'tools/call',
    params: { name: 'create_sandbox', arguments: { metadata: { pad: 'x'.repeat(2 << 20) } } },
  })
  const before = await (await post({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'list_sandboxes', arguments: {} } })).json()
  const res = await post(big)
  assert.equal(res.status, 413)
  const afterList = await (await post({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'list_sandboxes', arguments: {} } })).json()
  assert.equal(afterList.result.structuredContent.sandboxes.length, before.result.structuredContent.sandboxes.length)
  // Just under the 1 MiB limit is accepted.
  const res2 = await post('{"jsonrpc":"2.0","id":3,"method":"ping","pad":"' + 'x'.repeat((1 << 20) - 100) + '"}')
  assert.equal(res2.status, 200)
})

test('HTTP: two clients sharing a key: cancelling one request leaves the other client\'s same-numbered request alone', async () => {
  // Every SDK client numbers its requests 0, 1, 2...: two agents with one API key send the same
  // ids, and the stateless endpoint (no sessions) cannot tell them apart. A cancellation that
  // matches two calls in flight is ambiguous: it must stop neither (never the wrong one), and
  // the other call must complete normally.
  const connectHttp = async (name) => {
    const c = new Client({ name, version: '1' })
    await c.connect(new StreamableHTTPClientTransport(mcpUrl, { requestInit: { headers: bearer } }))
    return c
  }
  const a = await connectHttp('agent-a')
  const b = await connectHttp('agent-b')
  const setup = await connectHttp('setup')
  const id = (await setup.callTool({ name: 'create_sandbox', arguments: {} })).structuredContent.sandbox_id
  try {
    // Both at the same point in their numbering: initialize (0), then the call below (1).
    const ac = new AbortController()
    const aCall = a.callTool({ name: 'run_command', arguments: { sandbox_id: id, command: 'sleep 30; echo A' } }, undefined, { signal: ac.signal, timeout: 60_000 })
    aCall.catch(() => {})
    await sleep(300)
    const started = Date.now()
    const bCall = b.callTool({ name: 'run_command', arguments: { sandbox_id: id, command: 'sleep 2; echo B' } }, undefined, { timeout: 15_000 })
    await sleep(500)
    ac.abort('agent a cancels')
    await assert.rejects(aCall, /agent a cancels/)
    const bResult = await bCall.catch((e) => e)
    assert.ok(!(bResult instanceof Error), `agent b's call was lost (${bResult?.message}) ${Date.now() - started} ms after it started`)
    assert.equal(bResult.structuredContent.stdout, 'B\n')
    // The ambiguous cancellation stopped nothing: agent a's command is still there (the sandbox
    // kill below ends it).
    assert.equal((await processes(id, /^sleep 30 /)).length, 1)
  } finally {
    await setup.callTool({ name: 'kill_sandbox', arguments: { sandbox_id: id } })
    await Promise.all([a.close(), b.close(), setup.close()])
  }
})
