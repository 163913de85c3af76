// MCP code mode (`brig mcp --mode code`, POST /mcp/code) with the official client on both
// transports: search, execute_read, execute_write, the guards of mcp.md section 5 item 21 (each
// refused before any upstream call: api_calls stays 0), no network and no API key inside the
// executor sandbox, the timeout and the output cap. The daemon under test runs with
// BRIG_CODE_MODE_TIMEOUT_MS=5000 (run.sh), so the timeout test is quick.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { brigUrl, apiKey, brigBin, bearer, stdioEnv, transports, sleep } from './helpers.mjs'

const clients = {}
before(async () => {
  for (const t of transports) {
    const c = new Client({ name: `code-mode-${t}`, version: '1.0.0' })
    await c.connect(
      t === 'stdio'
        ? new StdioClientTransport({ command: brigBin, args: ['mcp', '--mode', 'code'], env: { ...stdioEnv, BRIG_CODE_MODE_TIMEOUT_MS: '5000' } })
        : new StreamableHTTPClientTransport(new URL('/mcp/code', brigUrl), { requestInit: { headers: bearer } }),
    )
    await c.listTools()
    clients[t] = c
  }
})
after(async () => {
  for (const c of Object.values(clients)) await c.close()
})

const run = (t, name, code) => clients[t].callTool({ name, arguments: { code } })
const api = async (method, path, body) => {
  const r = await fetch(new URL(path, brigUrl), {
    method, headers: { 'X-API-KEY': apiKey, 'Content-Type': 'application/json' }, body: body && JSON.stringify(body),
  })
  return r.status === 204 ? null : r.json()
}

test('tools/list: three tools with TypeScript declarations, examples and annotations', async () => {
  const { tools } = await clients.stdio.listTools()
  assert.deepEqual(tools.map((t) => t.name), ['search', 'execute_read', 'execute_write'])
  for (const t of tools) {
    assert.deepEqual(t.inputSchema.required, ['code'])
    assert.match(t.description, /declare const/)
    assert.match(t.description, /Examples:\n  async \(\) =>/)
    assert.match(t.description, /untrusted_data/)
  }
  assert.equal(tools[0].annotations.readOnlyHint, true)
  assert.equal(tools[1].annotations.readOnlyHint, true)
  assert.equal(tools[2].annotations.destructiveHint, true)
})

