// The official e2b SDK (pinned in package.json), unmodified, against a real `brig serve`.
// Run by tests/sdk/run.sh, which starts the daemon and sets E2B_API_KEY / E2B_API_URL /
// E2B_SANDBOX_URL. SDK=e2b (2.51.0, the v2 endpoints) or SDK=e2b-2.50 (2.50.0, the v1 ones).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const sdkName = process.env.SDK || 'e2b'
const { Sandbox, CommandExitError, NotFoundError } = await import(sdkName)
const created = []
async function sandbox(opts = {}) {
  const s = await Sandbox.create({ timeoutMs: 120_000, ...opts })
  created.push(s)
  return s
}
after(async () => {
  for (const s of created) await s.kill().catch(() => {})
})

test(`${sdkName}: create with metadata and env vars; getInfo; isRunning`, async () => {
  const s = await sandbox({ metadata: { suite: 'sdk', run: sdkName }, envs: { GREETING: 'hello' } })
  assert.match(s.sandboxId, /^[a-z0-9]{20}$/)
  const info = await s.getInfo()
  assert.equal(info.sandboxId, s.sandboxId)
  assert.equal(info.name, 'base')
  assert.deepEqual(info.metadata, { suite: 'sdk', run: sdkName })
  assert.equal(info.state, 'running')
  assert.ok(info.endAt > info.startedAt)
  assert.equal((await s.commands.run('echo $GREETING')).stdout, 'hello\n')
  assert.equal(await s.isRunning(), true)
})

test(`${sdkName}: list with filters and paging`, async () => {
  const tag = Math.random().toString(36).slice(2)
  for (let i = 0; i < 3; i++) await sandbox({ metadata: { page: tag, i: String(i) } })
  const paginator = Sandbox.list({ query: { metadata: { page: tag } }, limit: 2 })
  const first = await paginator.nextItems()
  assert.equal(first.length, 2)
  assert.equal(paginator.hasNext, true)
  const second = await paginator.nextItems()
  assert.equal(second.length, 1)
  assert.equal(paginator.hasNext, false)
  const ids = new Set([...first, ...second].map((x) => x.sandboxId))
  assert.equal(ids.size, 3)
  const one = await Sandbox.list({ query: { metadata: { page: tag, i: '1' } } }).nextItems()
  assert.equal(one.length, 1)
  const none = await Sandbox.list({ query: { metadata: { page: 'no-such-' + tag } } }).nextItems()
  assert.equal(none.length, 0)
})

test(`${sdkName}: setTimeout, expiry, connect`, async () => {
  const s = await sandbox()
  // connect() also sets the timeout (300 s unless given), so it comes first here.
  const again = await Sandbox.connect(s.sandboxId)
  assert.equal((await again.commands.run('echo connected')).stdout, 'connected\n')
  assert.ok((await s.getInfo()).endAt.getTime() - Date.now() > 200_000)
  await s.setTimeout(3_000)
  const info = await s.getInfo()
  assert.ok(info.endAt.getTime() - Date.now() < 5_000)
  await new Promise((r) => setTimeout(r, 5_000))
  assert.equal(await s.isRunning(), false)
  await assert.rejects(Sandbox.connect(s.sandboxId))
})

test(`${sdkName}: kill, and kill of an unknown id`, async () => {
  const s = await sandbox()
  assert.equal(await s.kill(), true)
  assert.equal(await s.isRunning(), false)
  assert.equal(await Sandbox.kill('zzzzzzzzzzzzzzzzzzzz'), false)
})

test(`${sdkName}: commands.run output, exit codes, cwd, env, user`, async () => {
  const s = await sandbox()
  const r = await s.commands.run('echo out; echo err >&2')
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'out\n')
  assert.equal(r.stderr, 'err\n')
  await assert.rejects(s.commands.run('echo before; exit 7'), (e) => {
    assert.ok(e instanceof CommandExitError)
    assert.equal(e.exitCode, 7)
    assert.equal(e.stdout, 'before\n')
    return true
  })
  await s.files.makeDir('/home/user/work')
  assert.equal((await s.commands.run('pwd', { cwd: '/home/user/work' })).stdout, '/home/user/work\n')
  assert.equal((await s.commands.run('echo $A-$B', { envs: { A: '1', B: '2' } })).stdout, '1-2\n')
  assert.equal((await s.commands.run('id -u')).stdout, '1000\n')
  assert.equal((await s.commands.run('id -u', { user: 'root' })).stdout, '0\n')
  // Fast commands: output written before the stream attaches is never lost.
  for (let i = 0; i < 20; i++) assert.equal((await s.commands.run(`echo ${i}`)).stdout, `${i}\n`)
  const chunks = []
  await s.commands.run('for i in 1 2 3; do echo $i; sleep 0.2; done', { onStdout: (d) => chunks.push(d) })
  assert.ok(chunks.length >= 2, 'output arrives as it is produced')
})

