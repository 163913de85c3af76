// MCP tool-call latency through the official MCP client: run_command (`echo hi`), write_file +
// read_file of 1 KiB, list_sandboxes and run_code (`1 + 1`, python) in one `base` sandbox, p50/p95
// over N each. TRANSPORT=http calls the daemon's /mcp (its tools call the core in process);
// TRANSPORT=stdio runs `brig mcp` (its tools are a client of the daemon's REST and envd API over
// loopback HTTP, as the daemon's own /mcp was before it called the core). Run by bench/mcp/run.sh.
const { Client } = await import(process.env.MCP_SDK + '/client/index.js')
const { StreamableHTTPClientTransport } = await import(process.env.MCP_SDK + '/client/streamableHttp.js')
const { StdioClientTransport } = await import(process.env.MCP_SDK + '/client/stdio.js')

const N = Number(process.env.N || 50)
const transport = process.env.TRANSPORT || 'http'
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}
const client = new Client({ name: 'bench-tools', version: '1' })
await client.connect(
  transport === 'stdio'
    ? new StdioClientTransport({
        command: process.env.BRIG_BIN,
        args: ['mcp'],
        env: { BRIG_URL: process.env.BRIG_URL, BRIG_API_KEY: process.env.BRIG_API_KEY, PATH: process.env.PATH },
      })
    : new StreamableHTTPClientTransport(new URL('/mcp', process.env.BRIG_URL), {
        requestInit: { headers: { Authorization: `Bearer ${process.env.BRIG_API_KEY}` } },
      }),
)
const call = async (name, args) => {
  const r = await client.callTool({ name, arguments: args })
  if (r.isError) throw new Error(`${name}: ${JSON.stringify(r).slice(0, 500)}`)
  return r.structuredContent
}
const { sandbox_id: id } = await call('create_sandbox', { template: 'base', timeout: 600, metadata: { bench: 'mcp-tools' } })
const content = 'x'.repeat(1024)
const calls = {
  'run_command echo hi': () => call('run_command', { sandbox_id: id, command: 'echo hi' }),
  'write_file + read_file 1 KiB': async () => {
    await call('write_file', { sandbox_id: id, path: '/home/user/bench.txt', content })
    await call('read_file', { sandbox_id: id, path: '/home/user/bench.txt' })
  },
  list_sandboxes: () => call('list_sandboxes', { metadata: { bench: 'mcp-tools' } }),
  'run_code 1 + 1': () => call('run_code', { sandbox_id: id, code: '1 + 1' }),
}
const rows = []
try {
  for (const [name, fn] of Object.entries(calls)) {
    const xs = []
    for (let i = 0; i < N + 3; i++) {
      const t0 = process.hrtime.bigint()
      await fn()
      if (i >= 3) xs.push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
    rows.push({ name, n: xs.length, p50: pct(xs, 50), p95: pct(xs, 95) })
  }
} finally {
  await call('kill_sandbox', { sandbox_id: id })
  await client.close()
}
console.log(`| MCP tool call (${process.env.LABEL || transport}) | n | p50 | p95 | unit |\n|---|---:|---:|---:|---|`)
for (const r of rows) console.log(`| ${r.name} | ${r.n} | ${r.p50.toFixed(2)} | ${r.p95.toFixed(2)} | ms |`)
