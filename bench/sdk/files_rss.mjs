// The daemon's memory while files move through it: CLIENTS clients at once (default 4) each write
// a file of FILES_MB (default 256) through the official SDK (multipart, as files.write sends it)
// and read it back, ROUNDS times (default 1; 4 rounds of 256 MiB move 1 GiB in and 1 GiB out per
// client, which a sandbox's 512 MiB memory limit, holding the file in its tmpfs layer, allows),
// while this script samples brig serve's RSS (DAEMON_PID) every 20 ms. The kernel's own peak
// (VmHWM) is reset first (clear_refs 5) and read at the end, so no sample can miss the peak.
// Run by itself it prints a table; bench/speed/speed.mjs imports filesRss().
import { readFileSync, writeFileSync } from 'node:fs'
import { randomBytes, createHash } from 'node:crypto'
import { pathToFileURL } from 'node:url'

export async function filesRss({ Sandbox, pid, mb = 256, clients = 4, rounds = 1 }) {
  const status = () => readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (field) => Number(status().match(new RegExp(`^${field}:\\s+(\\d+)`, 'm'))[1])
  const before = kb('VmRSS')
  writeFileSync(`/proc/${pid}/clear_refs`, '5')  // VmHWM := VmRSS
  let peak = 0
  const sampler = setInterval(() => { peak = Math.max(peak, kb('VmRSS')) }, 20)
  const t0 = Date.now()
  await Promise.all(Array.from({ length: clients }, async () => {
    const s = await Sandbox.create({ timeoutMs: 600_000 })
    try {
      for (let r = 0; r < rounds; r++) {
        const data = randomBytes(mb << 20)
        await s.files.write('/home/user/f', data)
        const back = await s.files.read('/home/user/f', { format: 'bytes' })
        const same = createHash('sha256').update(data).digest('hex') === createHash('sha256').update(back).digest('hex')
        if (!same) throw new Error('the file came back different')
      }
    } finally {
      await s.kill()
    }
  }))
  const secs = (Date.now() - t0) / 1000
  clearInterval(sampler)
  peak = Math.max(peak, kb('VmRSS'), kb('VmHWM'))
  return { beforeMB: before / 1024, peakMB: peak / 1024, movedGiB: (2 * clients * rounds * mb) / 1024, secs, clients, mb, rounds }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { Sandbox } = await import(process.env.E2B_SDK_PATH)
  const r = await filesRss({
    Sandbox,
    pid: process.env.DAEMON_PID,
    mb: Number(process.env.FILES_MB || 256),
    clients: Number(process.env.FILES_CLIENTS || 4),
    rounds: Number(process.env.FILES_ROUNDS || 1),
  })
  console.log('| measurement | value |\n|---|---:|')
  console.log(`| brig serve RSS before | ${r.beforeMB.toFixed(1)} MB |`)
  console.log(`| brig serve peak RSS (VmHWM, and sampled every 20 ms) | ${r.peakMB.toFixed(1)} MB |`)
  console.log(`| moved (${r.clients} clients × ${r.rounds} × ${r.mb} MiB in and out) | ${r.movedGiB.toFixed(2)} GiB |`)
  console.log(`| wall time | ${r.secs.toFixed(1)} s (${(r.movedGiB * 1024 / r.secs).toFixed(0)} MB/s in total) |`)
}