test(`${sdkName}: background commands, wait, kill, list`, async () => {
  const s = await sandbox()
  const bg = await s.commands.run('sleep 0.5; echo done', { background: true })
  const listed = await s.commands.list()
  assert.ok(listed.some((p) => p.pid === bg.pid && p.args.join(' ').includes('sleep 0.5')))
  const res = await bg.wait()
  assert.equal(res.stdout, 'done\n')
  const long = await s.commands.run('sleep 100', { background: true })
  assert.equal(await long.kill(), true)
  await assert.rejects(long.wait())
  assert.equal(await s.commands.kill(999999), false)
})

test(`${sdkName}: stdin, sendStdin, closeStdin`, async () => {
  const s = await sandbox()
  const h = await s.commands.run('cat', { background: true, stdin: true })
  await s.commands.sendStdin(h.pid, 'line one\n')
  await s.commands.sendStdin(h.pid, 'line two\n')
  await s.commands.closeStdin(h.pid)
  const r = await h.wait()
  assert.equal(r.stdout, 'line one\nline two\n')
})

test(`${sdkName}: 10 MB of output`, async () => {
  const s = await sandbox()
  const r = await s.commands.run('head -c 10485760 /dev/zero | tr "\\0" a')
  assert.equal(r.stdout.length, 10 * 1024 * 1024)
})

test(`${sdkName}: a silent command survives until it ends`, async () => {
  const s = await sandbox()
  const r = await s.commands.run('sleep 8; echo woke', { timeoutMs: 30_000 })
  assert.equal(r.stdout, 'woke\n')
})

test(`${sdkName}: pty create, sendInput, resize`, async () => {
  const s = await sandbox()
  let out = ''
  const term = await s.pty.create({ cols: 80, rows: 24, onData: (d) => (out += new TextDecoder().decode(d)) })
  await s.pty.resize(term.pid, { cols: 132, rows: 40 })
  await s.pty.sendInput(term.pid, new TextEncoder().encode('stty size; echo marker-$((6*7)); exit\n'))
  await term.wait().catch(() => {})
  assert.match(out, /40 132/)
  assert.match(out, /marker-42/)
})

test(`${sdkName}: files write/read text and binary, multi-file write, list depth, exists, getInfo`, async () => {
  const s = await sandbox()
  await s.files.write('/home/user/t/hello.txt', 'hello world')
  assert.equal(await s.files.read('/home/user/t/hello.txt'), 'hello world')
  const bytes = new Uint8Array(256).map((_, i) => i)
  await s.files.write('/home/user/t/bin.dat', bytes.buffer)
  const back = await s.files.read('/home/user/t/bin.dat', { format: 'bytes' })
  assert.deepEqual(Array.from(back), Array.from(bytes))
  const written = await s.files.write([
    { path: '/home/user/multi/a.txt', data: 'A' },
    { path: '/home/user/multi/deep/b.txt', data: 'B' },
  ])
  assert.deepEqual(written.map((w) => w.path).sort(), ['/home/user/multi/a.txt', '/home/user/multi/deep/b.txt'])
  assert.equal(await s.files.read('/home/user/multi/deep/b.txt'), 'B')
  const shallow = await s.files.list('/home/user/multi')
  assert.deepEqual(shallow.map((e) => e.name).sort(), ['a.txt', 'deep'])
  const deep = await s.files.list('/home/user/multi', { depth: 2 })
  assert.ok(deep.some((e) => e.path === '/home/user/multi/deep/b.txt'))
  assert.equal(await s.files.exists('/home/user/t/hello.txt'), true)
  assert.equal(await s.files.exists('/home/user/t/missing'), false)
  const info = await s.files.getInfo('/home/user/t/hello.txt')
  assert.equal(info.type, 'file')
  assert.equal(info.size, 11)
  assert.equal(info.owner, 'user')
  await assert.rejects(s.files.read('/home/user/nope.txt'), (e) => e instanceof NotFoundError || e.name.includes('NotFound'))
})

test(`${sdkName}: upload metadata is stored and returned`, async () => {
  const s = await sandbox()
  const info = await s.files.write('/home/user/m.txt', 'x', { metadata: { Origin: 'agent', run: '7' } })
  const entry = await s.files.getInfo('/home/user/m.txt')
  assert.deepEqual(entry.metadata, { origin: 'agent', run: '7' })
  await s.files.write('/home/user/m.txt', 'y', { metadata: { only: 'this' } })
  assert.deepEqual((await s.files.getInfo('/home/user/m.txt')).metadata, { only: 'this' })
  assert.ok(info)
})

