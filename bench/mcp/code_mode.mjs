// MCP code mode latency through the official MCP client over Streamable HTTP (/mcp/code):
// one `search` and one `execute_read` (which makes one API call), p50/p95 over N each. Each
// call creates an executor sandbox (node template, from the warm pool), writes the runner and
// the code, starts Node, relays api.request, and kills the sandbox. Run by bench/mcp/run.sh.
const { Client } = await import(process.env.MCP_SDK + '/client/index.js')
const { StreamableHTTPClientTransport } = await import(process.env.MCP_SDK + '/client/streamableHttp.js')

const N = Number(process.env.N || 30)
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}
const client = new Client({ name: 'bench', version: '1' })
await client.connect(new StreamableHTTPClientTransport(new URL('/mcp/code', process.env.BRIG_URL), {
  requestInit: { headers: { Authorization: `Bearer ${process.env.BRIG_API_KEY}` } },
}))
const calls = {
  search: "async () => Object.keys(spec.paths).filter((p) => p.includes('sandboxes')).length",
  execute_read: "async () => (await api.request({ method: 'GET', path: '/v2/sandboxes' })).data.length",
}
const rows = []
for (const [name, code] of Object.entries(calls)) {
  const xs = []
  for (let i = 0; i < N + 3; i++) {
    await new Promise((r) => setTimeout(r, Number(process.env.GAP_MS || 300)))  // let the pool refill
    const t0 = process.hrtime.bigint()
    const r = await client.callTool({ name, arguments: { code } })
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    if (r.isError) throw new Error(JSON.stringify(r))
    if (i >= 3) xs.push(ms)
  }
  rows.push({ name, n: xs.length, p50: pct(xs, 50), p95: pct(xs, 95) })
}
await client.close()
console.log('| MCP code-mode call | n | p50 | p95 | unit |\n|---|---:|---:|---:|---|')
for (const r of rows) console.log(`| ${r.name} | ${r.n} | ${r.p50.toFixed(1)} | ${r.p95.toFixed(1)} | ms |`)
