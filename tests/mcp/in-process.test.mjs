// The daemon's MCP endpoints (POST /mcp, /mcp/code) call the core in process: during a whole
// MCP session over HTTP (every tool, a cell, code mode's API calls) the daemon's request log
// shows POSTs to /mcp and /mcp/code and nothing else: no request to its REST API, to envd
// (/process.Process, /filesystem.Filesystem, /files) or to the code interpreter (/execute).
// The same work over stdio (`brig mcp`, a client of the daemon's API) does show those requests,
// so the check sees them when they happen. run.sh gives the log's path in BRIG_SERVE_LOG.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, statSync } from 'node:fs'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { brigUrl, bearer, connect, sleep } from './helpers.mjs'

const logPath = process.env.BRIG_SERVE_LOG
if (!logPath) throw new Error('set BRIG_SERVE_LOG to the daemon log (tests/mcp/run.sh does)')

// The daemon's request lines ("request id=… METHOD PATH status=…") and its in-process API calls
// ("mcp api call METHOD PATH …") logged since byte `from` of the log.
function logSince(from) {
  const text = readFileSync(logPath, 'latin1').slice(from)
  const requests = [...text.matchAll(/ request id=\S+ (\S+) (\S+) status=(\d+)/g)].map((m) => `${m[1]} ${m[2]}`)
  const inProcess = [...text.matchAll(/ mcp api call (\S+) (\S+) status=(\d+)/g)].map((m) => `${m[1]} ${m[2]}`)
  return { requests, inProcess }
}
const logSize = () => statSync(logPath).size
// The daemon logs each request once its answer is written: give the last lines a moment.
const settle = () => sleep(300)

const text = (r) => r.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n')

async function session(client, { code } = {}) {
  const call = async (name, args) => {
    const r = await client.callTool({ name, arguments: args })
    assert.ok(!r.isError, `${name}: ${text(r).slice(0, 500)}`)
    return r.structuredContent
  }
  const { sandbox_id: id } = await call('create_sandbox', { template: 'base', timeout: 120, metadata: { suite: 'mcp-in-process' } })
  try {
    assert.equal((await call('run_command', { sandbox_id: id, command: 'echo hi; echo err >&2' })).stdout, 'hi\n')
    await call('write_file', { sandbox_id: id, path: '/home/user/p/f.txt', content: 'x\n' })
    assert.equal((await call('read_file', { sandbox_id: id, path: '/home/user/p/f.txt' })).content, 'x\n')
    assert.equal((await call('list_files', { sandbox_id: id, path: '/home/user/p' })).entries.length, 1)
    const dl = await client.callTool({ name: 'download_files', arguments: { sandbox_id: id, path: '/home/user/p' } })
    assert.ok(!dl.isError, text(dl))
    const blob = dl.content.find((c) => c.type === 'resource').resource.blob
    assert.equal((await call('upload_files', { sandbox_id: id, path: '/home/user/q', archive: blob })).entries, 2)
    assert.equal((await call('run_code', { sandbox_id: id, code: '20 + 1' })).text, '21')
    await call('set_sandbox_timeout', { sandbox_id: id, seconds: 120 })
    assert.deepEqual((await call('list_sandboxes', { metadata: { suite: 'mcp-in-process' } })).sandboxes.map((s) => s.sandbox_id), [id])
    if (code) {
      const r = await code.callTool({
        name: 'execute_read',
        arguments: { code: `async () => (await api.request({ method: 'GET', path: '/sandboxes/${id}' })).data.sandboxID` },
      })
      assert.ok(!r.isError, JSON.stringify(r).slice(0, 1000))
      assert.equal(r.structuredContent.untrusted_data, id)
      assert.equal(r.structuredContent.api_calls, 1)
    }
  } finally {
    assert.equal((await call('kill_sandbox', { sandbox_id: id })).killed, true)
  }
}

test('HTTP: a whole session is served in process; the daemon never calls itself', async () => {
  const http = await connect('http', 'in-process-tools')
  const code = new Client({ name: 'in-process-code', version: '1.0.0' })
  await code.connect(new StreamableHTTPClientTransport(new URL('/mcp/code', brigUrl), { requestInit: { headers: bearer } }))
  try {
    await settle()
    const from = logSize()
    await session(http, { code })
    await settle()
    const { requests, inProcess } = logSince(from)
    const others = requests.filter((r) => !/^\S+ \/mcp(\/code)?$/.test(r))
    assert.deepEqual(others, [], `requests other than the MCP posts while an HTTP MCP session ran: ${others.join(', ')}`)
    assert.ok(requests.filter((r) => r === 'POST /mcp').length >= 11, `the log records the session itself: ${requests.length} requests`)
    assert.ok(requests.includes('POST /mcp/code'))
    // Code mode's api.request reached the REST route through the daemon's router, in memory.
    assert.ok(inProcess.some((r) => r.startsWith('GET /sandboxes/')), `in-process API calls: ${inProcess.join(', ')}`)
  } finally {
    await Promise.all([http.close(), code.close()])
  }
})

test('stdio: the same session is a client of the API, and the log shows it', async () => {
  const stdio = await connect('stdio', 'in-process-stdio')
  try {
    const from = logSize()
    await session(stdio)
    await settle()
    const { requests } = logSince(from)
    for (const expected of ['POST /v2/sandboxes', 'POST /process.Process/Start', 'POST /filesystem.Filesystem/ListDir',
      'GET /files', 'POST /files', 'GET /files/archive', 'POST /files/archive', 'POST /execute', 'DELETE /sandboxes/'])
      assert.ok(requests.some((r) => r.startsWith(expected)), `${expected} in ${requests.join(', ')}`)
    assert.ok(!requests.some((r) => r.startsWith('POST /mcp')), 'stdio does not use the HTTP endpoint')
  } finally {
    await stdio.close()
  }
})
