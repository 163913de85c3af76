// The official e2b SDK (pinned in package.json), unmodified, against a real `brig serve`.
// Run by tests/sdk/run.sh, which starts the daemon and sets E2B_API_KEY / E2B_API_URL /
// E2B_SANDBOX_URL. SDK=e2b (2.51.0, the v2 endpoints) or SDK=e2b-2.50 (2.50.0, the v1 ones).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'

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

test(`${sdkName}: getMetrics reports CPU in use and memory`, async () => {
  const s = await sandbox()
  await s.getMetrics()  // the first reading starts a window
  await s.commands.run('head -c 50M /dev/zero > /tmp/fill; timeout 2 sh -c "while :; do :; done"; true')
  const [m] = await s.getMetrics()
  assert.ok(m.cpuUsedPct > 20 && m.cpuUsedPct <= 100, JSON.stringify(m))
  assert.ok(m.memUsed >= 50 << 20 && m.memUsed < m.memTotal, JSON.stringify(m))  // 50 MB in its tmpfs layer
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
