// brig serve at the wire level: Connect framing with both codecs, keepalives, deadlines,
// and a structured error for bad input on every kind of route. Uses raw fetch.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { gzipSync } from 'node:zlib'
import http from 'node:http'

const api = process.env.E2B_API_URL
const key = process.env.E2B_API_KEY
let sbx // {sandboxID, envdAccessToken}

async function control(method, path, body, headers = {}) {
  return fetch(api + path, {
    method,
    headers: { 'X-API-KEY': key, 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  })
}
function envdHeaders(extra = {}) {
  return { 'E2b-Sandbox-Id': sbx.sandboxID, 'E2b-Sandbox-Port': '49983', 'X-Access-Token': sbx.envdAccessToken, ...extra }
}
function envelope(flags, payload) {
  const out = Buffer.alloc(5 + payload.length)
  out[0] = flags
  out.writeUInt32BE(payload.length, 1)
  Buffer.from(payload).copy(out, 5)
  return out
}
function frames(buf) {
  const out = []
  for (let i = 0; i + 5 <= buf.length; ) {
    const n = buf.readUInt32BE(i + 1)
    out.push({ flags: buf[i], payload: buf.subarray(i + 5, i + 5 + n) })
    i += 5 + n
  }
  return out
}
// Protobuf wire format, just enough for the tests: a length-delimited field.
function pbString(field, s) {
  const b = Buffer.from(s)
  return Buffer.concat([Buffer.from([(field << 3) | 2, b.length]), b])
}
async function stream(path, msg, { codec = 'json', headers = {} } = {}) {
  const payload = codec === 'json' ? Buffer.from(JSON.stringify(msg)) : msg
  const res = await fetch(api + path, {
    method: 'POST',
    headers: envdHeaders({ 'Content-Type': `application/connect+${codec}`, 'Connect-Protocol-Version': '1', ...headers }),
    body: envelope(0, payload),
  })
  return { res, frames: frames(Buffer.from(await res.arrayBuffer())) }
}

before(async () => {
  const res = await control('POST', '/v2/sandboxes', { templateID: 'base', timeout: 120 })
  assert.equal(res.status, 201)
  sbx = await res.json()
})
after(async () => {
  if (sbx) await control('DELETE', `/sandboxes/${sbx.sandboxID}`)
})

test('unary Connect with the JSON codec, and its errors', async () => {
  const post = (path, body, ct = 'application/json') =>
    fetch(api + path, { method: 'POST', headers: envdHeaders({ 'Content-Type': ct, 'Connect-Protocol-Version': '1' }), body })
  let res = await post('/filesystem.Filesystem/Stat', JSON.stringify({ path: '/home/user' }))
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type'), /^application\/json/)
  const body = await res.json()
  assert.equal(body.entry.type, 'FILE_TYPE_DIRECTORY')
  assert.equal(body.entry.owner, 'user')
  res = await post('/filesystem.Filesystem/Stat', JSON.stringify({ path: '/missing' }))
  assert.equal(res.status, 404)
  assert.deepEqual(Object.keys(await res.json()).sort(), ['code', 'message'])
  res = await post('/filesystem.Filesystem/Stat', '{not json')
  assert.equal(res.status, 400)
  assert.equal((await res.json()).code, 'invalid_argument')
  res = await post('/filesystem.Filesystem/Stat', JSON.stringify({ path: 42 }))
  assert.equal((await res.json()).code, 'invalid_argument')
  res = await post('/filesystem.Filesystem/Frobnicate', '{}')
  assert.equal(res.status, 404)
  assert.equal((await res.json()).code, 'unimplemented')
  res = await post('/process.Process/List', '{}')
  assert.equal((await res.text()).startsWith('{'), true)
})

test('unary Connect with the binary protobuf codec', async () => {
  const res = await fetch(api + '/filesystem.Filesystem/Stat', {
    method: 'POST',
    headers: envdHeaders({ 'Content-Type': 'application/proto', 'Connect-Protocol-Version': '1' }),
    body: pbString(1, '/home/user'),
  })
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('content-type'), 'application/proto')
  const bytes = Buffer.from(await res.arrayBuffer())
  assert.equal(bytes[0], (1 << 3) | 2) // field 1 (entry), length-delimited
  assert.ok(bytes.includes(Buffer.from('/home/user')))
})