test(`${sdkName}: makeDir, rename, remove`, async () => {
  const s = await sandbox()
  assert.equal(await s.files.makeDir('/home/user/d1/d2'), true)
  assert.equal(await s.files.makeDir('/home/user/d1/d2'), false)
  await s.files.write('/home/user/d1/f.txt', 'x')
  const moved = await s.files.rename('/home/user/d1/f.txt', '/home/user/d3/g.txt')
  assert.equal(moved.path, '/home/user/d3/g.txt')
  assert.equal(await s.files.exists('/home/user/d1/f.txt'), false)
  await s.files.remove('/home/user/d1')
  assert.equal(await s.files.exists('/home/user/d1'), false)
  await s.files.remove('/home/user/never-existed')
})

test(`${sdkName}: watchDir`, async () => {
  const s = await sandbox()
  await s.files.makeDir('/home/user/w')
  const events = []
  const handle = await s.files.watchDir('/home/user/w', (e) => events.push(e), { recursive: true })
  await s.commands.run('echo hi > /home/user/w/new.txt; mkdir /home/user/w/sub; echo x > /home/user/w/sub/inner')
  for (let i = 0; i < 40 && !events.some((e) => e.name === 'sub/inner'); i++) await new Promise((r) => setTimeout(r, 50))
  await handle.stop()
  assert.ok(events.some((e) => e.name === 'new.txt' && e.type === 'create'), JSON.stringify(events))
  assert.ok(events.some((e) => e.name === 'sub/inner'), JSON.stringify(events))
})

test(`${sdkName}: watchDir with includeEntry describes each entry, and the watch ends with its sandbox`, async () => {
  const s = await sandbox()
  await s.files.makeDir('/home/user/we')
  const events = []
  let exited = false
  const handle = await s.files.watchDir('/home/user/we', (e) => events.push(e), {
    includeEntry: true,
    onExit: () => (exited = true),
  })
  await s.commands.run('printf 12345 > /home/user/we/five.txt')
  const described = () => events.find((e) => e.name === 'five.txt' && e.type === 'write' && e.entry)
  for (let i = 0; i < 40 && !described(); i++) await new Promise((r) => setTimeout(r, 50))
  const w = described()
  assert.ok(w, JSON.stringify(events))
  await s.commands.run('rm /home/user/we/five.txt')
  for (let i = 0; i < 40 && !events.some((e) => e.type === 'remove'); i++) await new Promise((r) => setTimeout(r, 50))
  assert.equal(w.entry.path, '/home/user/we/five.txt')
  assert.equal(w.entry.type, 'file')
  // A removed entry has nothing to describe.
  const removed = events.find((e) => e.type === 'remove')
  assert.ok(removed && removed.entry === undefined, JSON.stringify(events))
  // The sandbox ends: the stream ends with it (pushed, not found by a timeout).
  await s.kill()
  for (let i = 0; i < 100 && !exited; i++) await new Promise((r) => setTimeout(r, 50))
  assert.ok(exited, 'the watch ended when its sandbox did')
  await handle.stop()
})

test(`${sdkName}: uploadUrl and downloadUrl (signed)`, async () => {
  const s = await sandbox({ secure: true })
  const up = await s.uploadUrl('/home/user/up.txt')
  const headers = { 'E2b-Sandbox-Id': s.sandboxId, 'E2b-Sandbox-Port': '49983' }
  const form = new FormData()
  form.append('file', new Blob(['uploaded via url']), 'up.txt')
  const res = await fetch(up, { method: 'POST', body: form, headers })
  assert.equal(res.status, 200, await res.clone().text())
  const down = await s.downloadUrl('/home/user/up.txt')
  const got = await fetch(down, { headers })
  assert.equal(await got.text(), 'uploaded via url')
  const forged = new URL(down)
  forged.searchParams.set('signature', 'v1_' + createHash('sha256').update('nope').digest('base64').replace(/=+$/, ''))
  assert.equal((await fetch(forged, { headers })).status, 401)
})

// What E2B's docs show, as written: the default template is a Python image with Node.js.
test(`${sdkName}: the default template has python, pip, node, npm, git and curl`, async () => {
  const s = await sandbox()
  const r = await s.commands.run(
    'python --version; pip --version | cut -d" " -f1; node --version | cut -c1; npm --version | cut -c1-2 | tr -d .; ' +
      'git --version | cut -d" " -f1-2; curl --version | cut -d" " -f1 | head -1; id -un')
  assert.match(r.stdout, /^Python 3\.\d+\.\d+\npip\nv\n\d+\ngit version\ncurl\nuser\n$/)
  // pip is not "externally managed": without a network it fails on the network, in pip's words.
  const pip = await s.commands.run('pip install --retries 0 cowsay').catch((e) => e)
  assert.ok(pip instanceof CommandExitError, 'pip install cannot succeed without a network')
  assert.doesNotMatch(pip.stderr + pip.stdout, /externally-managed/)
  assert.match(pip.stderr + pip.stdout, /No matching distribution found for cowsay|Failed to establish a new connection/)
})

