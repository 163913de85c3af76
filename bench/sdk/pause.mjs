// Pause and resume through the official e2b SDK: sbx.pause() and Sandbox.connect(id) (which
// resumes a paused sandbox), p50/p95 over N cycles, for an idle `base` sandbox and for one whose
// process holds 256 MiB. Beside them, in the same run: getInfo(), an API round trip that changes
// nothing (the floor any call pays), and E2B's published figures (not measured here: its pause
// writes memory to disk, about 4 s per GiB, and its resume takes about 1 s). Run by run.sh.
const { Sandbox } = await import(process.env.E2B_SDK_PATH || 'e2b')

const N = Number(process.env.N || 30)
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}
const since = (t0) => Number(process.hrtime.bigint() - t0) / 1e6
const rows = []
const row = (what, xs) => rows.push({ what, n: xs.length, p50: pct(xs, 50), p95: pct(xs, 95) })

// [label, what runs in it first, keepMemory]: with keepMemory false the pause stops its
// processes and keeps its disk, and connect boots it again on the disk (a filesystem pause).
const cases = [
  ['idle base sandbox', null, true],
  ['a process holding 256 MiB', 'python3 -c "b=bytearray(256<<20); b[::4096]=b\\"x\\"*(len(b)//4096); import time; time.sleep(3600)"', true],
  ['filesystem pause, 256 MiB written to its disk', 'head -c 256M /dev/urandom > /home/user/blob && sync', false],
]
for (const [label, hold, keepMemory] of cases) {
  const s = await Sandbox.create({ timeoutMs: 600_000 })
  if (hold && !keepMemory) {
    await s.commands.run(hold, { timeoutMs: 120_000 })
  } else if (hold) {
    await s.commands.run(hold, { background: true })
    for (let i = 0; i < 100; i++) {  // bounded: until the memory is in use
      const [m] = await s.getMetrics()
      if (m && m.memUsed > 250 << 20) break
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  const info = [], pause = [], resume = []
  for (let i = 0; i < N; i++) {
    let t0 = process.hrtime.bigint()
    await s.getInfo()
    info.push(since(t0))
    t0 = process.hrtime.bigint()
    if (!(await s.pause({ keepMemory }))) throw new Error('pause said it was paused already')
    pause.push(since(t0))
    t0 = process.hrtime.bigint()
    await Sandbox.connect(s.sandboxId)
    resume.push(since(t0))
  }
  row(`getInfo() (${label}): an API round trip, the floor`, info)
  row(keepMemory ? `pause() (${label})` : `pause({ keepMemory: false }) (${label})`, pause)
  row(keepMemory ? `Sandbox.connect() resuming it (${label})` : `Sandbox.connect() booting it again on its disk (${label})`, resume)
  await s.kill()
}

console.log('| measurement | n | p50 ms | p95 ms |')
console.log('|---|---:|---:|---:|')
for (const r of rows) console.log(`| ${r.what} | ${r.n} | ${r.p50.toFixed(2)} | ${r.p95.toFixed(2)} |`)
console.log('| E2B (published, not measured): pause, per GiB of memory | – | ~4000 | – |')
console.log('| E2B (published, not measured): resume | – | ~1000 | – |')
