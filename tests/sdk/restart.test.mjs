// Sandboxes outlive `brig serve`: after a graceful stop (SIGTERM) or a crash (SIGKILL), the
// next daemon on the same state dir re-adopts them, and their processes kept running.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'

const brig = process.env.BRIG_BIN
const state = process.env.BRIG_STATE
const port = 20000 + Math.floor(Math.random() * 20000)
const url = `http://127.0.0.1:${port}`
const { Sandbox } = await import('e2b')
const opts = { apiKey: readFileSync(`${state}/api-key`, 'utf8').trim(), apiUrl: url, sandboxUrl: url }

async function startDaemon(...extra) {
  const d = spawn(brig, ['--state-dir', state, '--log-level', 'info', 'serve', '--listen', `127.0.0.1:${port}`, '--pool', '0', ...extra], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let log = ''
  d.stderr.on('data', (c) => (log += c))
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(url + '/health')).ok) return { d, log: () => log }
    } catch {}
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error('daemon did not start: ' + log)
}
const stop = (d, sig) => new Promise((resolve) => (d.on('exit', resolve), d.kill(sig)))
const tick = async (s) => (await s.commands.run('cat /tmp/tick')).stdout.trim()

test('sandboxes survive a daemon stop and a daemon crash', async () => {
  let daemon = await startDaemon()
  const s = await Sandbox.create({ ...opts, timeoutMs: 120_000, metadata: { test: 'restart' } })
  await s.files.write('/home/user/kept.txt', 'still here')
  await s.commands.run('while true; do date +%s%N > /tmp/tick; sleep 0.2; done', { background: true })
  await new Promise((r) => setTimeout(r, 500))
  const before = await tick(s)

  for (const sig of ['SIGTERM', 'SIGKILL']) {
    await stop(daemon.d, sig)
    await new Promise((r) => setTimeout(r, 500))
    daemon = await startDaemon()
    assert.match(daemon.log(), new RegExp(`re-adopted sandbox ${s.sandboxId}`), `after ${sig}: ${daemon.log()}`)
    const again = await Sandbox.connect(s.sandboxId, opts)
    assert.equal(await again.files.read('/home/user/kept.txt'), 'still here')
    const listed = await Sandbox.list({ ...opts, query: { metadata: { test: 'restart' } } }).nextItems()
    assert.ok(listed.some((x) => x.sandboxId === s.sandboxId), `listed after ${sig}`)
    const now = await tick(again)
    assert.ok(BigInt(now) > BigInt(before), `the background loop kept running through ${sig}`)
  }
  assert.equal(await Sandbox.kill(s.sandboxId, opts), true)
  await stop(daemon.d, 'SIGTERM')
})

test('a paused sandbox stays paused through a daemon crash, and resumes where it was', async () => {
  let daemon = await startDaemon()
  const s = await Sandbox.create({ ...opts, timeoutMs: 120_000 })
  // Every tick is kept: none may fall in the time it was paused.
  await s.commands.run('while true; do date +%s%3N >> /tmp/ticks; sleep 0.1; done', { background: true })
  await new Promise((r) => setTimeout(r, 500))
  assert.equal(await s.pause(), true)
  const pausedAt = Date.now()
  await stop(daemon.d, 'SIGKILL')
  daemon = await startDaemon()
  assert.match(daemon.log(), new RegExp(`re-adopted sandbox ${s.sandboxId}`), daemon.log())
  assert.equal((await Sandbox.getInfo(s.sandboxId, opts)).state, 'paused')
  await new Promise((r) => setTimeout(r, 1000))
  const resumedAt = Date.now()
  const again = await Sandbox.connect(s.sandboxId, opts)
  await new Promise((r) => setTimeout(r, 500))
  const ticks = (await again.commands.run('cat /tmp/ticks')).stdout.trim().split('\n').map(Number)
  const during = ticks.filter((t) => t > pausedAt + 50 && t < resumedAt - 50)
  assert.deepEqual(during, [], `ticks while paused (${pausedAt}..${resumedAt})`)
  assert.ok(ticks.some((t) => t >= resumedAt), 'it runs again after the resume')
  assert.ok(ticks.filter((t) => t <= pausedAt).length >= 3, 'and ran before the pause')
  assert.equal(await Sandbox.kill(s.sandboxId, opts), true)
  await stop(daemon.d, 'SIGTERM')
})