test('server streaming: start first, keepalives on silence, end, EndStream', async () => {
  const { res, frames: fs } = await stream(
    '/process.Process/Start',
    { process: { cmd: '/bin/sh', args: ['-c', 'sleep 2.5; echo late'] } },
    { headers: { 'Keepalive-Ping-Interval': '1' } },
  )
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('content-type'), 'application/connect+json')
  const msgs = fs.map((f) => ({ flags: f.flags, json: JSON.parse(f.payload.toString() || '{}') }))
  assert.ok(msgs[0].json.event.start.pid > 0, 'the first frame is start')
  assert.ok(msgs.filter((m) => m.json.event && 'keepalive' in m.json.event).length >= 1, 'a keepalive during the silence')
  const data = msgs.filter((m) => m.json.event?.data).map((m) => Buffer.from(m.json.event.data.stdout, 'base64').toString())
  assert.equal(data.join(''), 'late\n')
  const end = msgs.find((m) => m.json.event?.end)
  assert.equal(end.json.event.end.exited, true)
  assert.equal(msgs.at(-1).flags, 2)
  assert.deepEqual(msgs.at(-1).json, {})
})

test('server streaming with the binary codec', async () => {
  // StartRequest{process: ProcessConfig{cmd: "/bin/echo", args: ["bin"]}}
  const config = Buffer.concat([pbString(1, '/bin/echo'), pbString(2, 'bin')])
  const req = Buffer.concat([Buffer.from([(1 << 3) | 2, config.length]), config])
  const { res, frames: fs } = await stream('/process.Process/Start', req, { codec: 'proto' })
  assert.equal(res.headers.get('content-type'), 'application/connect+proto')
  assert.ok(fs.length >= 3)
  assert.ok(fs.some((f) => f.flags === 0 && f.payload.includes(Buffer.from('bin\n'))))
  assert.equal(fs.at(-1).flags, 2)
  assert.deepEqual(JSON.parse(fs.at(-1).payload.toString()), {})
})

test('stream errors arrive in the EndStream frame; Connect-Timeout-Ms kills the process', async () => {
  let r = await stream('/process.Process/Connect', { process: { pid: 999999 } })
  assert.equal(r.res.status, 200)
  assert.equal(r.frames.length, 1)
  assert.equal(r.frames[0].flags, 2)
  assert.equal(JSON.parse(r.frames[0].payload.toString()).error.code, 'not_found')
  const started = Date.now()
  r = await stream('/process.Process/Start', { process: { cmd: 'sleep', args: ['30'] } }, { headers: { 'Connect-Timeout-Ms': '700' } })
  assert.ok(Date.now() - started < 10_000)
  assert.equal(JSON.parse(r.frames.at(-1).payload.toString()).error.code, 'deadline_exceeded')
})

