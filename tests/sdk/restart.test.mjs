// Sandboxes outlive `brig serve`: after a graceful stop (SIGTERM) or a crash (SIGKILL), the
// next daemon on the same state dir re-adopts them, and their processes kept running.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'

const brig = process.env.BRIG_BIN
const state = process.env.BRIG_STATE
const port = 20000 + Math.floor(Math.random() * 20000)
const url = `http://127.0.0.1:${port}`
const { Sandbox } = await import('e2b')
const opts = { apiKey: readFileSync(`${state}/api-key`, 'utf8').trim(), apiUrl: url, sandboxUrl: url }

async function startDaemon() {
  const d = spawn(brig, ['--state-dir', state, '--log-level', 'info', 'serve', '--listen', `127.0.0.1:${port}`, '--pool', '0'], {
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
