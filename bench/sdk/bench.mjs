// brig through the official e2b SDK: what an agent sees. Run by bench/sdk/run.sh.
//   create → commands.run('echo hi') → kill, p50/p95 over N
//   commands.run('echo hi') on a live sandbox, p50/p95 over N
//   stdout streaming throughput; files.write / files.read of 100 MB
//   100 sandboxes created and each running a command, concurrently
// The SDK comes from tests/sdk (pinned there); run.sh passes its path.
const { Sandbox } = await import(process.env.E2B_SDK_PATH || 'e2b')

const N = Number(process.env.N || 100)
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6
const now = () => process.hrtime.bigint()
const rows = []
const row = (what, xs, unit = 'ms') => rows.push({ what, n: xs.length, p50: pct(xs, 50), p95: pct(xs, 95), unit })

// warm-up
for (let i = 0; i < 5; i++) await (await Sandbox.create()).kill()

const cycle = []
for (let i = 0; i < N; i++) {
  const t0 = now()
  const s = await Sandbox.create()
  await s.commands.run('echo hi')
  await s.kill()
  cycle.push(ms(t0))
}
row('Sandbox.create() → commands.run("echo hi") → kill()', cycle)

const live = await Sandbox.create({ timeoutMs: 600_000 })
const runs = []
for (let i = 0; i < N; i++) {
  const t0 = now()
  await live.commands.run('echo hi')
  runs.push(ms(t0))
}
row('commands.run("echo hi") on a live sandbox', runs)

const MB = 1024 * 1024
let t0 = now()
let got = 0
await live.commands.run('head -c 104857600 /dev/zero', { onStdout: (d) => (got += d.length) })
const streamMs = ms(t0)
rows.push({ what: 'stdout streaming, 100 MB', n: 1, p50: (got / MB) / (streamMs / 1000), p95: NaN, unit: 'MB/s' })

const blob = new Uint8Array(100 * MB).fill(97)
t0 = now()
await live.files.write('/home/user/big.bin', blob.buffer)
const writeMs = ms(t0)
t0 = now()
const back = await live.files.read('/home/user/big.bin', { format: 'bytes' })
const readMs = ms(t0)
if (back.length !== blob.length) throw new Error('read back ' + back.length)
rows.push({ what: 'files.write, 100 MB', n: 1, p50: 100 / (writeMs / 1000), p95: NaN, unit: 'MB/s' })
rows.push({ what: 'files.read, 100 MB', n: 1, p50: 100 / (readMs / 1000), p95: NaN, unit: 'MB/s' })
await live.kill()

const C = Number(process.env.CONCURRENT || 100)
t0 = now()
const each = await Promise.all(
  Array.from({ length: C }, async () => {
    const t = now()
    const s = await Sandbox.create({ timeoutMs: 120_000 })
    const r = await s.commands.run('echo $((6*7))')
    if (r.stdout !== '42\n') throw new Error('bad output')
    const d = ms(t)
    await s.kill()
    return d
  }),
)
const wall = ms(t0)
row(`${C} concurrent sandboxes, each create → run (per sandbox)`, each)
rows.push({ what: `${C} concurrent sandboxes, all done (wall)`, n: 1, p50: wall, p95: NaN, unit: 'ms' })

console.log(`| measurement | n | p50 | p95 | unit |\n|---|---:|---:|---:|---|`)
for (const r of rows)
  console.log(`| ${r.what} | ${r.n} | ${r.p50.toFixed(r.unit === 'ms' ? 1 : 0)} | ${Number.isNaN(r.p95) ? '-' : r.p95.toFixed(1)} | ${r.unit} |`)
