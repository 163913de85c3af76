// A loopback reverse proxy that adds `Authorization: Bearer $BRIG_API_KEY` to every request
// and forwards it, otherwise untouched (method, path, Host, Origin, body; the response is
// streamed back as it arrives, so SSE keeps its timing).
// The conformance runner (@modelcontextprotocol/conformance) has no option to send a header,
// and brig's /mcp requires the API key.
//   node auth-proxy.mjs <upstream base URL>   -> prints "listening <port>" on stdout
import http from 'node:http'

const upstream = new URL(process.argv[2] ?? process.env.BRIG_URL)
const key = process.env.BRIG_API_KEY
if (!key) {
  console.error('auth-proxy: BRIG_API_KEY is not set')
  process.exit(2)
}

const server = http.createServer((req, res) => {
  const headers = { ...req.headers, authorization: `Bearer ${key}` }
  const out = http.request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
    (up) => {
      res.writeHead(up.statusCode, up.headers)
      up.pipe(res)
    },
  )
  out.on('error', (e) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' })
    res.end(`auth-proxy: ${e.message}\n`)
  })
  req.pipe(out)
})
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`))
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0))