test(`${sdkName}: the docs' pandas example runs as written on python3`, async () => {
  const s = await sandbox({ template: 'python3' })
  const r = await s.commands.run('pip install pandas && python -c "import pandas; print(pandas.__version__)"')
  assert.equal(r.exitCode, 0)
  assert.match(r.stdout, /\n\d+\.\d+\.\d+\n$/)
})

test(`${sdkName}: getHost names this daemon's domain, and that Host reaches the sandbox`, async () => {
  const s = await sandbox()
  const api = new URL(process.env.E2B_API_URL)
  // No E2B_DOMAIN is set here: the domain comes from the API's answer.
  assert.equal(s.getHost(49983), `49983-${s.sandboxId}.localhost:${api.port}`)
  // Node cannot resolve *.localhost (curl and browsers can): connect to loopback, send that Host.
  const { request } = await import('node:http')
  const get = (host) => new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: api.port, path: '/health', headers: { Host: host } }, (res) => {
      res.resume()
      resolve(res.statusCode)
    })
    req.on('error', reject)
    req.end()
  })
  assert.equal(await get(s.getHost(49983)), 204)  // envd's health answer, from inside the sandbox
  assert.equal(await get(s.getHost(49999)), 204)
  assert.equal(await get(`49983-zzzzzzzzzzzzzzzzzzzz.localhost:${api.port}`), 502)  // no such sandbox
})

// ---- ports: the data plane to any port of a sandbox -------------------------------------

// *.localhost is loopback (RFC 6761): curl and browsers know it, Node's resolver does not, so
// the test's client is told (the connection still goes to the daemon, the Host is getHost's).
const { Agent, fetch: ufetch, WebSocket: UWebSocket } = await import('undici')
const loopback = new Agent({
  connect: {
    lookup: (host, opts, cb) => (opts && opts.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)),
  },
})
const at = (s, port, path = '/', init = {}) => ufetch(`http://${s.getHost(port)}${path}`, { dispatcher: loopback, ...init })
// By E2B's routing headers, on the daemon's own address (as E2B_SANDBOX_URL is used).
const byHeaders = (id, port, path = '/', init = {}) =>
  ufetch(process.env.E2B_SANDBOX_URL + path, {
    dispatcher: loopback,
    ...init,
    headers: { 'E2b-Sandbox-Id': id, 'E2b-Sandbox-Port': String(port), ...(init.headers || {}) },
  })

// A server for the sandbox, Python's standard library only: the Host it was sent, a body's
// sha256, a response cut short, and a WebSocket echo.
const SERVER_PY = String.raw`
import base64, hashlib, http.server, socket, struct, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a): pass
    def reply(self, body, status=200):
        self.send_response(status)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == '/host': return self.reply(self.headers.get('Host', '').encode())
        if self.path == '/cut':
            self.send_response(200)
            self.send_header('Content-Length', '1000000')
            self.end_headers()
            self.wfile.write(b'x' * 1000)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if self.path == '/ws':
            key = self.headers['Sec-WebSocket-Key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
            self.send_response(101)
            self.send_header('Upgrade', 'websocket')
            self.send_header('Connection', 'Upgrade')
            self.send_header('Sec-WebSocket-Accept', base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
            self.end_headers()
            self.wfile.flush()
            while True:
                head = self.rfile.read(2)
                if len(head) < 2: return
                op, n = head[0] & 15, head[1] & 127
                if n == 126: n = struct.unpack('>H', self.rfile.read(2))[0]
                elif n == 127: n = struct.unpack('>Q', self.rfile.read(8))[0]
                mask = self.rfile.read(4) if head[1] & 128 else bytes(4)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
                if op == 8:
                    self.wfile.write(bytes([0x88, len(data)]) + data)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if op == 9: op = 10
                size = bytes([len(data)]) if len(data) < 126 else (bytes([126]) + struct.pack('>H', len(data)) if len(data) < 65536 else bytes([127]) + struct.pack('>Q', len(data)))
                self.wfile.write(bytes([128 | op]) + size + data)
                self.wfile.flush()
        self.reply(b'not here', 404)
    def do_POST(self):
        h, total = hashlib.sha256(), 0
        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            while True:
                size = int(self.rfile.readline().split(b';')[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b'\r\n', b'\n', b''): pass
                    break
                chunk = self.rfile.read(size)
                self.rfile.readline()
                h.update(chunk)
                total += len(chunk)
        else:
            n = int(self.headers.get('Content-Length', 0))
            while n:
                chunk = self.rfile.read(min(n, 65536))
                h.update(chunk)
                total += len(chunk)
                n -= len(chunk)
        self.reply(f'{total} {h.hexdigest()}'.encode())
server = http.server.ThreadingHTTPServer(('0.0.0.0', int(sys.argv[1])), H)
if len(sys.argv) > 2:  # HTTPS, with the certificate and key in that file
    import ssl
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[2])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
server.serve_forever()
`

