// Speed and memory of brig serve, each figure beside the machine's own limit measured in the same
// run (issue 12's targets). Run by bench/speed/run.sh, which starts the daemon and passes:
//   E2B_SDK_PATH, E2B_API_URL, E2B_API_KEY   the pinned official SDK and the daemon
//   DAEMON_PID, STATE                        brig serve's pid and state dir
//   PEER, BRIG, ROOTFS, BWRAP                brig-speed-peer, brig, the test rootfs and bwrap
//                                            (for the one-shot comparison)
// Sizes and counts (env): STDOUT_MB (100), FILE_MB (256), RUNS (7: throughput runs),
// LATENCY_N (100), ONESHOT_N (100), RSS_CLIENTS (4), RSS_MB (256), RSS_ROUNDS (4).
//
// Throughput: each run measures the plain pipe (brig-speed-peer pipe, same byte count) right
// before the brig figures, so a busy machine slows both; the ratio is of the medians. Beside the
// SDK the same request is made twice more: by Node's own fetch() with the least a client must do
// (the client's ceiling in this runtime), and by curl, output to /dev/null (the daemon's own).
// Last, the SDK itself against replay.mjs, an envd answering from memory with the bytes brig
// sent: the SDK's own ceiling on this machine, with no brig behind it.
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { filesRss } from '../sdk/files_rss.mjs'

const { Sandbox } = await import(process.env.E2B_SDK_PATH)
const env = process.env
const API = env.E2B_API_URL
const MiB = 1 << 20
const STDOUT_BYTES = Number(env.STDOUT_MB || 100) * MiB
const FILE_BYTES = Number(env.FILE_MB || 256) * MiB
const RUNS = Number(env.RUNS || 7)
const LATENCY_N = Number(env.LATENCY_N || 100)
const ONESHOT_N = Number(env.ONESHOT_N || 100)

const pct = (xs, p) => {  // nearest rank
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
}
const now = () => process.hrtime.bigint()
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6
const mbps = (bytes, millis) => bytes / 1e6 / (millis / 1000)
const log = (...a) => console.error('  ', ...a)

const pipeMs = (bytes) => JSON.parse(execFileSync(env.PEER, ['pipe', String(bytes)], { encoding: 'utf8' })).ms

// curl: the same request the SDK makes, timed by curl itself (time_total: request to last byte).
const curl = (args) => {
  const out = execFileSync('curl', ['-sS', '--fail-with-body', '-o', '/dev/null', '-w', '%{time_total} %{size_download}', ...args],
    { encoding: 'utf8', maxBuffer: 1 << 20 })
  const [secs, size] = out.trim().split(' ').map(Number)
  return { ms: secs * 1000, size }
}
async function envdHeaders(sbx) {
  const r = await fetch(`${API}/sandboxes/${sbx.sandboxId}`, { headers: { 'X-API-KEY': env.E2B_API_KEY } })
  const token = (await r.json()).envdAccessToken
  return ['-H', `E2b-Sandbox-Id: ${sbx.sandboxId}`, '-H', 'E2b-Sandbox-Port: 49983', '-H', `X-Access-Token: ${token}`]
}