test('control plane: structured errors for bad input', async () => {
  let res = await fetch(api + '/v2/sandboxes', { method: 'POST', body: '{}' })
  assert.equal(res.status, 401)
  assert.equal((await res.json()).code, 401)
  res = await control('POST', '/v2/sandboxes', '{"templateID":')
  assert.equal(res.status, 400)
  assert.equal((await res.json()).code, 400)
  res = await control('POST', '/v2/sandboxes', { templateID: 'base', timeout: 'soon' })
  assert.equal(res.status, 400)
  res = await control('POST', '/v2/sandboxes', { templateID: 'no-such-template' })
  assert.equal(res.status, 404)
  assert.equal((await res.json()).code, 404)
  res = await control('POST', '/v2/sandboxes', 'x'.repeat(2 << 20))
  assert.equal(res.status, 413)
  res = await control('GET', '/sandboxes/zzzzzzzzzzzzzzzzzzzz')
  assert.equal((await res.json()).code, 404)
  res = await control('POST', `/sandboxes/${sbx.sandboxID}/timeout`, { timeout: -5 })
  assert.equal(res.status, 400)
  // Lifecycle: a pause on timeout and autoResume are refused (501), not ignored; bad ones are 400.
  res = await control('POST', '/sandboxes', { templateID: 'base', autoPause: true })
  assert.equal(res.status, 501)
  assert.match((await res.json()).message, /autoPause.*not built/)
  res = await control('POST', '/sandboxes', { templateID: 'base', autoResume: { enabled: true } })
  assert.equal(res.status, 501)
  res = await control('POST', '/sandboxes', { templateID: 'base', autoPauseMemory: false })
  assert.equal(res.status, 400)
  assert.match((await res.json()).message, /autoPauseMemory=false only applies when autoPause is true/)
  res = await control('POST', '/sandboxes', { templateID: 'base', autoPause: 'yes' })
  assert.equal(res.status, 400)
  // Pause: a bad body is 400; resuming a running sandbox is 409, also from its disk (memory:
  // false). (The sandbox stays running for the tests that follow.)
  res = await control('POST', `/sandboxes/${sbx.sandboxID}/pause`, { memory: 'yes' })
  assert.equal(res.status, 400)
  res = await control('POST', `/sandboxes/${sbx.sandboxID}/resume`, { timeout: 'soon' })
  assert.equal(res.status, 400)
  for (const body of [{}, { memory: false }]) {
    res = await control('POST', `/sandboxes/${sbx.sandboxID}/resume`, body)
    assert.equal(res.status, 409)
    assert.match((await res.json()).message, /already running/)
  }
  res = await control('POST', '/sandboxes/zzzzzzzzzzzzzzzzzzzz/pause', {})
  assert.equal(res.status, 404)
  res = await control('GET', '/v2/sandboxes?startedAfter=2999-01-01T00%3A00%3A00.000Z')
  assert.deepEqual(await res.json(), [])
  res = await control('GET', '/v2/sandboxes?startedAfter=1970-01-01T00%3A00%3A00.000Z&state=running,paused')
  assert.ok((await res.json()).some((x) => x.sandboxID === sbx.sandboxID))
  res = await control('GET', '/v2/sandboxes?startedAfter=yesterday')
  assert.equal(res.status, 400)
  res = await control('GET', '/v2/sandboxes?limit=abc')
  assert.equal(res.status, 400)
  res = await control('GET', '/no/such/route')
  assert.equal(res.status, 404)
})

test('data plane: routing, tokens, Host and Origin', async () => {
  let res = await fetch(api + '/health', { headers: { 'E2b-Sandbox-Id': 'zzzzzzzzzzzzzzzzzzzz', 'E2b-Sandbox-Port': '49983' } })
  assert.equal(res.status, 502)
  res = await fetch(api + '/health', { headers: envdHeaders() })
  assert.equal(res.status, 204)
  res = await fetch(api + '/process.Process/List', {
    method: 'POST',
    headers: envdHeaders({ 'X-Access-Token': 'wrong', 'Content-Type': 'application/json' }),
    body: '{}',
  })
  assert.equal(res.status, 401)
  // fetch cannot set Host; node:http can (DNS rebinding: a foreign name on a loopback bind).
  const status = await new Promise((resolve, reject) => {
    const u = new URL(api)
    const req = http.request({ host: u.hostname, port: u.port, path: '/health', headers: { Host: 'evil.example' } }, (r) => {
      r.resume()
      resolve(r.statusCode)
    })
    req.on('error', reject)
    req.end()
  })
  assert.equal(status, 403)
  res = await control('GET', '/v2/sandboxes', undefined, { Origin: 'http://evil.example' })
  assert.equal(res.status, 403)
  res = await control('GET', '/v2/sandboxes', undefined, { Origin: 'http://localhost.evil.example:3000' })
  assert.equal(res.status, 403)
  res = await control('GET', '/v2/sandboxes', undefined, { Origin: 'http://localhost:3000' })
  assert.equal(res.status, 200)
})