// A filesystem pause survives a daemon crash (a host restart too: nothing of it runs); a memory
// pause whose processes die while the daemon is down (as in a host restart) keeps its disk, and
// a resume says its memory is lost instead of booting it silently; onResume 'reboot' boots it.
test('a sandbox paused to its disk, or whose memory was lost, boots again on its disk after a crash', async () => {
  let daemon = await startDaemon()
  const a = await Sandbox.create({ ...opts, timeoutMs: 120_000, envs: { WHO: 'a' } })
  await a.files.write('/home/user/a.txt', 'disk of a')
  assert.equal(await a.pause({ keepMemory: false }), true)
  const b = await Sandbox.create({ ...opts, timeoutMs: 120_000 })
  await b.files.write('/home/user/b.txt', 'disk of b')
  await b.commands.run('sync')
  assert.equal(await b.pause(), true)
  const init = initOf(b.sandboxId)
  assert.ok(init, 'brig-init of b not found')
  await stop(daemon.d, 'SIGKILL')
  // b's processes die while no daemon runs (frozen tasks die once thawed).
  process.kill(init.pid, 'SIGKILL')
  const freezer = init.dir.replace('/memory/', '/freezer/') + '/freezer.state'
  if (existsSync(freezer)) writeFileSync(freezer, 'THAWED')
  else if (existsSync(init.dir + '/cgroup.freeze')) writeFileSync(init.dir + '/cgroup.freeze', '0')
  for (let i = 0; i < 50 && existsSync(`/proc/${init.pid}`); i++) await new Promise((r) => setTimeout(r, 100))
  daemon = await startDaemon()
  try {
    assert.equal((await Sandbox.getInfo(a.sandboxId, opts)).state, 'paused')
    assert.equal((await Sandbox.getInfo(b.sandboxId, opts)).state, 'paused')
    const againA = await Sandbox.connect(a.sandboxId, opts)
    assert.equal(await againA.files.read('/home/user/a.txt'), 'disk of a')
    assert.equal((await againA.commands.run('echo $WHO')).stdout, 'a\n')
    await assert.rejects(Sandbox.connect(b.sandboxId, opts), /lost its memory while it was paused.*onResume: 'reboot'/)
    assert.equal((await Sandbox.getInfo(b.sandboxId, opts)).state, 'paused', 'still paused after the refused resume')
    const againB = await Sandbox.connect(b.sandboxId, { ...opts, onResume: 'reboot' })
    assert.equal(await againB.files.read('/home/user/b.txt'), 'disk of b')
  } finally {
    await Sandbox.kill(a.sandboxId, opts).catch(() => {})
    await Sandbox.kill(b.sandboxId, opts).catch(() => {})
    await stop(daemon.d, 'SIGTERM')
  }
  assert.ok(!existsSync(`${state}/disks/${a.sandboxId}.img`), 'a killed sandbox keeps its disk')
  assert.ok(!existsSync(`${state}/disks/${b.sandboxId}.img`), 'a killed sandbox keeps its disk')
})

test('with no room for paused memory a pause is a 503 and the sandbox keeps running', async () => {
  const daemon = await startDaemon('--set', 'sandbox.paused_memory_mib=0')
  const s = await Sandbox.create({ ...opts, timeoutMs: 60_000 })
  try {
    await assert.rejects(s.pause(), /paused_memory_mib = 0\); the sandbox keeps running/)
    assert.equal((await s.getInfo()).state, 'running')
    assert.equal((await s.commands.run('echo still')).stdout, 'still\n')
  } finally {
    await Sandbox.kill(s.sandboxId, opts).catch(() => {})
    await stop(daemon.d, 'SIGTERM')
  }
})

// brig-init of a sandbox, found from the host: its name and its cgroup (the sandbox's id).
function initOf(id) {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'brig-init') continue
      const cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
      if (!cgroup.includes(`/${id}\n`)) continue
      // v1: the memory hierarchy's directory; v2: the unified one.
      const line = cgroup.split('\n').find((l) => /^\d+:memory:/.test(l)) ?? cgroup.split('\n').find((l) => l.startsWith('0::'))
      const path = line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1)
      const dir = line.startsWith('0::') ? `/sys/fs/cgroup${path}` : `/sys/fs/cgroup/memory${path}`
      return { pid: Number(pid), dir }
    } catch {}
  }
  return null
}

