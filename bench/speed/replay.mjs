// The official SDK's own ceiling: an envd that answers from memory, so the SDK is timed with no
// brig (and almost no server) behind it. Started by speed.mjs on a loopback port; the SDK reaches
// it through Sandbox.connect(id, { debug: true, sandboxUrl }), which makes no API call.
//   POST /process.Process/Start  the Start stream brig sent for the same command, captured by
//                                curl (REPLAY_STDOUT: a file), replayed in 1 MiB writes
//   GET  /files                  REPLAY_FILE_BYTES of zeros from one buffer
//   POST /files                  reads the whole upload, answers the entry the SDK expects
// Prints "listening PORT" on stdout when ready; exits when its stdin closes.
import { createServer } from 'node:http'
import { readFileSync } from 'node:fs'

const stdout = readFileSync(process.env.REPLAY_STDOUT)
const file = Buffer.alloc(Number(process.env.REPLAY_FILE_BYTES))
const piece = 1 << 20

function send(res, buf, type) {
  res.writeHead(200, { 'Content-Type': type, 'Content-Length': buf.length })
  let off = 0
  const more = () => {
    while (off < buf.length) {
      const end = Math.min(buf.length, off + piece)
      const ok = res.write(buf.subarray(off, end))
      off = end
      if (!ok) return res.once('drain', more)
    }
    res.end()
  }
  more()
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x')
  if (req.method === 'POST' && url.pathname === '/process.Process/Start') {
    req.resume()
    req.on('end', () => send(res, stdout, 'application/connect+json'))
  } else if (req.method === 'GET' && url.pathname === '/files') {
    send(res, file, 'application/octet-stream')
  } else if (req.method === 'POST' && url.pathname === '/files') {
    req.resume()
    req.on('end', () => {
      const path = url.searchParams.get('path') || '/x'
      res.writeHead(200, { 'Content-Type': 'application/json' })
      res.end(JSON.stringify([{ name: path.split('/').pop(), type: 'file', path }]))
    })
  } else {
    res.writeHead(404).end()
  }
})
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`))
process.stdin.resume()
process.stdin.on('end', () => process.exit(0))
