const { id, tok } = JSON.parse(process.argv[2])
const url = process.env.E2B_SANDBOX_URL + '/execute'
const headers = { 'Content-Type': 'application/json', 'E2b-Sandbox-Id': id, 'E2b-Sandbox-Port': '49999', 'X-Access-Token': tok }
async function ex(code, timeoutMs = 30000) {
  const c = new AbortController(); const timer = setTimeout(() => c.abort(), timeoutMs)
  try {
    const r = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ code }), signal: c.signal, keepalive: true })
    return (await r.text()).trim().split('\n').map(l => l.length > 200 ? l.slice(0, 200) + '…' : l).join(' | ')
  } catch (e) { return 'ERR ' + e.name } finally { clearTimeout(timer) }
}
for (let i = 0; i < Number(process.argv[3] || 5); i++) {
  await ex('keep = 99')
  const t0 = Date.now()
  const a = await ex('while True: pass', 2000)
  const t1 = Date.now()
  const b = await ex('keep')
  console.log(i, a, t1 - t0, '->', Date.now() - t1, 'ms', b)
}
