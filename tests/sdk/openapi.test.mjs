// api/openapi.json against the running daemon: the document served at /openapi.json is the
// one in the repo, and every documented control-plane operation answers with a status the
// document lists for it (with a real sandbox for {sandboxID}, a made-up one for the 404s),
// and with a body of the documented shape for the main success responses.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'

const base = process.env.E2B_API_URL
const key = process.env.E2B_API_KEY
const doc = JSON.parse(readFileSync(new URL('../../api/openapi.json', import.meta.url), 'utf8'))
const call = (method, path, body, headers = {}) =>
  fetch(new URL(path, base), {
    method,
    headers: { 'X-API-KEY': key, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  })

// A body that satisfies each operation's documented request schema.
const bodies = {
  'POST /sandboxes': { templateID: 'base', timeout: 60 },
  'POST /v2/sandboxes': { templateID: 'base', timeout: 60 },
  'POST /sandboxes/{sandboxID}/timeout': { timeout: 120 },
  'POST /sandboxes/{sandboxID}/refreshes': { duration: 30 },
  'POST /sandboxes/{sandboxID}/connect': { timeout: 120 },
  'POST /v2/sandboxes/{sandboxID}/connect': { timeout: 120 },
  'POST /mcp': { jsonrpc: '2.0', id: 1, method: 'ping' },
  'POST /mcp/code': { jsonrpc: '2.0', id: 1, method: 'ping' },
}
const mcpHeaders = { Accept: 'application/json, text/event-stream', Authorization: `Bearer ${key}` }

const created = []
let live
before(async () => {
  live = await (await call('POST', '/v2/sandboxes', { templateID: 'base', timeout: 120 })).json()
  created.push(live.sandboxID)
})
after(async () => {
  for (const id of created) await call('DELETE', `/sandboxes/${id}`)
})

test('GET /openapi.json serves the repo document, OpenAPI 3.1', async () => {
  const r = await fetch(new URL('/openapi.json', base))
  assert.equal(r.status, 200)
  assert.deepEqual(await r.json(), doc)
  assert.equal(doc.openapi, '3.1.0')
})

// Every $ref in the document points at something that exists.
test('the document is self-consistent', () => {
  const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? []
  for (const r of refs) {
    const ptr = r.slice(8, -1).replace(/^#\//, '').split('/')
    let node = doc
    for (const p of ptr) node = node?.[p]
    assert.ok(node, `dangling ${r}`)
  }
})

for (const [path, item] of Object.entries(doc.paths)) {
  for (const [method, op] of Object.entries(item)) {
    if (op['x-brig-plane'] === 'data') continue  // data-plane routes are tested with a sandbox's token elsewhere
    const key2 = `${method.toUpperCase()} ${path}`
    test(`${key2} answers as documented`, async () => {
      let p = path
      if (path.includes('{sandboxID}')) {
        let id = live.sandboxID
        if (method === 'delete') {  // a sandbox of its own to kill
          id = (await (await call('POST', '/v2/sandboxes', { templateID: 'base', timeout: 60 })).json()).sandboxID
          created.push(id)
        }
        p = path.replace('{sandboxID}', id)
      }
      const headers = path.startsWith('/mcp') ? mcpHeaders : {}
      const res = await call(method.toUpperCase(), p, bodies[key2], headers)
      const documented = Object.keys(op.responses)
      if (!documented.includes(String(res.status)))
        assert.fail(`${key2}: ${res.status} not in ${documented} (${await res.text()})`)
      const schema = op.responses[res.status]?.content?.['application/json']?.schema
      if (schema && res.status < 300) {
        const body = await res.json()
        const resolved = schema.$ref ? doc.components.schemas[schema.$ref.split('/').pop()] : schema
        if (resolved.type === 'array') assert.ok(Array.isArray(body), key2)
        if (resolved.type === 'object') {
          assert.equal(typeof body, 'object', key2)
          for (const r of resolved.required ?? []) assert.ok(r in body, `${key2}: missing ${r}`)
        }
      }
      // A sandbox id that does not exist is a documented 404.
      if (path.includes('{sandboxID}') && op.responses['404']) {
        const r404 = await call(method.toUpperCase(), path.replace('{sandboxID}', 'a'.repeat(20)), bodies[key2])
        assert.equal(r404.status, 404, `${key2} with an unknown id`)
      }
      // Without a key, operations that need one are a documented 401.
      if (!(op.security && op.security.length === 0) && op.responses['401']) {
        const r401 = await fetch(new URL(p, base), { method: method.toUpperCase(), headers: path.startsWith('/mcp') ? { Accept: mcpHeaders.Accept, 'Content-Type': 'application/json' } : {}, body: bodies[key2] ? JSON.stringify(bodies[key2]) : undefined })
        assert.equal(r401.status, 401, `${key2} without a key`)
      }
    })
  }
}

test('an undocumented route is not served', async () => {
  assert.equal((await call('GET', '/v2/nothing-here')).status, 404)
  assert.equal((await call('PUT', '/v2/sandboxes')).status, 404)
})
