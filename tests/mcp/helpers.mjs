// Shared by the MCP tests: connecting the official client over either transport, and small
// hand-written tar/zip readers and a tar writer (no archive library, so the tests see the bytes
// brig produced, not a library's interpretation of them).
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import zlib from 'node:zlib'

export const brigUrl = process.env.BRIG_URL
export const apiKey = process.env.BRIG_API_KEY
export const brigBin = process.env.BRIG_BIN
if (!brigUrl || !apiKey || !brigBin) throw new Error('set BRIG_URL, BRIG_API_KEY and BRIG_BIN (tests/mcp/run.sh does)')
export const mcpUrl = new URL('/mcp', brigUrl)
export const bearer = { Authorization: `Bearer ${apiKey}` }
export const stdioEnv = { BRIG_URL: brigUrl, BRIG_API_KEY: apiKey, PATH: process.env.PATH }
export const transports = ['stdio', 'http']

// A connected client. Tools are listed once so the SDK validates every structuredContent
// against the tool's outputSchema (it only does for tools it has seen in tools/list).
export async function connect(transport, name = `brig-tests-${transport}`) {
  const client = new Client({ name, version: '1.0.0' })
  const t =
    transport === 'stdio'
      ? new StdioClientTransport({ command: brigBin, args: ['mcp'], env: stdioEnv })
      : new StreamableHTTPClientTransport(mcpUrl, { requestInit: { headers: bearer } })
  await client.connect(t)
  await client.listTools()
  return client
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// A tools/call over plain HTTP POST /mcp with a request id no SDK client uses (SDK clients
// number their requests 0, 1, 2...). Cancellation on /mcp is scoped by API key and request id,
// so an observer sharing the key must not reuse the ids of the client it watches.
let rawSeq = 0
export async function rawCall(name, args) {
  const id = `observer-${process.pid}-${++rawSeq}`
  const res = await fetch(mcpUrl, {
    method: 'POST',
    headers: { ...bearer, Accept: 'application/json, text/event-stream', 'Content-Type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } }),
    signal: AbortSignal.timeout(60_000),
  })
  const body = await res.json()
  if (res.status !== 200 || body.id !== id || !body.result) throw new Error(`${name}: HTTP ${res.status} ${JSON.stringify(body)}`)
  return body.result
}

// Command lines of the sandbox's processes matching `re` (read from /proc; the base template
// has no procps), looked up with rawCall, so while another client's call runs. The reading shell's own command line starts with "/bin/bash -l -c for", so
// anchored patterns never match it.
export async function processes(sandboxId, re) {
  const r = await rawCall('run_command', {
    sandbox_id: sandboxId,
    command: 'for p in /proc/[0-9]*; do tr "\\0" " " <$p/cmdline 2>/dev/null; echo; done',
  })
  if (r.isError) throw new Error(`listing processes failed: ${JSON.stringify(r)}`)
  return r.structuredContent.stdout.split('\n').filter((l) => re.test(l))
}

// ---- tar ----
const cstr = (buf) => {
  const nul = buf.indexOf(0)
  return buf.subarray(0, nul < 0 ? buf.length : nul).toString('utf8')
}

// Entries of an uncompressed tar: 512-byte headers (name 0..100, size octal 124..136, typeflag
// 156, linkname 157..257, ustar prefix 345..500), each followed by its data padded to 512.
export function readTar(tar) {
  const entries = []
  for (let off = 0; off + 512 <= tar.length; ) {
    const h = tar.subarray(off, off + 512)
    if (h.every((b) => b === 0)) break
    const prefix = cstr(h.subarray(345, 500))
    const name = (prefix ? prefix + '/' : '') + cstr(h.subarray(0, 100))
    const size = parseInt(cstr(h.subarray(124, 136)).trim() || '0', 8)
    const type = String.fromCharCode(h[156] || 0x30)
    const linkname = cstr(h.subarray(157, 257))
    const data = tar.subarray(off + 512, off + 512 + size)
    entries.push({ name, type, linkname, size, data })
    off += 512 + Math.ceil(size / 512) * 512
  }
  return entries
}

export function tarEntry(name, data = '', { type = '0', linkname = '', mode } = {}) {
  const body = Buffer.from(data)
  const h = Buffer.alloc(512)
  const octal = (n, width) => n.toString(8).padStart(width - 1, '0') + '\0'
  h.write(name, 0, 100)
  h.write(octal(mode ?? (type === '5' ? 0o755 : 0o644), 8), 100)
  h.write(octal(1000, 8), 108)
  h.write(octal(1000, 8), 116)
  h.write(octal(body.length, 12), 124)
  h.write(octal(Math.floor(Date.now() / 1000), 12), 136)
  h.write(' '.repeat(8), 148)
  h.write(type, 156)
  h.write(linkname, 157, 100)
  h.write('ustar\0', 257)
  h.write('00', 263)
  let sum = 0
  for (const b of h) sum += b
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148)
  return Buffer.concat([h, body, Buffer.alloc((512 - (body.length % 512)) % 512)])
}

// base64 of a .tar.gz holding the given entries (from tarEntry).
export const targz = (entries) => zlib.gzipSync(Buffer.concat([...entries, Buffer.alloc(1024)])).toString('base64')

// ---- zip ----
// Entries from the central directory: name, unix mode (external attributes >> 16) and the
// decompressed data (stored or deflated).
export function readZip(zip) {
  let eocd = -1
  for (let i = zip.length - 22; i >= 0; i--)
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i
      break
    }
  if (eocd < 0) throw new Error('no end of central directory record')
  const count = zip.readUInt16LE(eocd + 10)
  let off = zip.readUInt32LE(eocd + 16)
  const entries = []
  for (let n = 0; n < count; n++) {
    if (zip.readUInt32LE(off) !== 0x02014b50) throw new Error(`bad central directory header at ${off}`)
    const method = zip.readUInt16LE(off + 10)
    const csize = zip.readUInt32LE(off + 20)
    const nameLen = zip.readUInt16LE(off + 28)
    const extraLen = zip.readUInt16LE(off + 30)
    const commentLen = zip.readUInt16LE(off + 32)
    const mode = zip.readUInt32LE(off + 38) >>> 16
    const local = zip.readUInt32LE(off + 42)
    const name = zip.subarray(off + 46, off + 46 + nameLen).toString('utf8')
    const dataStart = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28)
    const raw = zip.subarray(dataStart, dataStart + csize)
    const data = method === 0 ? raw : method === 8 ? zlib.inflateRawSync(raw) : null
    entries.push({ name, mode, method, data })
    off += 46 + nameLen + extraLen + commentLen
  }
  return entries
}