for (const t of transports) {
  test(`search finds the sandbox routes (${t})`, async () => {
    const r = await run(t, 'search', "async () => Object.entries(spec.paths).filter(([p]) => p.includes('sandboxes')).map(([p, ops]) => [p, Object.keys(ops)])")
    assert.ok(!r.isError, JSON.stringify(r))
    const found = Object.fromEntries(r.structuredContent.untrusted_data)
    assert.deepEqual(found['/v2/sandboxes'].sort(), ['get', 'post'])
    assert.deepEqual(found['/sandboxes/{sandboxID}'].sort(), ['delete', 'get'])
    assert.equal(r.structuredContent.source, 'search')
    assert.equal(r.structuredContent.truncated, false)
    assert.equal(JSON.parse(r.content[0].text).untrusted_data.length, r.structuredContent.untrusted_data.length)
  })

  test(`execute_read lists sandboxes and counts them (${t})`, async () => {
    const mine = await api('POST', '/v2/sandboxes', { templateID: 'base', timeout: 120, metadata: { suite: `code-mode-${t}` } })
    try {
      const r = await run(t, 'execute_read', `async () => {
        const all = await api.request({ method: 'GET', path: '/v2/sandboxes' })
        const tagged = await api.request({ method: 'GET', path: '/v2/sandboxes', query: { metadata: 'suite=code-mode-${t}' } })
        console.log('listed', all.data.length)
        return { status: all.status, ok: all.ok, total: all.data.length, tagged: tagged.data.map((s) => s.sandboxID) }
      } // a trailing comment must not swallow the wrapper`)
      assert.ok(!r.isError, JSON.stringify(r))
      const d = r.structuredContent.untrusted_data
      assert.equal(d.status, 200)
      assert.equal(d.ok, true)
      assert.deepEqual(d.tagged, [mine.sandboxID])
      assert.ok(d.total >= 2)  // ours, and the executor itself
      assert.equal(r.structuredContent.api_calls, 2)
      assert.match(r.structuredContent.logs[0], /^listed \d+$/)
    } finally {
      await api('DELETE', `/sandboxes/${mine.sandboxID}`)
    }
  })

  test(`execute_read refuses a POST before any call is made (${t})`, async () => {
    // Executors (the one kept ready included) come and go; count the other sandboxes.
    const others = async () => (await api('GET', '/v2/sandboxes')).filter((s) => s.metadata?.['brig.role'] !== 'code-mode-executor').length
    const before = await others()
    const r = await run(t, 'execute_read', "async () => api.request({ method: 'POST', path: '/v2/sandboxes', body: { templateID: 'base' } })")
    assert.equal(r.isError, true)
    assert.match(r.structuredContent.untrusted_data, /POST is not allowed here/)
    assert.equal(r.structuredContent.api_calls, 0)
    assert.equal(await others(), before)
  })

  test(`execute_write creates and kills a sandbox (${t})`, async () => {
    const r = await run(t, 'execute_write', `async () => {
      const c = await api.request({ method: 'POST', path: '/v2/sandboxes', body: { templateID: 'base', timeout: 60, metadata: { by: 'code-mode' } } })
      const got = await api.request({ method: 'GET', path: '/sandboxes/' + c.data.sandboxID })
      const k = await api.request({ method: 'DELETE', path: '/sandboxes/' + c.data.sandboxID })
      const gone = await api.request({ method: 'GET', path: '/sandboxes/' + c.data.sandboxID })
      return { created: c.status, id: c.data.sandboxID, meta: got.data.metadata, killed: k.status, after: gone.status }
    }`)
    assert.ok(!r.isError, JSON.stringify(r))
    const d = r.structuredContent.untrusted_data
    assert.deepEqual([d.created, d.killed, d.after], [201, 204, 404])
    assert.equal(d.meta.by, 'code-mode')
    assert.equal(r.structuredContent.api_calls, 4)
    assert.ok(!(await api('GET', '/v2/sandboxes')).some((s) => s.sandboxID === d.id))
  })

  test(`every path-guard bypass is refused with no upstream call (${t})`, async () => {
    const paths = ['/../x', '//evil.com/x', 'http://x/', '/sandboxes/%2e%2e', '/sandboxes/%252e%252e/metrics', '/v2%2fsandboxes',
      '/v2/sandboxes\r\nX-Api-Key: x', '/v2\\sandboxes', '/v2/sandboxes?limit=1', '/metrics', '/mcp', '/files/archive', '/keys']
    const r = await run(t, 'execute_write', `async () => {
      const out = {}
      for (const path of ${JSON.stringify(paths)}) {
        try { await api.request({ method: 'GET', path }); out[path] = 'CALLED' } catch (e) { out[path] = e.message }
      }
      try { await api.request({ method: 'TRACE', path: '/v2/sandboxes' }); out.trace = 'CALLED' } catch (e) { out.trace = e.message }
      return out
    }`)
    assert.ok(!r.isError, JSON.stringify(r))
    assert.equal(r.structuredContent.api_calls, 0)
    for (const [p, why] of Object.entries(r.structuredContent.untrusted_data)) assert.notEqual(why, 'CALLED', p)
  })

  test(`fetch fails inside the executor: no network (${t})`, async () => {
    const r = await run(t, 'search', `async () => {
      const out = []
      for (const url of ['http://1.1.1.1/', 'http://127.0.0.1:49982/health', '${brigUrl}/health', 'https://registry.npmjs.org/']) {
        try { const res = await fetch(url, { signal: AbortSignal.timeout(3000) }); out.push(url + ' ' + res.status) } catch (e) { out.push('failed') }
      }
      return out
    }`)
    assert.ok(!r.isError, JSON.stringify(r))
    assert.deepEqual(r.structuredContent.untrusted_data, ['failed', 'failed', 'failed', 'failed'])
  })

  test(`no API key anywhere in the executor: env, files, processes (${t})`, async () => {
    // The key is split in the code, so the code file itself does not contain it.
    const half = Math.floor(apiKey.length / 2)
    const r = await run(t, 'execute_read', `async () => {
      const { readFileSync, readdirSync, statSync } = await import('node:fs')
      const needle = ${JSON.stringify(apiKey.slice(0, half))} + ${JSON.stringify(apiKey.slice(half))}
      const hits = []
      if (JSON.stringify(process.env).includes(needle)) hits.push('env')
      let files = 0, procs = 0
      const walk = (dir, depth) => {
        let names = []
        try { names = readdirSync(dir) } catch { return }
        for (const n of names) {
          const p = dir + '/' + n
          let st
          try { st = statSync(p) } catch { continue }
          if (st.isDirectory() && depth < 6) walk(p, depth + 1)
          else if (st.isFile() && st.size < 1 << 20) {
            files++
            try { if (readFileSync(p, 'latin1').includes(needle)) hits.push(p) } catch {}
          }
        }
      }
      for (const d of ['/tmp', '/home', '/root', '/etc', '/run', '/var/tmp', '/dev/shm']) walk(d, 0)
      for (const pid of readdirSync('/proc').filter((n) => /^\\d+$/.test(n))) {
        procs++
        for (const f of ['cmdline', 'environ']) {
          try { if (readFileSync('/proc/' + pid + '/' + f, 'latin1').includes(needle)) hits.push(pid + '/' + f) } catch {}
        }
      }
      return { hits, files, procs }
    }`)
    assert.ok(!r.isError, JSON.stringify(r))
    const d = r.structuredContent.untrusted_data
    assert.deepEqual(d.hits, [])
    assert.ok(d.files > 10 && d.procs >= 2, JSON.stringify(d))  // the search really looked
  })
}