// Starts SERVER_PY (or `cmd`) in the background and waits (bounded) until `port` answers.
async function serve(s, port, cmd = `python3 /tmp/server.py ${port}`, probe = '/host') {
  if (cmd.includes('/tmp/server.py')) await s.files.write('/tmp/server.py', SERVER_PY)
  const handle = await s.commands.run(cmd, { background: true, cwd: '/home/user' })
  const headers = s.trafficAccessToken ? { 'e2b-traffic-access-token': s.trafficAccessToken } : {}
  for (let i = 0; i < 100; i++) {
    const res = await at(s, port, probe, { headers }).catch(() => null)
    if (res && res.status !== 502) {
      await res.arrayBuffer()
      return handle
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`nothing answered on port ${port} of ${s.sandboxId}`)
}

test(`${sdkName}: ports: a closed port is 502, a bad port 400, an unknown sandbox 502`, async () => {
  const s = await sandbox()
  const closed = await at(s, 3999)
  assert.equal(closed.status, 502)
  const body = await closed.json()
  assert.equal(body.sandboxId, s.sandboxId)
  assert.equal(body.port, 3999)
  assert.match(body.message, /port 3999 is not open/)
  assert.equal((await byHeaders(s.sandboxId, 3999)).status, 502)
  for (const port of ['0', '70000', 'abc', '-1', '123456']) {
    const res = await byHeaders(s.sandboxId, port)
    assert.equal(res.status, 400, `port ${port}`)
    assert.match((await res.json()).message, /Invalid sandbox port/)
  }
  const api = new URL(process.env.E2B_API_URL)
  const letters = await ufetch(`http://abc-${s.sandboxId}.localhost:${api.port}/`, { dispatcher: loopback })
  assert.equal(letters.status, 400)
  const missing = await ufetch(process.env.E2B_SANDBOX_URL + '/', { dispatcher: loopback, headers: { 'E2b-Sandbox-Port': '3000' } })
  assert.equal(missing.status, 400)
  const unknown = await ufetch(`http://3000-zzzzzzzzzzzzzzzzzzzz.localhost:${api.port}/`, { dispatcher: loopback })
  assert.equal(unknown.status, 502)
  assert.match((await unknown.json()).message, /not found/)
})

test(`${sdkName}: ports: a web server started in the sandbox is reached at getHost(port)`, async () => {
  const s = await sandbox()
  await s.files.write('/home/user/hello.txt', 'hi from the sandbox')
  const server = await serve(s, 3000, 'python3 -m http.server 3000', '/')
  const listing = await at(s, 3000)
  assert.equal(listing.status, 200)
  const html = await listing.text()
  assert.match(html, /Directory listing for \//)
  assert.match(html, /hello\.txt/)
  assert.equal(await (await at(s, 3000, '/hello.txt')).text(), 'hi from the sandbox')
  // By headers too; each such request is one exchange (the connection is not reused for the
  // next request, which may be for the API or another sandbox).
  const viaHeaders = await byHeaders(s.sandboxId, 3000, '/hello.txt')
  assert.equal(await viaHeaders.text(), 'hi from the sandbox')
  assert.equal(viaHeaders.headers.get('connection'), 'close')
  const list = await ufetch(process.env.E2B_API_URL + '/sandboxes', { dispatcher: loopback, headers: { 'X-API-KEY': process.env.E2B_API_KEY } })
  assert.equal(list.status, 200)
  assert.ok((await list.json()).some((x) => x.sandboxID === s.sandboxId))
  // The server stops: the port is closed again.
  await server.kill()
  let status = 0
  for (let i = 0; i < 50 && status !== 502; i++) {
    status = (await at(s, 3000)).status
    if (status !== 502) await new Promise((r) => setTimeout(r, 100))
  }
  assert.equal(status, 502)
})

test(`${sdkName}: ports: bodies stream both ways, and a server that hangs up mid-response ends the response`, async () => {
  const s = await sandbox()
  await serve(s, 8000)
  // 32 MiB up, in pieces (chunked), hashed by the server as it reads.
  const piece = new Uint8Array(1 << 20).map((_, i) => i % 251)
  const hash = createHash('sha256')
  for (let i = 0; i < 32; i++) hash.update(piece)
  let sent = 0
  const body = new ReadableStream({
    pull(c) {
      if (sent++ < 32) c.enqueue(piece)
      else c.close()
    },
  })
  const up = await at(s, 8000, '/sum', { method: 'POST', body, duplex: 'half' })
  assert.equal(await up.text(), `${32 << 20} ${hash.digest('hex')}`)
  // 64 MiB down through python's http.server.
  await s.commands.run('head -c 67108864 /dev/zero > /home/user/big')
  await serve(s, 3001, 'python3 -m http.server 3001', '/')
  const down = await at(s, 3001, '/big')
  let got = 0
  for await (const chunk of down.body) got += chunk.length
  assert.equal(got, 64 << 20)
  // A response cut short by the server is cut short for the client, not hung or completed.
  const cut = await at(s, 8000, '/cut')
  assert.equal(cut.status, 200)
  await assert.rejects(cut.arrayBuffer())
  assert.equal((await at(s, 8000, '/host')).status, 200)  // the server still serves
})

test(`${sdkName}: ports: a WebSocket echo through getHost(port)`, async () => {
  const s = await sandbox()
  await serve(s, 8000)
  const ws = new UWebSocket(`ws://${s.getHost(8000)}/ws`, { dispatcher: loopback })
  ws.binaryType = 'arraybuffer'
  const messages = []
  let wake = () => {}
  ws.onmessage = (e) => {
    messages.push(e.data)
    wake()
  }
  const next = () => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no WebSocket message within 10 s')), 10_000)
    const check = () => {
      if (messages.length) {
        clearTimeout(t)
        resolve(messages.shift())
      }
    }
    wake = check
    check()
  })
  await new Promise((resolve, reject) => {
    ws.onopen = resolve
    ws.onerror = reject
  })
  ws.send('hello from the test')
  assert.equal(await next(), 'hello from the test')
  const big = new Uint8Array(200_000).map((_, i) => i % 256)
  ws.send(big)
  assert.deepEqual(new Uint8Array(await next()), big)
  const closed = new Promise((resolve) => (ws.onclose = (e) => resolve(e.code)))
  ws.close(1000)
  assert.equal(await closed, 1000)
  // A WebSocket open when the sandbox is killed ends (its server and connection are gone).
  const second = new UWebSocket(`ws://${s.getHost(8000)}/ws`, { dispatcher: loopback })
  await new Promise((resolve, reject) => {
    second.onopen = resolve
    second.onerror = reject
  })
  const ended = new Promise((resolve) => (second.onclose = (e) => resolve(e.code)))
  await s.kill()
  const code = await Promise.race([ended, new Promise((r) => setTimeout(() => r('still open after 10 s'), 10_000))])
  assert.equal(code, 1006)  // closed without a close frame
})

