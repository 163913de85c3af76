// brig MCP code mode: the runner inside the executor sandbox (node template, no network).
// It evaluates the agent's `async () => { ... }` and speaks to brig over its own stdio: lines
// that start with the per-run marker are protocol, everything else is ignored. api.request()
// is only a message to brig; brig checks it (method, path, count) and makes the call itself,
// with the caller's key, which never enters this sandbox.
import { createInterface } from 'node:readline'
import { inspect } from 'node:util'

const MARK = process.env.BRIG_MARK
const LOG_CAP = 8192
const send = (o, done) => process.stdout.write(MARK + JSON.stringify(o) + '\n', done)

const logs = []
let logChars = 0
let logsTruncated = false
for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
  console[level] = (...args) => {
    const line = args.map((a) => (typeof a === 'string' ? a : inspect(a, { depth: 4 }))).join(' ')
    if (logChars + line.length > LOG_CAP) {
      if (!logsTruncated) logs.push('[logs truncated at 8 KiB]')
      logsTruncated = true
      return
    }
    logChars += line.length
    logs.push(level === 'log' ? line : `[${level}] ${line}`)
  }
}

const pending = new Map()
let seq = 0
let job = null
// The first line on stdin is the job ({code, mode, spec?}); later ones answer api.request calls.
createInterface({ input: process.stdin }).on('line', (line) => {
  let m
  try { m = JSON.parse(line) } catch { return }
  if (!job) {
    job = m
    run(m)
    return
  }
  const p = pending.get(m.id)
  if (!p) return
  pending.delete(m.id)
  if (m.error) p.reject(new Error(m.error))
  else p.resolve(m.response)
})

// Writes to a pipe are asynchronous: exit only once the last line is out.
const finish = (o) => send(o, () => process.exit(0))

async function run({ code, mode, spec }) {
  if (mode === 'search') {
    globalThis.spec = spec
  } else {
    globalThis.api = Object.freeze({
      request: (req) =>
        new Promise((resolve, reject) => {
          const id = ++seq
          pending.set(id, { resolve, reject })
          send({ type: 'request', id, request: req })
        }),
    })
  }
  try {
    // The newline keeps a trailing `// comment` in the code from swallowing the parenthesis.
    const fn = (0, eval)('(' + code + '\n)')
    if (typeof fn !== 'function') throw new TypeError('code must be a function expression: async () => { ... }')
    const value = await fn()
    const line = JSON.stringify(value === undefined ? null : value)  // throws on cycles or BigInt
    finish({ type: 'result', value: JSON.parse(line), logs })
  } catch (e) {
    finish({ type: 'error', error: e && e.stack ? String(e.stack) : String(e), logs })
  }
}
