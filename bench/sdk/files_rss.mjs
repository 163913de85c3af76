// The daemon's memory while files move through it: 4 clients at once each write a file of
// FILES_MB (default 256) through the official SDK (multipart, as files.write sends it) and read
// it back, while this script samples brig serve's RSS (DAEMON_PID) every 50 ms. Prints a table:
// the daemon's RSS before, its peak during the run (VmHWM), the bytes moved, and the wall time.
import { readFileSync } from 'node:fs'
import { randomBytes, createHash } from 'node:crypto'

const { Sandbox } = await import(process.env.E2B_SDK_PATH)
const pid = process.env.DAEMON_PID
const mb = Number(process.env.FILES_MB || 256)
const clients = Number(process.env.FILES_CLIENTS || 4)
const status = () => readFileSync(`/proc/${pid}/status`, 'utf8')
const kb = (field) => Number(status().match(new RegExp(`^${field}:\\s+(\\d+)`, 'm'))[1])
let peak = 0
const sampler = setInterval(() => { peak = Math.max(peak, kb('VmRSS')) }, 50)
const before = kb('VmRSS')
const t0 = Date.now()
await Promise.all(Array.from({ length: clients }, async () => {
  const s = await Sandbox.create({ timeoutMs: 300_000 })
  try {
    const data = randomBytes(mb << 20)
    await s.files.write('/home/user/f', data)
    const back = await s.files.read('/home/user/f', { format: 'bytes' })
    const same = createHash('sha256').update(data).digest('hex') === createHash('sha256').update(back).digest('hex')
    if (!same) throw new Error('the file came back different')
  } finally {
    await s.kill()
  }
}))
const secs = (Date.now() - t0) / 1000
clearInterval(sampler)
peak = Math.max(peak, kb('VmRSS'))
console.log('| measurement | value |\n|---|---:|')
console.log(`| brig serve RSS before | ${(before / 1024).toFixed(1)} MB |`)
console.log(`| brig serve peak RSS (sampled every 50 ms) | ${(peak / 1024).toFixed(1)} MB |`)
console.log(`| moved (${clients} clients × ${mb} MB in and out) | ${(2 * clients * mb / 1024).toFixed(2)} GiB |`)
console.log(`| wall time | ${secs.toFixed(1)} s (${(2 * clients * mb / secs).toFixed(0)} MB/s in total) |`)