test(`${sdkName}: ports: allowPublicTraffic false wants the traffic token on every port but envd's`, async () => {
  const s = await sandbox({ network: { allowPublicTraffic: false, maskRequestHost: 'localhost:${PORT}' } })
  assert.match(s.trafficAccessToken, /^[0-9a-f]{32}$/)
  const info = await s.getInfo()
  assert.equal(info.network.allowPublicTraffic, false)
  assert.equal(info.network.maskRequestHost, 'localhost:${PORT}')
  // envd's port does not need it: the SDK's own calls work.
  assert.equal((await s.commands.run('echo envd')).stdout, 'envd\n')
  await serve(s, 8000)
  const missing = await at(s, 8000, '/host')
  assert.equal(missing.status, 403)
  assert.match((await missing.json()).message, /Token header 'e2b-traffic-access-token' is missing/)
  const wrong = await at(s, 8000, '/host', { headers: { 'e2b-traffic-access-token': 'f'.repeat(32) } })
  assert.equal(wrong.status, 403)
  assert.match((await wrong.json()).message, /is invalid/)
  assert.equal((await byHeaders(s.sandboxId, 8000, '/host')).status, 403)
  // With it: through, and the server sees the masked Host with the port put in.
  const ok = await at(s, 8000, '/host', { headers: { 'e2b-traffic-access-token': s.trafficAccessToken } })
  assert.equal(ok.status, 200)
  assert.equal(await ok.text(), 'localhost:8000')
  // A closed port of a private sandbox says so only to a client with the token.
  assert.equal((await at(s, 3999)).status, 403)
  // A public sandbox (the default) needs no token, and its servers see the client's Host.
  const pub = await sandbox()
  assert.equal((await pub.getInfo()).network.allowPublicTraffic, true)
  await serve(pub, 8000)
  assert.equal(await (await at(pub, 8000, '/host')).text(), pub.getHost(8000))
})