test('a sandbox that ends by itself is forgotten and cleaned up at once: its end is pushed, not found by a sweep', async () => {
  // The sweep is an hour: only the pushed end can make the daemon notice within the bound below.
  const daemon = await startDaemon('--set', 'server.reap_sweep_ms=3600000')
  try {
    const s = await Sandbox.create({ ...opts, timeoutMs: 120_000, metadata: { test: 'pushed-end' } })
    const init = initOf(s.sandboxId)
    assert.ok(init, 'found the sandbox\'s brig-init from the host')
    assert.ok(existsSync(init.dir), `its cgroup ${init.dir} exists`)
    process.kill(init.pid, 'SIGKILL')
    let listed = true
    for (let i = 0; i < 50 && (listed || existsSync(init.dir)); i++) {
      await new Promise((r) => setTimeout(r, 100))
      listed = (await Sandbox.list({ ...opts, query: { metadata: { test: 'pushed-end' } } }).nextItems()).some((x) => x.sandboxId === s.sandboxId)
    }
    assert.equal(listed, false, 'no longer listed\n' + daemon.log())
    assert.equal(existsSync(init.dir), false, 'its cgroup was removed\n' + daemon.log())
    assert.equal(await s.isRunning(), false)
  } finally {
    await stop(daemon.d, 'SIGTERM')
  }
})

// A sandbox with a network that ends while no daemon runs (here: its lifetime ends after the
// daemon was killed) leaves firewall rules that nothing owns; the next daemon's reaper removes
// them (rules and set elements), and its interface went with its network namespace.
test('a sandbox that dies while the daemon is down leaves no network behind', async () => {
  const { execFileSync } = await import('node:child_process')
  let daemon = await startDaemon()
  const s = await Sandbox.create({ ...opts, timeoutMs: 6_000 })
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
  const line = links.split('\n').find((l) => l.includes(`alias brig sandbox ${s.sandboxId}`))
  assert.ok(line, 'control: the sandbox has its interface')
  const iface = line.split(':')[1].trim().split('@')[0]
  const index = iface.slice(2)
  // Its rules and set elements (the index's emptied chains and sets stay for the next sandbox).
  const objects = () => {
    let out
    try {
      out = execFileSync('nft', ['-j', 'list', 'table', 'inet', 'brig'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    } catch {
      return []  // no table at all
    }
    return JSON.parse(out).nftables.filter((o) =>
      (o.rule && [`sb_${index}`, `nat_${index}`].includes(o.rule.chain)) ||
      (o.set && [`allow_${index}`, `deny_${index}`].includes(o.set.name) && o.set.elem))
  }
  assert.ok(objects().length > 0, 'control: the sandbox has firewall rules')
  await stop(daemon.d, 'SIGKILL')
  // Its lifetime ends with no daemon around; the kernel removes its interface with its namespace.
  for (let i = 0; i < 200 && links.length && execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).includes(`alias brig sandbox ${s.sandboxId}`); i++)
    await new Promise((r) => setTimeout(r, 100))
  assert.ok(!execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).includes(`alias brig sandbox ${s.sandboxId}`),
    'the interface went with the sandbox')
  assert.ok(objects().length > 0, 'control: nothing removed its rules while no daemon ran')
  daemon = await startDaemon()
  assert.deepEqual(objects(), [], 'the next daemon removed them')
  await stop(daemon.d, 'SIGTERM')
})

// What the daemon keeps of a sandbox beyond its token: its ingress rules.
test('a private sandbox stays private across a restart, and its port stays reachable', async () => {
  let daemon = await startDaemon()
  const s = await Sandbox.create({ ...opts, timeoutMs: 120_000, network: { allowPublicTraffic: false, maskRequestHost: 'kept:${PORT}' } })
  // Its output goes nowhere: the pipes it would log to belong to the daemon that is killed.
  await s.commands.run('python3 -m http.server 3000 >/dev/null 2>&1', { background: true, cwd: '/home/user' })
  const { request } = await import('node:http')
  const get = (headers = {}) => new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false, headers: { Host: s.getHost(3000), ...headers } }, (res) => {
      res.resume()
      resolve(res.statusCode)
    })
    req.on('error', reject)
    req.end()
  })
  const token = { 'e2b-traffic-access-token': s.trafficAccessToken }
  for (let i = 0; i < 50 && (await get(token)) !== 200; i++) await new Promise((r) => setTimeout(r, 100))
  assert.equal(await get(token), 200)
  await stop(daemon.d, 'SIGKILL')
  daemon = await startDaemon()
  assert.equal(await get(), 403)
  assert.equal(await get(token), 200)
  const info = await Sandbox.getInfo(s.sandboxId, opts)
  assert.equal(info.network.allowPublicTraffic, false)
  assert.equal(info.network.maskRequestHost, 'kept:${PORT}')
  assert.equal(await Sandbox.kill(s.sandboxId, opts), true)
  await stop(daemon.d, 'SIGTERM')
})
