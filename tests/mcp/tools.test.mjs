// Each MCP tool's happy path and error path, over both transports (`brig mcp` on stdio and
// POST /mcp), with the official MCP TypeScript SDK client (pinned 1.32.2): run_code (charts as
// PNG image content, exceptions, ephemeral and kept sandboxes), download_files / upload_files
// (symlinks kept as links, tar-slip refused), progress and cancellation of a running command.
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { request } from 'node:http'
import zlib from 'node:zlib'
import { connect, transports, processes, rawCall, readTar, readZip, tarEntry, targz, sleep } from './helpers.mjs'

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
const ANSI = /\x1b\[/
const text = (r) => r.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n')

for (const transport of transports) {
  describe(`${transport} transport`, () => {
    let client // the transport under test
    let base // a base sandbox shared by the tests below
    const call = (name, args, opts) => client.callTool({ name, arguments: args }, undefined, opts)

    before(async () => {
      client = await connect(transport)
      const created = await call('create_sandbox', { template: 'base', timeout: 600, metadata: { suite: 'mcp-tools', transport } })
      assert.ok(!created.isError, JSON.stringify(created))
      base = created.structuredContent.sandbox_id
    })
    after(async () => {
      if (base) await rawCall('kill_sandbox', { sandbox_id: base })
      await client?.close()
    })

    test('create_sandbox: happy path and unknown template', async () => {
      const ok = await call('create_sandbox', { template: 'base', timeout: 60, env: { GREETING: 'hi' } })
      assert.ok(!ok.isError)
      const { sandbox_id: id, template, status, ends_at } = ok.structuredContent
      assert.match(id, /^[a-z0-9]{20}$/)
      assert.equal(template, 'base')
      assert.equal(status, 'running')
      assert.ok(Date.parse(ends_at) > Date.now() + 30_000, ends_at)
      const env = await call('run_command', { sandbox_id: id, command: 'echo $GREETING' })
      assert.equal(env.structuredContent.stdout, 'hi\n')
      assert.equal((await call('kill_sandbox', { sandbox_id: id })).structuredContent.killed, true)
      const bad = await call('create_sandbox', { template: 'no-such-template' })
      assert.equal(bad.isError, true)
      assert.match(text(bad), /no-such-template.*not found/)
    })

    // The network options are the daemon's egress policy: shown by a connection the firewall
    // refuses at once (ECONNREFUSED, 111) to an address a default sandbox would try to reach.
    test('create_sandbox: network options (allow_internet_access, allow_out, deny_out)', async () => {
      const connect = async (id) => (await call('run_command', { sandbox_id: id, command:
        `python3 -c "import socket;s=socket.socket();s.settimeout(3);print(s.connect_ex(('198.51.100.10',80)))"` })).structuredContent.stdout.trim()
      for (const args of [{ allow_internet_access: false }, { deny_out: ['198.51.100.0/24'] }]) {
        const c = await call('create_sandbox', { template: 'base', timeout: 60, ...args })
        assert.ok(!c.isError, JSON.stringify(c))
        const id = c.structuredContent.sandbox_id
        assert.equal(await connect(id), '111', JSON.stringify(args))
        await call('kill_sandbox', { sandbox_id: id })
      }
      const bad = await call('create_sandbox', { allow_out: ['pypi.org'] })
      assert.equal(bad.isError, true)
      assert.match(text(bad), /ALL_TRAFFIC/)
      const typed = await call('create_sandbox', { allow_out: 'pypi.org' })
      assert.equal(typed.isError, true)
    })

    test('list_sandboxes: metadata filter; a badly typed filter is a tool error', async () => {
      const mine = await call('list_sandboxes', { metadata: { suite: 'mcp-tools', transport } })
      assert.deepEqual(mine.structuredContent.sandboxes.map((s) => s.sandbox_id), [base])
      assert.equal(mine.structuredContent.sandboxes[0].metadata.transport, transport)
      const none = await call('list_sandboxes', { metadata: { suite: 'no-such-suite' } })
      assert.deepEqual(none.structuredContent.sandboxes, [])
      const bad = await call('list_sandboxes', { metadata: { n: 1 } })
      assert.equal(bad.isError, true)
    })

    test('list_sandboxes: status and resource usage (CPU %, memory in use and its limit)', async () => {
      // Two busy seconds, and 50 MB held by a shell (a detached one, still running when listed).
      await call('run_command', {
        sandbox_id: base,
        command: 'setsid sh -c \'x=$(head -c 50M /dev/zero | tr "\\0" a); sleep 25\' </dev/null >/dev/null 2>&1 & ' +
          'sleep 1; timeout 2 sh -c "while :; do :; done"; true',
      })
      const r = await call('list_sandboxes', { metadata: { suite: 'mcp-tools', transport } })
      const [s] = r.structuredContent.sandboxes
      assert.equal(s.status, 'running')
      assert.ok(s.usage.cpu_used_pct > 10 && s.usage.cpu_used_pct <= 100, JSON.stringify(s.usage))
      assert.ok(s.usage.memory_used_mb >= 50 && s.usage.memory_used_mb < s.usage.memory_limit_mb, JSON.stringify(s.usage))
      assert.ok(s.usage.cpu_count >= 1)
      assert.match(text(r), new RegExp(`\\| ${base} \\| base \\| running \\| [0-9.]+% of \\d+ \\| [0-9.]+ / \\d+ MB \\|`))
    })

    test('set_sandbox_timeout and kill_sandbox: unknown sandbox, bad id', async () => {
      const ok = await call('set_sandbox_timeout', { sandbox_id: base, seconds: 600 })
      assert.deepEqual(ok.structuredContent, { sandbox_id: base, seconds: 600 })
      const gone = await call('set_sandbox_timeout', { sandbox_id: 'zzzzzzzzzzzzzzzzzzzz', seconds: 10 })
      assert.equal(gone.isError, true)
      assert.match(text(gone), /not found/)
      const badId = await call('kill_sandbox', { sandbox_id: '../../etc' })
      assert.equal(badId.isError, true)
      assert.match(text(badId), /sandbox_id must be 20 chars/)
      const noSecs = await call('set_sandbox_timeout', { sandbox_id: base })
      assert.equal(noSecs.isError, true)
      assert.match(text(noSecs), /invalid arguments/)
    })

    test('pause_sandbox and resume_sandbox: commands wait for the resume; twice is fine; unknown sandbox', async () => {
      const paused = await call('pause_sandbox', { sandbox_id: base })
      assert.deepEqual(paused.structuredContent, { paused: true })
      assert.match(text(await call('pause_sandbox', { sandbox_id: base })), /already paused/)
      const refused = await call('run_command', { sandbox_id: base, command: 'echo no' })
      assert.equal(refused.isError, true)
      assert.match(text(refused), /paused/)
      assert.match(text(await call('list_sandboxes', {})), new RegExp(`\\| ${base} \\| base \\| paused \\|`))
      const resumed = await call('resume_sandbox', { sandbox_id: base })
      assert.deepEqual(resumed.structuredContent, { resumed: true })
      assert.match(text(await call('resume_sandbox', { sandbox_id: base })), /already running/)
      assert.match(text(await call('run_command', { sandbox_id: base, command: 'echo back' })), /back/)
      // keep_memory false: its processes stop, its files stay; resume boots it again on them.
      await call('run_command', { sandbox_id: base, command: `echo ${transport} > /home/user/mcp-kept.txt` })
      const toDisk = await call('pause_sandbox', { sandbox_id: base, keep_memory: false })
      assert.deepEqual(toDisk.structuredContent, { paused: true })
      assert.deepEqual((await call('resume_sandbox', { sandbox_id: base })).structuredContent, { resumed: true })
      assert.match(text(await call('run_command', { sandbox_id: base, command: 'cat /home/user/mcp-kept.txt' })), new RegExp(transport))
      // reboot: a memory pause dropped on request.
      assert.deepEqual((await call('pause_sandbox', { sandbox_id: base })).structuredContent, { paused: true })
      assert.deepEqual((await call('resume_sandbox', { sandbox_id: base, reboot: true })).structuredContent, { resumed: true })
      assert.match(text(await call('run_command', { sandbox_id: base, command: 'cat /home/user/mcp-kept.txt' })), new RegExp(transport))
      const badFlag = await call('pause_sandbox', { sandbox_id: base, keep_memory: 'no' })
      assert.equal(badFlag.isError, true)
      const gone = await call('pause_sandbox', { sandbox_id: 'zzzzzzzzzzzzzzzzzzzz' })
      assert.equal(gone.isError, true)
    })

    test('get_sandbox_url: the URL reaches a server started in the sandbox; bad port, unknown sandbox', async () => {
      const port = transport === 'stdio' ? 3100 : 3101
      await call('run_command', { sandbox_id: base, command: `cd /tmp && nohup python3 -m http.server ${port} >/dev/null 2>&1 &` })
      const r = await call('get_sandbox_url', { sandbox_id: base, port })
      assert.ok(!r.isError, JSON.stringify(r))
      const { url, host, traffic_token_required } = r.structuredContent
      const daemon = new URL(process.env.BRIG_URL)
      assert.equal(host, `${port}-${base}.localhost:${daemon.port}`)
      assert.equal(url, `http://${host}`)
      assert.equal(traffic_token_required, false)
      assert.match(text(r), new RegExp(`is at ${url.replace(/\./g, '\\.')}`))
      // The URL's host is loopback (*.localhost); Node does not resolve it, so the Host is sent.
      const get = () => new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: daemon.port, path: '/', headers: { Host: host } }, (res) => {
          let data = ''
          res.on('data', (c) => (data += c))
          res.on('end', () => resolve({ status: res.statusCode, body: data }))
        })
        req.on('error', reject)
        req.end()
      })
      let status = 0, body = ''
      for (let i = 0; i < 50 && status !== 200; i++) {
        ;({ status, body } = await get())
        if (status !== 200) await sleep(100)
      }
      assert.equal(status, 200)
      assert.match(body, /Directory listing for \//)
      for (const bad of [0, 70000, 'abc']) {
        const b = await call('get_sandbox_url', { sandbox_id: base, port: bad })
        assert.equal(b.isError, true, `port ${bad}`)
      }
      const gone = await call('get_sandbox_url', { sandbox_id: 'zzzzzzzzzzzzzzzzzzzz', port: 3000 })
      assert.equal(gone.isError, true)
      assert.match(text(gone), /not found/)
    })

    test('run_command: output, exit code, cwd/user/env, missing argument, unknown tool', async () => {
      const r = await call('run_command', { sandbox_id: base, command: 'pwd; id -un; echo $X', cwd: '/tmp', user: 'root', env: { X: 'y' } })
      assert.equal(r.structuredContent.stdout, '/tmp\nroot\ny\n')
      assert.equal(r.structuredContent.exit_code, 0)
      const failing = await call('run_command', { sandbox_id: base, command: 'echo err >&2; exit 7' })
      assert.equal(failing.isError, true)
      assert.equal(failing.structuredContent.exit_code, 7)
      assert.equal(failing.structuredContent.stderr, 'err\n')
      // A command the kernel killed for memory says so (the sandbox's limit is the template's 512 MB).
      const oom = await call('run_command', { sandbox_id: base, command: 'head -c 8G /dev/zero | tail' })
      assert.equal(oom.isError, true)
      assert.equal(oom.structuredContent.exit_code, 137)
      assert.match(text(oom), /^Exit code: 137 \(killed: out of memory/)
      const missing = await call('run_command', { sandbox_id: base })
      assert.equal(missing.isError, true)
      assert.match(text(missing), /invalid arguments.*command/)
      await assert.rejects(call('no_such_tool', {}), (e) => e.code === -32602)
    })

    test('run_command: progress notifications while a long command runs', async () => {
      const progress = []
      const started = Date.now()
      const r = await call(
        'run_command',
        { sandbox_id: base, command: 'for i in 1 2 3 4; do echo tick$i; sleep 0.4; done' },
        { onprogress: (p) => progress.push({ ...p, at: Date.now() - started }) },
      )
      assert.equal(r.structuredContent.stdout, 'tick1\ntick2\ntick3\ntick4\n')
      assert.ok(progress.length >= 3, JSON.stringify(progress))
      assert.match(progress[0].message, /tick1/)
      assert.ok(progress[0].at < 1000, `the first notification came while the command ran: ${JSON.stringify(progress)}`)
      for (let i = 1; i < progress.length; i++) assert.ok(progress[i].progress > progress[i - 1].progress)
    })

    test('run_command: cancelling the request (notifications/cancelled) kills the command', async () => {
      // A client of its own: on a transport that cannot cancel, it stays busy with the command.
      const c = transport === 'stdio' ? await connect('stdio', 'brig-tests-cancel') : client
      try {
        const running = /^(sleep 30 |\/bin\/bash -l -c sleep 30; echo done)/
        const ac = new AbortController()
        const started = Date.now()
        const pending = c.callTool(
          { name: 'run_command', arguments: { sandbox_id: base, command: 'sleep 30; echo done' } },
          undefined,
          { signal: ac.signal, timeout: 60_000 },
        )
        await sleep(700)
        assert.ok((await processes(base, running)).length >= 1, 'the command is running before the abort')
        await sleep(300)
        ac.abort('test cancels')
        await assert.rejects(pending, /test cancels/)
        let left
        for (let i = 0; i < 12; i++) {
          left = await processes(base, running)
          if (left.length === 0) break
          await sleep(250)
        }
        assert.deepEqual(left, [], `the command still runs ${Date.now() - started} ms after the start (abort at ~1 s)`)
        // The transport is still usable afterwards.
        const after = await c.callTool({ name: 'run_command', arguments: { sandbox_id: base, command: 'echo alive' } })
        assert.equal(after.structuredContent.stdout, 'alive\n')
      } finally {
        if (c !== client) await c.close()
      }
    })

    test('write_file, read_file, list_files: happy paths and errors', async () => {
      const w = await call('write_file', { sandbox_id: base, path: '/home/user/w/deep/f.txt', content: 'line1\nline2\n' })
      assert.deepEqual(w.structuredContent, { path: '/home/user/w/deep/f.txt', size: 12 })
      const r = await call('read_file', { sandbox_id: base, path: '/home/user/w/deep/f.txt' })
      assert.equal(r.structuredContent.content, 'line1\nline2\n')
      assert.equal(r.structuredContent.size, 12)
      assert.match(text(r), /<untrusted-[a-z0-9]{12}>\nline1\nline2\n\n<\/untrusted-/)
      const l = await call('list_files', { sandbox_id: base, path: '/home/user/w', depth: 2 })
      assert.deepEqual(l.structuredContent.entries.map((e) => [e.path, e.type]).sort(), [
        ['/home/user/w/deep', 'dir'],
        ['/home/user/w/deep/f.txt', 'file'],
      ])
      assert.equal(l.structuredContent.truncated, false)
      const noFile = await call('read_file', { sandbox_id: base, path: '/home/user/nope.txt' })
      assert.equal(noFile.isError, true)
      assert.match(text(noFile), /not found|No such file/)
      const denied = await call('read_file', { sandbox_id: base, path: '/etc/shadow' })
      assert.equal(denied.isError, true, 'the sandbox user cannot read /etc/shadow')
      const noDir = await call('list_files', { sandbox_id: base, path: '/home/user/nope' })
      assert.equal(noDir.isError, true)
      const badWrite = await call('write_file', { sandbox_id: base, path: '/proc/nope/x', content: 'x' })
      assert.equal(badWrite.isError, true)
      const gone = await call('list_files', { sandbox_id: 'zzzzzzzzzzzzzzzzzzzz' })
      assert.equal(gone.isError, true)
    })

    test('run_code: a matplotlib chart comes back as PNG image content (ephemeral sandbox)', async () => {
      const r = await call('run_code', {
        code: 'import matplotlib\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title("squares")\nplt.show()',
      })
      assert.ok(!r.isError, JSON.stringify(r).slice(0, 2000))
      const image = r.content.find((c) => c.type === 'image')
      assert.ok(image, `an image item: ${JSON.stringify(r.content.map((c) => c.type))}`)
      assert.equal(image.mimeType, 'image/png')
      const png = Buffer.from(image.data, 'base64')
      assert.deepEqual(png.subarray(0, 8), PNG)
      assert.ok(png.length > 1000, `a real chart: ${png.length} bytes`)
      assert.match(text(r), /1 image\(s\) follow/)
      assert.ok(r.structuredContent.results.some((x) => x.formats.includes('png')), JSON.stringify(r.structuredContent.results))
    })

    test('run_code: an exception is an isError result with the error name, without colour codes', async () => {
      const r = await call('run_code', { code: 'def f(x):\n    return x / 0\n\nf(1)' })
      assert.equal(r.isError, true)
      assert.equal(r.structuredContent.error.name, 'ZeroDivisionError')
      assert.match(r.structuredContent.error.value, /division by zero/)
      assert.match(r.structuredContent.error.traceback, /ZeroDivisionError/)
      assert.doesNotMatch(r.structuredContent.error.traceback, ANSI)
      for (const c of r.content) if (c.type === 'text') assert.doesNotMatch(c.text, ANSI)
      assert.doesNotMatch(JSON.stringify(r), /\\u001b/)
      assert.match(text(r), /Error ZeroDivisionError/)
    })

    test('run_code without sandbox_id: a fresh sandbox per call, no state kept, killed afterwards', async () => {
      const first = await call('run_code', { code: 'x = 41\nprint("set")' })
      assert.ok(!first.isError, JSON.stringify(first))
      assert.equal(first.structuredContent.stdout, 'set\n')
      const second = await call('run_code', { code: 'print(x)' })
      assert.equal(second.isError, true)
      assert.equal(second.structuredContent.error.name, 'NameError')
      assert.notEqual(first.structuredContent.sandbox_id, second.structuredContent.sandbox_id)
      const live = (await call('list_sandboxes', {})).structuredContent.sandboxes.map((s) => s.sandbox_id)
      for (const r of [first, second]) assert.ok(!live.includes(r.structuredContent.sandbox_id), 'the ephemeral sandbox is gone')
    })

    test('run_code in a template without the language: an isError result naming the template to use', async () => {
      const created = await call('create_sandbox', { template: 'minimal', timeout: 120 })
      const id = created.structuredContent.sandbox_id
      try {
        const sh = await call('run_code', { sandbox_id: id, code: 'echo $((2 + 3))', language: 'bash' })
        assert.ok(!sh.isError, text(sh))
        assert.equal(sh.structuredContent.stdout, '5\n')
        const py = await call('run_code', { sandbox_id: id, code: 'print(1)' })
        assert.equal(py.isError, true)
        assert.match(text(py), /no python kernel.*code-interpreter-v1/)
      } finally {
        await call('kill_sandbox', { sandbox_id: id })
      }
    })

    test('run_code with sandbox_id: state is kept across calls in a code-interpreter-v1 sandbox', async () => {
      const created = await call('create_sandbox', { template: 'code-interpreter-v1', timeout: 300 })
      assert.ok(!created.isError, JSON.stringify(created))
      const id = created.structuredContent.sandbox_id
      try {
        const a = await call('run_code', { sandbox_id: id, code: 'import math\nx = 41' })
        assert.ok(!a.isError, JSON.stringify(a))
        assert.equal(a.structuredContent.sandbox_id, id)
        const b = await call('run_code', { sandbox_id: id, code: 'x + 1' })
        assert.equal(b.structuredContent.text, '42')
        assert.equal(b.structuredContent.execution_count, a.structuredContent.execution_count + 1)
        assert.match(text(b), /<untrusted-[a-z0-9]{12}>\n42\n<\/untrusted-/)
        const js = await call('run_code', { sandbox_id: id, code: 'console.log(6 * 7)', language: 'javascript' })
        assert.equal(js.structuredContent.stdout, '42\n')
        const live = (await call('list_sandboxes', {})).structuredContent.sandboxes.map((s) => s.sandbox_id)
        assert.ok(live.includes(id), 'a given sandbox is not killed by run_code')
      } finally {
        await call('kill_sandbox', { sandbox_id: id })
      }
      // The default template runs python cells too (a template without the language: the test
      // above); a sandbox that does not exist is an error.
      const onBase = await call('run_code', { sandbox_id: base, code: '20 + 1' })
      assert.ok(!onBase.isError, text(onBase))
      assert.equal(onBase.structuredContent.text, '21')
      const gone = await call('run_code', { sandbox_id: id, code: '1' })
      assert.equal(gone.isError, true)
    })

    test('run_code: cancelling a running cell interrupts it; the kernel and its state stay', async () => {
      const created = await call('create_sandbox', { template: 'code-interpreter-v1', timeout: 300 })
      const id = created.structuredContent.sandbox_id
      const c = transport === 'stdio' ? await connect('stdio', 'brig-tests-cancel-cell') : client
      try {
        await c.callTool({ name: 'run_code', arguments: { sandbox_id: id, code: 'kept = 41' } })
        const ac = new AbortController()
        const pending = c.callTool(
          { name: 'run_code', arguments: { sandbox_id: id, code: 'import time\nfor i in range(300):\n    time.sleep(0.1)\nkept = 0' } },
          undefined,
          { signal: ac.signal, timeout: 60_000 },
        )
        await sleep(1000)
        ac.abort('test cancels the cell')
        await assert.rejects(pending, /test cancels the cell/)
        // The kernel is free again within a few seconds (it was interrupted, not left running
        // for 30 s), and what the cell did not reach is unchanged.
        const started = Date.now()
        const next = await rawCall('run_code', { sandbox_id: id, code: 'kept + 1' })
        assert.ok(Date.now() - started < 5000, `the next cell waited ${Date.now() - started} ms`)
        assert.equal(next.structuredContent.text, '42')
      } finally {
        if (c !== client) await c.close()
        await rawCall('kill_sandbox', { sandbox_id: id })
      }
    })

    test('download_files: a symlink to /etc/shadow is stored as a link, never followed (tar.gz)', async () => {
      const prep = await call('run_command', {
        sandbox_id: base,
        command: 'mkdir -p /home/user/d && echo regular > /home/user/d/file.txt && ln -s /etc/shadow /home/user/d/shadow',
      })
      assert.equal(prep.structuredContent.exit_code, 0, JSON.stringify(prep))
      const r = await call('download_files', { sandbox_id: base, path: '/home/user/d' })
      assert.ok(!r.isError, JSON.stringify(r))
      const res = r.content.find((c) => c.type === 'resource')
      assert.ok(res, JSON.stringify(r.content.map((c) => c.type)))
      assert.equal(res.resource.mimeType, 'application/gzip')
      assert.equal(res.resource.uri, r.structuredContent.uri)
      const gz = Buffer.from(res.resource.blob, 'base64')
      assert.equal(gz.length, r.structuredContent.archive_bytes)
      const tar = zlib.gunzipSync(gz)
      const entries = readTar(tar)
      const byName = Object.fromEntries(entries.map((e) => [e.name.replace(/\/$/, ''), e]))
      assert.deepEqual(Object.keys(byName).sort(), ['d', 'd/file.txt', 'd/shadow'])
      assert.equal(byName['d'].type, '5')
      assert.equal(byName['d/file.txt'].type, '0')
      assert.equal(byName['d/file.txt'].data.toString(), 'regular\n')
      assert.equal(byName['d/shadow'].type, '2', 'a symlink entry')
      assert.equal(byName['d/shadow'].linkname, '/etc/shadow')
      assert.equal(byName['d/shadow'].size, 0)
      // Nothing of the host's /etc/shadow (or of the sandbox's) is in the archive.
      const hostShadow = readFileSync('/etc/shadow', 'utf8').split('\n').filter((l) => l.length > 0)
      assert.ok(hostShadow.length > 0)
      const all = tar.toString('latin1')
      for (const line of hostShadow) assert.ok(!all.includes(line), `a line of the host's /etc/shadow is in the archive`)
      for (const line of hostShadow) assert.ok(!all.includes(line.split(':').slice(0, 2).join(':') + ':'), 'no user:hash pair')
      // The summary counts what the archive holds.
      assert.equal(r.structuredContent.entries, entries.length, `entries in ${JSON.stringify(r.structuredContent)}`)
      assert.equal(r.structuredContent.bytes, 'regular\n'.length, `bytes in ${JSON.stringify(r.structuredContent)}`)
    })

    test('download_files: zip, and a missing path', async () => {
      const r = await call('download_files', { sandbox_id: base, path: '/home/user/d', format: 'zip' })
      assert.ok(!r.isError, JSON.stringify(r))
      const res = r.content.find((c) => c.type === 'resource')
      assert.equal(res.resource.mimeType, 'application/zip')
      assert.match(res.resource.uri, /\.zip$/)
      const zip = Buffer.from(res.resource.blob, 'base64')
      assert.equal(zip.readUInt32LE(0), 0x04034b50, 'PK\\3\\4')
      const entries = readZip(zip)
      const byName = Object.fromEntries(entries.map((e) => [e.name.replace(/\/$/, ''), e]))
      assert.deepEqual(Object.keys(byName).sort(), ['d', 'd/file.txt', 'd/shadow'])
      assert.equal(byName['d/file.txt'].data.toString(), 'regular\n')
      assert.equal(byName['d/shadow'].mode & 0o170000, 0o120000, 'a symlink entry')
      assert.equal(byName['d/shadow'].data.toString(), '/etc/shadow', 'a zip symlink holds its target as data')
      const hostShadow = readFileSync('/etc/shadow', 'utf8').split('\n').filter((l) => l.length > 0)
      const all = Buffer.concat([zip, ...entries.map((e) => e.data ?? Buffer.alloc(0))]).toString('latin1')
      for (const line of hostShadow) assert.ok(!all.includes(line), `a line of the host's /etc/shadow is in the zip`)
      const missing = await call('download_files', { sandbox_id: base, path: '/home/user/no-such-dir' })
      assert.equal(missing.isError, true)
      assert.match(text(missing), /No such file|not found/)
      const badFormat = await call('download_files', { sandbox_id: base, path: '/home/user/d', format: 'rar' })
      assert.equal(badFormat.isError, true)
    })

    test('upload_files: a good tar.gz is unpacked and readable', async () => {
      const archive = targz([tarEntry('pkg/', '', { type: '5' }), tarEntry('pkg/hello.txt', 'hello from a tar\n'), tarEntry('top.txt', 'top\n')])
      const r = await call('upload_files', { sandbox_id: base, path: '/home/user/up', archive })
      assert.ok(!r.isError, JSON.stringify(r))
      assert.equal(r.structuredContent.path, '/home/user/up')
      assert.equal(r.structuredContent.entries, 3)
      assert.equal(r.structuredContent.bytes, 'hello from a tar\n'.length + 'top\n'.length)
      const read = await call('read_file', { sandbox_id: base, path: '/home/user/up/pkg/hello.txt' })
      assert.equal(read.structuredContent.content, 'hello from a tar\n')
      const owner = await call('run_command', { sandbox_id: base, command: 'stat -c %U /home/user/up/top.txt' })
      assert.equal(owner.structuredContent.stdout, 'user\n')
    })

    test('upload_files: tar-slip archives are refused before anything is written', async () => {
      const dotdot = await call('upload_files', {
        sandbox_id: base,
        path: '/home/user/slip1',
        archive: targz([tarEntry('ok.txt', 'fine'), tarEntry('../evil.txt', 'evil')]),
      })
      assert.equal(dotdot.isError, true)
      assert.match(text(dotdot), /would land outside/)
      const absolute = await call('upload_files', { sandbox_id: base, path: '/home/user/slip2', archive: targz([tarEntry('/tmp/evil.txt', 'evil')]) })
      assert.equal(absolute.isError, true)
      assert.match(text(absolute), /absolute path/)
      const deep = await call('upload_files', { sandbox_id: base, path: '/home/user/slip3', archive: targz([tarEntry('a/../../evil.txt', 'evil')]) })
      assert.equal(deep.isError, true)
      const viaLink = await call('upload_files', {
        sandbox_id: base,
        path: '/home/user/slip4',
        archive: targz([tarEntry('link', '', { type: '2', linkname: '/home' }), tarEntry('link/evil.txt', 'evil')]),
      })
      assert.equal(viaLink.isError, true, 'a path through a symlink of the archive')
      const ls = await call('run_command', {
        sandbox_id: base,
        command: 'ls -d /home/user/evil.txt /home/evil.txt /tmp/evil.txt /evil.txt /home/user/slip1 /home/user/slip2 /home/user/slip3 /home/user/slip4 2>&1; true',
      })
      const lines = ls.structuredContent.stdout.trim().split('\n')
      assert.equal(lines.length, 8, ls.structuredContent.stdout)
      for (const l of lines) assert.match(l, /No such file or directory/)
      const garbage = await call('upload_files', { sandbox_id: base, path: '/home/user/g', archive: 'not base64!!' })
      assert.equal(garbage.isError, true)
      const notGzip = await call('upload_files', { sandbox_id: base, path: '/home/user/g', archive: Buffer.from('plain text').toString('base64') })
      assert.equal(notGzip.isError, true)
    })
  })
}