test('errors: a SyntaxError, a throw, not a function; all isError inside the envelope', async () => {
  for (const [code, re] of [['async () => {', /SyntaxError/], ["async () => { throw new Error('boom') }", /boom/], ['42', /must be a function/]]) {
    const r = await run('stdio', 'execute_read', code)
    assert.equal(r.isError, true, code)
    assert.match(r.structuredContent.untrusted_data, re)
    assert.equal(r.structuredContent.source, 'execute_read')
  }
})

test('oversize output is truncated with a footer', async () => {
  const r = await run('http', 'search', "async () => 'x'.repeat(100000)")
  assert.ok(!r.isError, JSON.stringify(r).slice(0, 2000))
  assert.equal(r.structuredContent.truncated, true)
  assert.equal(r.structuredContent.original_chars, 100002)
  assert.equal(r.structuredContent.untrusted_data.length, 24000)
  assert.match(r.content[0].text, /--- TRUNCATED --- The result was 100002 characters \(limit 24000\)/)
})

test('a while(true){} is killed by the timeout, and its sandbox is gone', async () => {
  const executors = async () =>
    ((await api('GET', '/v2/sandboxes?metadata=' + encodeURIComponent('brig.role=code-mode-executor'))) ?? []).map((s) => s.sandboxID)
  // A run leaves one executor ready (Node started, waiting): the next run takes that one.
  await run('stdio', 'search', 'async () => 1')
  await sleep(3000)
  const ready = await executors()
  assert.ok(ready.length >= 1, 'no ready executor')
  const t0 = Date.now()
  const r = await run('stdio', 'execute_read', 'async () => { while (true) {} }')
  assert.equal(r.isError, true)
  assert.match(r.structuredContent.untrusted_data, /ran longer than 5 s and was killed/)
  assert.ok(Date.now() - t0 < 20000)
  const after = await executors()
  assert.ok(ready.some((id) => !after.includes(id)), `the executor that ran the loop is still there: ${ready} / ${after}`)
})