// E2B's memory pause: the sandbox's processes and files stay, frozen; it is listed as paused;
// envd does not answer it; connect resumes it, and everything is where it was.
test(`${sdkName}: pause freezes the sandbox; connect resumes it where it was`, async () => {
  const s = await sandbox()
  await s.files.write('/tmp/kept.txt', 'kept')
  await s.commands.run('i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done', { background: true })
  await new Promise((r) => setTimeout(r, 500))
  const before = Number((await s.files.read('/tmp/count')).trim())
  assert.ok(before > 0)
  assert.equal(await s.pause(), true)
  assert.equal(await s.pause(), false, 'already paused: 409, which the SDK reports as false')
  assert.equal((await s.getInfo()).state, 'paused')
  const paused = await Sandbox.list({ query: { state: ['paused'] } }).nextItems()
  assert.ok(paused.some((x) => x.sandboxId === s.sandboxId && x.state === 'paused'))
  const running = await Sandbox.list({ query: { state: ['running'] } }).nextItems()
  assert.ok(!running.some((x) => x.sandboxId === s.sandboxId))
  await assert.rejects(s.commands.run('echo no'), /paused/)
  // 3 s paused: the counter, had it run, would be 30 further on.
  await new Promise((r) => setTimeout(r, 3000))
  const back = await Sandbox.connect(s.sandboxId)
  assert.equal((await back.getInfo()).state, 'running')
  const after = Number((await back.files.read('/tmp/count')).trim())
  assert.ok(after >= before && after < before + 20, `before ${before}, after ${after}`)
  assert.equal(await back.files.read('/tmp/kept.txt'), 'kept')
  await new Promise((r) => setTimeout(r, 500))
  assert.ok(Number((await back.files.read('/tmp/count')).trim()) > after, 'the counter runs again')
  // Resuming a running sandbox through the REST call E2B has for it is a 409.
  const res = await fetch(`${process.env.E2B_API_URL}/sandboxes/${s.sandboxId}/resume`,
    { method: 'POST', headers: { 'X-API-KEY': process.env.E2B_API_KEY, 'Content-Type': 'application/json' }, body: '{}' })
  assert.equal(res.status, 409)
})

// E2B's filesystem pause (keepMemory: false): the processes stop, the disk stays; connect boots
// the sandbox again on its disk with the same id, its env and its files, none of its old
// processes. A memory pause can be rebooted the same way (onResume: 'reboot').
test(`${sdkName}: a filesystem pause keeps the disk; connect boots the sandbox again on it`, async () => {
  const s = await sandbox({ envs: { KEPT_ENV: 'yes' }, metadata: { fs: 'pause' } })
  await s.files.write('/home/user/kept.txt', 'kept on disk')
  await s.commands.run('head -c 20M /dev/urandom > /home/user/blob; sha256sum /home/user/blob > /home/user/blob.sum')
  await s.commands.run('sleep 600', { background: true })
  assert.equal(await s.pause({ keepMemory: false }), true)
  assert.equal(await s.pause({ keepMemory: false }), false, 'already paused')
  const info = await s.getInfo()
  assert.equal(info.state, 'paused')
  assert.deepEqual(info.metadata, { fs: 'pause' })
  await assert.rejects(s.commands.run('echo no'), /paused/)
  const back = await Sandbox.connect(s.sandboxId)
  assert.equal(back.sandboxId, s.sandboxId)
  assert.equal((await back.getInfo()).state, 'running')
  assert.equal(await back.files.read('/home/user/kept.txt'), 'kept on disk')
  assert.equal((await back.commands.run('sha256sum -c /home/user/blob.sum')).exitCode, 0)
  assert.equal((await back.commands.run('echo $KEPT_ENV')).stdout, 'yes\n')
  const ps = await back.commands.run('ps -eo args')
  assert.ok(!ps.stdout.includes('sleep 600'), 'a process of before the pause still runs:\n' + ps.stdout)
  // Paused with its memory, then rebooted: the files stay, the processes go.
  await back.commands.run('echo second > /home/user/second.txt; sleep 600', { background: true })
  await new Promise((r) => setTimeout(r, 300))
  assert.equal(await back.pause(), true)
  const rebooted = await Sandbox.connect(s.sandboxId, { onResume: 'reboot' })
  assert.equal(await rebooted.files.read('/home/user/second.txt'), 'second\n')
  assert.ok(!(await rebooted.commands.run('ps -eo args')).stdout.includes('sleep 600'))
})

// What a timeout does is never silently changed: a lifecycle brig has not built is refused.
test(`${sdkName}: a lifecycle with a pause on timeout is refused, not ignored`, async () => {
  await assert.rejects(Sandbox.create({ lifecycle: { onTimeout: 'pause' } }), /not built in brig yet/)
  await assert.rejects(Sandbox.create({ lifecycle: { onTimeout: 'pause', autoResume: true } }), /not built in brig yet/)
  const s = await sandbox({ lifecycle: { onTimeout: 'kill' } })
  assert.deepEqual((await s.getInfo()).lifecycle, { onTimeout: 'kill', autoResume: false })
})