const rows = []
const tmp = mkdtempSync(join(tmpdir(), 'brig-speed-'))
try {
  // ---- create -> commands.run('echo hi') -> kill, through the SDK ----------------------------
  log('latency: create → run → kill')
  for (let i = 0; i < 5; i++) await (await Sandbox.create()).kill()
  const cycle = []
  for (let i = 0; i < LATENCY_N; i++) {
    const t0 = now()
    const s = await Sandbox.create()
    const r = await s.commands.run('echo hi')
    await s.kill()
    cycle.push(ms(t0))
    if (r.stdout !== 'hi\n') throw new Error('echo hi gave ' + JSON.stringify(r.stdout))
  }

  // ---- brig run: via the daemon, standalone, and bubblewrap, one-shot `true` ----------------
  log('brig run: daemon, standalone, bwrap')
  const stateDir = mkdtempSync('/var/tmp/brig-speed-state-')
  const oneshot = JSON.parse(execFileSync(env.PEER, [
    'time', String(ONESHOT_N), '5',
    '--cmd', 'daemon', `BRIG_URL=${API}`, `BRIG_API_KEY=${env.E2B_API_KEY}`, env.BRIG, '--state-dir', env.STATE, 'run', '--', '/bin/true',
    '--cmd', 'standalone', 'BRIG_URL=http://127.0.0.1:1', env.BRIG, '--state-dir', stateDir, 'run', '--rootfs', env.ROOTFS, '--', '/bin/true',
    '--cmd', 'bwrap', env.BWRAP, '--unshare-all', '--die-with-parent', '--new-session', '--ro-bind', env.ROOTFS, '/',
    '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--tmpfs', '/dev/shm', '--hostname', 'x', '--', '/bin/true',
  ], { encoding: 'utf8', maxBuffer: 16 << 20 }))
  rmSync(stateDir, { recursive: true, force: true })

  // ---- throughput: stdout, files.write, files.read -----------------------------------------
  const live = await Sandbox.create({ timeoutMs: 1_800_000 })
  const hdrs = await envdHeaders(live)
  const startBody = join(tmp, 'start.bin')
  {
    const msg = Buffer.from(JSON.stringify({ process: { cmd: 'head', args: ['-c', String(STDOUT_BYTES), '/dev/zero'] }, stdin: false }))
    const env5 = Buffer.alloc(5)
    env5.writeUInt32BE(msg.length, 1)
    writeFileSync(startBody, Buffer.concat([env5, msg]))
  }
  const blob = randomBytes(FILE_BYTES)
  const blobPath = join(tmp, 'file.bin')
  writeFileSync(blobPath, blob)
  const t = { pipeOut: [], sdkOut: [], fetchOut: [], curlOut: [], pipeFile: [], sdkWrite: [], fetchWrite: [], curlWrite: [],
    sdkRead: [], fetchRead: [], curlRead: [] }
  const fetchHeaders = {}
  for (let i = 0; i < hdrs.length; i += 2) {
    const [k, v] = hdrs[i + 1].split(': ')
    fetchHeaders[k] = v
  }
  const startBytes = readFileSync(startBody)
  // The SDK's ceiling: capture brig's Start stream once, and let replay.mjs serve it.
  const captured = join(tmp, 'start.out')
  execFileSync('curl', ['-sS', '--fail-with-body', '-o', captured, '-X', 'POST', ...hdrs, '-H', 'Content-Type: application/connect+json',
    '-H', 'Connect-Protocol-Version: 1', '--data-binary', `@${startBody}`, `${API}/process.Process/Start`])
  const replayProc = spawn(process.execPath, [new URL('./replay.mjs', import.meta.url).pathname], {
    env: { ...env, REPLAY_STDOUT: captured, REPLAY_FILE_BYTES: String(FILE_BYTES) }, stdio: ['pipe', 'pipe', 'inherit'] })
  const [line] = await once(replayProc.stdout, 'data')
  const replayPort = Number(/listening (\d+)/.exec(String(line))?.[1])
  if (!replayPort) throw new Error('replay.mjs did not start: ' + line)
  const replay = await Sandbox.connect('replay', { debug: true, sandboxUrl: `http://127.0.0.1:${replayPort}` })
  t.ceilOut = []; t.ceilWrite = []; t.ceilRead = []
  // The least a JavaScript client of process.Process/Start (Connect, JSON) does: split the
  // envelopes, parse each JSON message, decode the base64 output.
  const fetchStdout = async () => {
    const r = await fetch(`${API}/process.Process/Start`, {
      method: 'POST', body: startBytes,
      headers: { ...fetchHeaders, 'Content-Type': 'application/connect+json', 'Connect-Protocol-Version': '1' },
    })
    let pending = Buffer.alloc(0), got = 0
    for await (const chunk of r.body) {
      pending = pending.length ? Buffer.concat([pending, chunk]) : Buffer.from(chunk)
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
        const n = pending.readUInt32BE(1)
        const msg = JSON.parse(pending.subarray(5, 5 + n).toString())
        const out = msg.event?.data?.stdout
        if (out) got += Buffer.from(out, 'base64').length
        pending = pending.subarray(5 + n)
      }
    }
    return got
  }
  for (let run = 0; run < RUNS; run++) {
    log(`throughput run ${run + 1}/${RUNS}`)
    t.pipeOut.push(pipeMs(STDOUT_BYTES))
    let got = 0
    let t0 = now()
    await live.commands.run(`head -c ${STDOUT_BYTES} /dev/zero`, { onStdout: (d) => (got += d.length), timeoutMs: 0 })
    t.sdkOut.push(ms(t0))
    if (got !== STDOUT_BYTES) throw new Error(`stdout: got ${got} of ${STDOUT_BYTES}`)
    const c = curl(['-X', 'POST', ...hdrs, '-H', 'Content-Type: application/connect+json', '-H', 'Connect-Protocol-Version: 1',
      '--data-binary', `@${startBody}`, `${API}/process.Process/Start`])
    if (c.size < (STDOUT_BYTES * 4) / 3) throw new Error(`curl stdout: ${c.size} bytes`)
    t.curlOut.push(c.ms)
    t0 = now()
    const fetched = await fetchStdout()
    t.fetchOut.push(ms(t0))
    if (fetched !== STDOUT_BYTES) throw new Error(`fetch stdout: got ${fetched} of ${STDOUT_BYTES}`)

    t.pipeFile.push(pipeMs(FILE_BYTES))
    t0 = now()
    await live.files.write('/home/user/big.bin', blob)
    t.sdkWrite.push(ms(t0))
    t0 = now()
    const back = await live.files.read('/home/user/big.bin', { format: 'bytes' })
    t.sdkRead.push(ms(t0))
    if (back.length !== FILE_BYTES) throw new Error('read back ' + back.length)
    const q = `${API}/files?path=/home/user/big.bin&username=user`
    t.curlWrite.push(curl(['-X', 'POST', ...hdrs, '-F', `file=@${blobPath}`, q]).ms)
    const r = curl([...hdrs, q])
    if (r.size !== FILE_BYTES) throw new Error(`curl read: ${r.size} bytes`)
    t.curlRead.push(r.ms)
    // fetch(): the same multipart upload as the SDK's, and the download into one ArrayBuffer.
    const form = new FormData()
    form.append('file', new Blob([blob]), '/home/user/big.bin')
    t0 = now()
    const w = await fetch(q, { method: 'POST', body: form, headers: fetchHeaders })
    await w.arrayBuffer()
    t.fetchWrite.push(ms(t0))
    if (w.status !== 200) throw new Error(`fetch write: HTTP ${w.status}`)
    t0 = now()
    const down = await (await fetch(q, { headers: fetchHeaders })).arrayBuffer()
    t.fetchRead.push(ms(t0))
    if (down.byteLength !== FILE_BYTES) throw new Error(`fetch read: ${down.byteLength} bytes`)

    // The SDK against replay.mjs (no brig): the same three calls.
    let ceilGot = 0
    t0 = now()
    await replay.commands.run(`head -c ${STDOUT_BYTES} /dev/zero`, { onStdout: (d) => (ceilGot += d.length), timeoutMs: 0 })
    t.ceilOut.push(ms(t0))
    if (ceilGot !== STDOUT_BYTES) throw new Error(`replayed stdout: got ${ceilGot} of ${STDOUT_BYTES}`)
    t0 = now()
    await replay.files.write('/home/user/big.bin', blob)
    t.ceilWrite.push(ms(t0))
    t0 = now()
    const replayed = await replay.files.read('/home/user/big.bin', { format: 'bytes' })
    t.ceilRead.push(ms(t0))
    if (replayed.length !== FILE_BYTES) throw new Error('replayed read ' + replayed.length)
  }
  await live.kill()
  replayProc.stdin.end()

  // ---- the daemon's memory while 4 clients each move 1 GiB in and out ----------------------
  log('daemon RSS under concurrent file traffic')
  const rss = await filesRss({
    Sandbox, pid: env.DAEMON_PID,
    mb: Number(env.RSS_MB || 256), clients: Number(env.RSS_CLIENTS || 4), rounds: Number(env.RSS_ROUNDS || 4),
  })

  // ---- the table ---------------------------------------------------------------------------
  const rate = (bytes, times) => ({ p50: mbps(bytes, pct(times, 50)), p95: mbps(bytes, pct(times, 95)) })
  const pipeOut = rate(STDOUT_BYTES, t.pipeOut), pipeFile = rate(FILE_BYTES, t.pipeFile)
  const tput = (what, bytes, times, pipe, target) => {
    const r = rate(bytes, times)
    const ratio = r.p50 / pipe.p50
    rows.push([what, times.length, r.p50.toFixed(0), r.p95.toFixed(0), 'MB/s', `${(100 * ratio).toFixed(1)}% of the pipe`,
      target ? `≥ ${target}%` : '', target ? (100 * ratio >= target ? 'met' : '**missed**') : ''])
  }
  const sO = `${STDOUT_BYTES / MiB} MiB`, sF = `${FILE_BYTES / MiB} MiB`
  rows.push([`plain pipe, ${sO} (the machine's limit)`, RUNS, pipeOut.p50.toFixed(0), pipeOut.p95.toFixed(0), 'MB/s', '100%', '', ''])
  tput(`SDK stdout: commands.run(head -c ${sO}), onStdout`, STDOUT_BYTES, t.sdkOut, pipeOut, 25)
  tput(`↳ the same Start stream to fetch() (envelopes, JSON.parse, base64 decode)`, STDOUT_BYTES, t.fetchOut, pipeOut, 0)
  tput(`↳ the same Start stream to curl (the daemon alone)`, STDOUT_BYTES, t.curlOut, pipeOut, 0)
  tput(`↳ the SDK against an envd answering from memory (the SDK's own ceiling)`, STDOUT_BYTES, t.ceilOut, pipeOut, 0)
  rows.push([`plain pipe, ${sF} (the machine's limit)`, RUNS, pipeFile.p50.toFixed(0), pipeFile.p95.toFixed(0), 'MB/s', '100%', '', ''])
  tput(`SDK files.write, ${sF} (multipart)`, FILE_BYTES, t.sdkWrite, pipeFile, 30)
  tput(`↳ the same upload from fetch() (FormData)`, FILE_BYTES, t.fetchWrite, pipeFile, 0)
  tput(`↳ the same upload from curl -F (the daemon alone)`, FILE_BYTES, t.curlWrite, pipeFile, 0)
  tput(`↳ the SDK uploading to an envd that only reads (the SDK's own ceiling)`, FILE_BYTES, t.ceilWrite, pipeFile, 0)
  tput(`SDK files.read, ${sF} (format: bytes)`, FILE_BYTES, t.sdkRead, pipeFile, 50)
  tput(`↳ the same download to fetch() (arrayBuffer)`, FILE_BYTES, t.fetchRead, pipeFile, 0)
  tput(`↳ the same download to curl (the daemon alone)`, FILE_BYTES, t.curlRead, pipeFile, 0)
  tput(`↳ the SDK downloading from an envd answering from memory (the SDK's own ceiling)`, FILE_BYTES, t.ceilRead, pipeFile, 0)
  rows.push([`brig serve peak RSS, ${rss.clients} clients × ${rss.rounds} × ${rss.mb} MiB in and out at once (${rss.movedGiB} GiB, ${rss.secs.toFixed(1)} s; idle before: ${rss.beforeMB.toFixed(1)} MiB)`,
    1, rss.peakMB.toFixed(1), '–', 'MiB', '', '< 128 MiB', rss.peakMB < 128 ? 'met' : '**missed**'])
  const c50 = pct(cycle, 50)
  rows.push(['SDK Sandbox.create() → commands.run("echo hi") → kill()', cycle.length, c50.toFixed(1), pct(cycle, 95).toFixed(1), 'ms', '',
    '≤ 15 ms p50', c50 <= 15 ? 'met' : '**missed**'])
  const b50 = pct(oneshot.bwrap.ms, 50)
  const one = (what, o, factor) => {
    const p50 = pct(o.ms, 50)
    const fails = o.failures ? ` (${o.failures} failed: ${o.last_error})` : ''
    rows.push([what + fails, o.ms.length, p50.toFixed(2), pct(o.ms, 95).toFixed(2), 'ms', `${(p50 / b50).toFixed(2)}× bwrap`,
      factor ? `≤ ${factor}× bwrap` : '', factor ? (p50 <= factor * b50 ? 'met' : '**missed**') : ''])
  }
  one('`brig run -- /bin/true`, a daemon running (template base, warm pool)', oneshot.daemon, 1)
  one('`brig run --rootfs R -- /bin/true`, no daemon (standalone)', oneshot.standalone, 1.5)
  one('bubblewrap one-shot `true` (the peer), same rootfs R', oneshot.bwrap, 0)
} finally {
  rmSync(tmp, { recursive: true, force: true })
}

console.log('| measurement | n | p50 | p95 | unit | beside the peer | target | |')
console.log('|---|---:|---:|---:|---|---|---|---|')
for (const r of rows) console.log(`| ${r.join(' | ')} |`)