test('/files: errors, gzip upload, Content-Length', async () => {
  const files = (query, init = {}) => fetch(api + '/files' + query, { ...init, headers: envdHeaders(init.headers) })
  let res = await files('')
  assert.equal(res.status, 400)
  res = await files('?path=/home/user/none.txt')
  assert.equal(res.status, 404)
  assert.equal((await res.json()).code, 404)
  res = await files('?path=/home/user/z.txt', {
    method: 'POST',
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Encoding': 'gzip' },
    body: gzipSync(Buffer.from('compressed content')),
  })
  assert.equal(res.status, 200)
  assert.equal((await res.json())[0].path, '/home/user/z.txt')
  res = await files('?path=/home/user/z.txt')
  assert.equal(res.headers.get('content-length'), '18')
  assert.equal(await res.text(), 'compressed content')
  res = await files('?path=/home/user/y.txt', { method: 'POST', headers: { 'Content-Type': 'application/octet-stream', 'Content-Encoding': 'gzip' }, body: 'not gzip' })
  assert.equal(res.status, 400)
  const truncated = gzipSync(Buffer.from('x'.repeat(100000)))
  res = await files('?path=/home/user/y.txt', { method: 'POST', headers: { 'Content-Type': 'application/octet-stream', 'Content-Encoding': 'gzip' }, body: truncated.subarray(0, truncated.length - 8) })
  assert.equal(res.status, 400)
  assert.match((await res.json()).message, /gzip/)
})

// Uploads stream through the daemon: multipart bodies are read part by part, whatever the
// sizes of the reads that bring them (a part's body may hold the boundary's first bytes).
test('/files: multipart uploads of several files, streamed', async () => {
  const boundary = 'brigboundary123'
  const big = Buffer.alloc(3 << 20, 'ab\r\n--brigboundary12')  // the delimiter's prefix, again and again
  const body = Buffer.concat([
    Buffer.from(`preamble\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="/home/user/m1.txt"\r\n\r\n`),
    big,
    Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nignored\r\n--${boundary}\r\n`),
    Buffer.from(`Content-Disposition: form-data; name="file"; filename="/home/user/m2.txt"\r\n\r\nsecond\r\n--${boundary}--\r\n`),
  ])
  const files = (query, init = {}) => fetch(api + '/files' + query, { ...init, headers: envdHeaders(init.headers) })
  let res = await files('', { method: 'POST', headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` }, body })
  assert.equal(res.status, 200, await res.clone().text())
  assert.deepEqual((await res.json()).map((f) => f.path), ['/home/user/m1.txt', '/home/user/m2.txt'])
  const m1 = Buffer.from(await (await files('?path=/home/user/m1.txt')).arrayBuffer())
  assert.ok(m1.equals(big), `m1 is ${m1.length} bytes`)
  assert.equal(await (await files('?path=/home/user/m2.txt')).text(), 'second')
  // An unterminated part is a client error, not a hang or a 500.
  res = await files('', { method: 'POST', headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` }, body: body.subarray(0, 1000) })
  assert.equal(res.status, 400)
})

test('/metrics and /templates', async () => {
  const m = await (await fetch(api + '/metrics')).text()
  assert.match(m, /brig_sandbox_creates_total \d+/)
  assert.match(m, /brig_sandbox_create_duration_ms_bucket/)
  const t = await (await control('GET', '/templates')).json()
  assert.ok(t.some((x) => x.aliases.includes('base')))
})