// A self-signed certificate and its key in one PEM (what the sandbox's HTTPS server serves).
function selfSigned() {
  const dir = mkdtempSync(join(tmpdir(), 'brig-tls-'))
  try {
    const pem = join(dir, 'tls.pem')
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-subj', '/CN=sandbox', '-days', '1', '-keyout', pem, '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
    return readFileSync(pem, 'utf8') + readFileSync(join(dir, 'cert.pem'), 'utf8')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

test(`${sdkName}: ports: httpsPorts are reached over TLS without verifying the sandbox's certificate`, async () => {
  const s = await sandbox({ network: { httpsPorts: [8443, 8443] } })
  assert.deepEqual((await s.getInfo()).network.httpsPorts, [8443])
  await s.files.write('/tmp/tls.pem', selfSigned())
  // The same HTTPS server on a listed port and on one that is not.
  await serve(s, 8443, 'python3 /tmp/server.py 8443 /tmp/tls.pem')
  await s.commands.run('python3 /tmp/server.py 9443 /tmp/tls.pem', { background: true })
  const host = await at(s, 8443, '/host')
  assert.equal(host.status, 200)
  assert.equal(await host.text(), s.getHost(8443))
  // A body both ways through the bridge, on one kept-alive connection, twice.
  const body = Buffer.alloc(3 << 20, 7)
  const want = `${body.length} ${createHash('sha256').update(body).digest('hex')}`
  for (let i = 0; i < 2; i++) assert.equal(await (await at(s, 8443, '/sum', { method: 'POST', body })).text(), want)
  // By headers, too.
  assert.equal(await (await byHeaders(s.sandboxId, 8443, '/host')).text(), new URL(process.env.E2B_SANDBOX_URL).host)
  // A port that is not listed gets plain HTTP: the HTTPS server there closes without a byte
  // (OpenSSL's answer to an HTTP request), which the client hears as a closed port.
  let plain = 0
  for (let i = 0; i < 50 && plain !== 502; i++) {
    plain = (await at(s, 9443, '/host').catch(() => ({ status: 0 }))).status
    if (plain !== 502) await new Promise((r) => setTimeout(r, 100))
  }
  assert.equal(plain, 502)
  // A plain HTTP server on an https port: the handshake fails, and the 502 says so.
  const other = await sandbox({ network: { httpsPorts: [8000] } })
  await other.files.write('/tmp/server.py', SERVER_PY)
  await other.commands.run('python3 /tmp/server.py 8000', { background: true })
  let res, text
  for (let i = 0; i < 50; i++) {
    res = await at(other, 8000, '/host')
    text = await res.text()
    if (/TLS handshake failed/.test(text)) break
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.equal(res.status, 502)
  assert.match(JSON.parse(text).message, /^port 8000 is in httpsPorts but its TLS handshake failed: /)
  // A port out of range is the client's mistake.
  await assert.rejects(sandbox({ network: { httpsPorts: [70000] } }), /httpsPorts/)
  await assert.rejects(sandbox({ network: { httpsPorts: [49983] } }), /brig serves it itself/)
})

test(`${sdkName}: getMetrics reports CPU in use, memory held, and the disk`, async () => {
  const s = await sandbox()
  await s.getMetrics()  // the first reading starts a window
  // 60 MB held by a process, 50 MB written to the disk (cache, not memory), two seconds of CPU.
  await s.commands.run('python3 -c "b = bytearray(60 << 20); import time; time.sleep(30)"', { background: true })
  await s.commands.run('head -c 50M /dev/urandom > /tmp/fill; sync; timeout 2 sh -c "while :; do :; done"; true')
  const [m] = await s.getMetrics()
  assert.ok(m.cpuUsedPct > 20 && m.cpuUsedPct <= 100, JSON.stringify(m))
  assert.ok(m.memUsed >= 60 << 20 && m.memUsed < m.memTotal, JSON.stringify(m))
  assert.ok(m.memCache > 0, JSON.stringify(m))
  assert.ok(m.diskUsed >= 50 << 20 && m.diskUsed < m.diskTotal, JSON.stringify(m))
  assert.ok(m.diskTotal >= 1 << 30, JSON.stringify(m))  // the template's disk, several GiB by default
})

// As upstream envd: a symlink is described by its target (type, absolute path); the Python
// SDK cannot even parse a type of its own, so listing "/" (with /bin -> usr/bin) must work.
test(`${sdkName}: a symlink is described by what it points to`, async () => {
  const s = await sandbox()
  const bin = await s.files.getInfo('/bin')
  assert.equal(bin.type, 'dir')
  assert.equal(bin.symlinkTarget, '/usr/bin')
  assert.match(bin.permissions, /^L/)
  await s.commands.run('echo x > /home/user/f && ln -s f /home/user/l && ln -s nowhere /home/user/dangling')
  const l = await s.files.getInfo('/home/user/l')
  assert.equal(l.type, 'file')
  assert.equal(l.symlinkTarget, '/home/user/f')
  const root = await s.files.list('/')
  assert.ok(root.some((e) => e.name === 'bin' && e.type === 'dir'), JSON.stringify(root.map((e) => [e.name, e.type])))
  const dangling = await s.files.getInfo('/home/user/dangling')
  assert.equal(dangling.symlinkTarget, '/home/user/dangling')
})
