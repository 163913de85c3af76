// `brig sandbox ...` and `brig files ...` as a client of the running daemon.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync, readFileSync, mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'

const brig = process.env.BRIG_BIN
const env = { ...process.env, BRIG_URL: process.env.E2B_API_URL, BRIG_API_KEY: process.env.E2B_API_KEY }
const run = (...args) => {
  const r = spawnSync(brig, args, { env, encoding: 'utf8' })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

test('brig sandbox and brig files against brig serve', async () => {
  const created = run('sandbox', 'create', '-m', 'via=cli', '-e', 'GREETING=hi')
  assert.equal(created.code, 0, created.err)
  const id = created.out.trim()
  assert.match(id, /^[a-z0-9]{20}$/)
  assert.match(run('sandbox', 'list').out, new RegExp(`${id} .*via=cli`))
  const exec = run('sandbox', 'exec', id, '--', 'sh', '-c', 'echo $GREETING; echo oops >&2; exit 5')
  assert.equal(exec.code, 5)
  assert.equal(exec.out, 'hi\n')
  assert.equal(exec.err, 'oops\n')
  assert.equal(run('sandbox', 'exec', '-u', 'root', id, '--', 'id', '-u').out, '0\n')
  const dir = mkdtempSync(join(tmpdir(), 'brig-cli-'))
  writeFileSync(join(dir, 'in.txt'), 'payload\n')
  assert.equal(run('files', 'put', id, join(dir, 'in.txt'), '/home/user/in.txt').code, 0)
  assert.equal(run('files', 'cat', id, '/home/user/in.txt').out, 'payload\n')
  assert.match(run('files', 'ls', id, '/home/user').out, /\/home\/user\/in\.txt/)
  assert.equal(run('files', 'get', id, '/home/user/in.txt', join(dir, 'out.txt')).code, 0)
  assert.equal(readFileSync(join(dir, 'out.txt'), 'utf8'), 'payload\n')
  assert.equal(run('sandbox', 'timeout', id, '60').code, 0)
  // Paused: listed so, commands refused; resumed: as it was.
  assert.equal(run('sandbox', 'pause', id).code, 0)
  assert.match(run('sandbox', 'pause', id).err, /already paused/)
  assert.match(run('sandbox', 'list').out, new RegExp(`${id} .*paused`))
  assert.notEqual(run('sandbox', 'exec', id, '--', 'true').code, 0)
  assert.equal(run('sandbox', 'resume', id).code, 0)
  assert.equal(run('sandbox', 'exec', id, '--', 'cat', '/home/user/in.txt').out, 'payload\n')
  // Paused to its disk: its processes stop; resume boots it again on the disk, files kept.
  assert.match(run('sandbox', 'pause', '--disk-only', id).out, /its disk is kept/)
  assert.match(run('sandbox', 'list').out, new RegExp(`${id} .*paused`))
  assert.equal(run('sandbox', 'resume', id).code, 0)
  assert.equal(run('sandbox', 'exec', id, '--', 'cat', '/home/user/in.txt').out, 'payload\n')
  // A memory pause dropped on request: --reboot.
  assert.equal(run('sandbox', 'pause', id).code, 0)
  assert.equal(run('sandbox', 'resume', '--reboot', id).code, 0)
  assert.equal(run('sandbox', 'exec', id, '--', 'cat', '/home/user/in.txt').out, 'payload\n')
  assert.doesNotMatch(run('sandbox', 'info', id).out, /envdAccessToken/)
  // Its log: the lifecycle and the processes (pid, exit code), never their output.
  const log = run('sandbox', 'logs', id)
  assert.equal(log.code, 0, log.err)
  assert.match(log.out, /^\S+Z info Sandbox created .*template=base/m)
  assert.match(log.out, /warn Process ended .*exit_code=5/)
  assert.match(log.out, /info Timeout set .*timeout_s=60/)
  assert.match(log.out, /info Sandbox paused[^]*info Sandbox resumed/)
  assert.match(log.out, /info Sandbox paused .*memory=dropped[^]*info Sandbox booted again on its disk/)
  assert.match(log.out, /Process started .*cmd=sh -c echo \$GREETING; echo oops >&2; exit 5/)  // the command line, not its output:
  assert.doesNotMatch(log.out, /^hi$|payload/m)
  assert.equal(run('sandbox', 'logs', '--level', 'warn', id).out.trim().split('\n').length, 1)
  assert.match(run('sandbox', 'logs', '--level', 'loud', id).err, /level must be one of/)
  // --follow ends by itself when the sandbox does.
  const follow = spawn(brig, ['sandbox', 'logs', '-f', id], { env })
  let followed = ''
  follow.stdout.on('data', (d) => (followed += d))
  const followEnd = new Promise((r) => follow.on('exit', r))
  await new Promise((r) => setTimeout(r, 700))
  assert.equal(run('sandbox', 'kill', id).code, 0)
  const code = await Promise.race([followEnd, new Promise((r) => setTimeout(() => r('still following after 10 s'), 10_000))])
  if (code !== 0) follow.kill()
  assert.equal(code, 0)
  assert.match(followed, /Sandbox created[^]*Sandbox killed\n$/)
  const again = run('sandbox', 'kill', id)
  assert.notEqual(again.code, 0)
  assert.match(again.err, /not found/)
  const unreachable = spawnSync(brig, ['sandbox', 'list'], { env: { ...env, BRIG_URL: 'http://127.0.0.1:1' }, encoding: 'utf8' })
  assert.notEqual(unreachable.status, 0)
  assert.match(unreachable.stderr, /brig serve/)
})

test('the template as a positional, global options after the verb, and list with state and usage', () => {
  const created = run('sandbox', 'create', 'minimal', '--timeout', '120')
  assert.equal(created.code, 0, created.err)
  const id = created.out.trim()
  try {
    // A busy second, then the list shows it running, its CPU share and memory in use / limit.
    // (A shell holding 50 MB in a variable: memory in use; what is written to its disk is cache.)
    run('sandbox', 'exec', id, '--', 'sh', '-c', 'setsid sh -c \'x=$(head -c 50M /dev/zero | tr "\\0" a); sleep 30\' ' +
        '</dev/null >/dev/null 2>&1 & sleep 1; timeout 2 sh -c "while :; do :; done"; true')
    const list = run('sandbox', 'list')
    assert.equal(list.code, 0, list.err)
    assert.match(list.out.split('\n')[0], /SANDBOX ID +TEMPLATE +STATE .* CPU% +MEMORY/)
    const row = list.out.split('\n').find((l) => l.startsWith(id))
    assert.ok(row, list.out)
    const [, template, state, , , cpus, cpu, mem] = row.split(/\s+/)
    assert.equal(template, 'minimal')
    assert.equal(state, 'running')
    assert.match(cpus, /^\d+$/)
    assert.ok(Number(cpu) > 10 && Number(cpu) <= 100, row)
    assert.match(mem, /^\d+M\/512M$/)
    assert.ok(parseInt(mem) >= 50, row)  // the 50 MB the shell holds
    // --state-dir after the verb, as before it.
    const templates = run('template', 'list', '--state-dir', process.env.BRIG_STATE)
    assert.equal(templates.code, 0, templates.err)
    assert.match(templates.out, /^minimal /m)
    assert.equal(run('--state-dir', process.env.BRIG_STATE, 'template', 'list').out, templates.out)
    // Both spellings of the template at once must agree.
    const both = run('sandbox', 'create', 'minimal', '-t', 'minimal', '--timeout', '30')
    assert.equal(both.code, 0, both.err)
    run('sandbox', 'kill', both.out.trim())
  } finally {
    run('sandbox', 'kill', id)
  }
})

test('brig sandbox exec says why a command was killed', () => {
  const id = run('sandbox', 'create', 'minimal', '--timeout', '120').out.trim()
  try {
    // `tail` keeps its one endless line in memory until the sandbox's limit is reached.
    const oom = run('sandbox', 'exec', id, '--', 'sh', '-c', 'head -c 8G /dev/zero | tail')
    assert.equal(oom.code, 137)
    assert.match(oom.err, /brig: command killed: out of memory/)
    const killed = run('sandbox', 'exec', id, '--', 'sh', '-c', 'kill -9 $$')
    assert.equal(killed.code, 137)
    assert.match(killed.err, /brig: command ended by signal: killed/)
    assert.doesNotMatch(killed.err, /out of memory/)
  } finally {
    run('sandbox', 'kill', id)
  }
})

test('brig serve prints E2B_DOMAIN and mints e2b_ keys, replacing a local key of the old shape', async () => {
  const state = mkdtempSync(join(tmpdir(), 'brig-serve-'))
  writeFileSync(join(state, 'api-key'), 'brig_abcdefghij0123456789klmnopqrst0123456789\n', { mode: 0o600 })
  const port = 20000 + Math.floor(Math.random() * 20000)
  // --state-dir after the verb.
  const serve = spawn(brig, ['serve', '--state-dir', state, '--listen', `127.0.0.1:${port}`, '--pool', '0'], { env })
  let out = ''
  serve.stdout.on('data', (d) => (out += d))
  let err = ''
  serve.stderr.on('data', (d) => (err += d))
  try {
    for (let i = 0; i < 100 && !out.includes('E2B_DOMAIN'); i++) await new Promise((r) => setTimeout(r, 100))
    const key = out.match(/^export E2B_API_KEY=(.*)$/m)?.[1]
    assert.match(key ?? '', /^e2b_[0-9a-f]{40}$/, out + err)
    assert.match(out, new RegExp(`^export E2B_DOMAIN=localhost:${port}$`, 'm'))
    assert.equal(readFileSync(join(state, 'api-key'), 'utf8').trim(), key)
    const res = await fetch(`http://127.0.0.1:${port}/v2/sandboxes`, { headers: { 'X-API-KEY': key } })
    assert.equal(res.status, 200)
  } finally {
    serve.kill('SIGTERM')
    await new Promise((r) => serve.on('exit', r))
    rmSync(state, { recursive: true, force: true })
  }
})

// `brig run` with a daemon running takes one of its warm sandboxes over the API. The state dir
// given is a plain file, so a run that fell back to its own engine would fail at once (125): every
// result below came through the daemon.
test('brig run uses the running daemon, with the standalone run\'s exit codes and messages', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'brig-run-'))
  const notADir = join(dir, 'file')
  writeFileSync(notADir, '')
  const viaDaemon = (args, opts = {}) => {
    const r = spawnSync(brig, ['--state-dir', notADir, 'run', ...args], { env, encoding: 'utf8', timeout: 60_000, ...opts })
    return { code: r.status, out: r.stdout, err: r.stderr }
  }
  try {
    let r = viaDaemon(['--', 'sh', '-c', 'echo hi; echo oops >&2; exit 42'])
    assert.equal(r.code, 42, r.err)
    assert.equal(r.out, 'hi\n')
    assert.equal(r.err, 'oops\n')
    r = viaDaemon(['-i', '--', 'tr', 'a-z', 'A-Z'], { input: 'shout' })
    assert.equal(r.code, 0, r.err)
    assert.equal(r.out, 'SHOUT')
    // More stdin than one SendInput carries, and as much output back.
    const big = 'x'.repeat(3 << 20)
    r = viaDaemon(['-i', '--', 'wc', '-c'], { input: big })
    assert.equal(r.out.trim(), String(big.length), r.err)
    r = viaDaemon(['-u', 'root', '-e', 'GREETING=hello', '-w', '/tmp', '--template', 'minimal', '--', 'sh', '-c', 'echo $GREETING; id -u; pwd'])
    assert.equal(r.out, 'hello\n0\n/tmp\n', r.err)
    r = viaDaemon(['--timeout', '1s', '--', 'sleep', '30'])
    assert.equal(r.code, 124)
    assert.match(r.err, /timed out after 1s/)
    r = viaDaemon(['--template', 'minimal', '--', 'sh', '-c', 'head -c 8G /dev/zero | tail'])
    assert.equal(r.code, 137)
    assert.match(r.err, /brig: command killed: out of memory \(limit 512\.0 MiB\)/)
    r = viaDaemon(['--', 'sh', '-c', 'kill -9 $$'])
    assert.equal(r.code, 137)
    assert.doesNotMatch(r.err, /out of memory/)
    r = viaDaemon(['--', '/no/such/binary'])
    assert.equal(r.code, 127, r.err)
    r = viaDaemon(['-u', 'nobody', '--', 'true'])
    assert.equal(r.code, 125)
    r = viaDaemon(['--template', 'nosuch', '--', 'true'])
    assert.equal(r.code, 125)
    assert.match(r.err, /nosuch/)
    // Interrupted: the sandbox is killed and the exit status says by which signal.
    const child = spawn(brig, ['--state-dir', notADir, 'run', '--', 'sleep', '30'], { env })
    let err = ''
    child.stderr.on('data', (d) => (err += d))
    await new Promise((res) => setTimeout(res, 1500))
    child.kill('SIGINT')
    const code = await new Promise((res) => child.on('exit', (c) => res(c)))
    assert.equal(code, 130, err)
    const id = err.match(/sandbox ([a-z0-9]{20}) killed/)?.[1]
    assert.ok(id, err)
    assert.notEqual(run('sandbox', 'info', id).code, 0)
    // Nothing of these runs is left behind.
    assert.doesNotMatch(run('sandbox', 'list').out, /brig\.role=run/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('brig run without a reachable daemon, or with --standalone, starts its own sandbox', () => {
  const noDaemon = spawnSync(brig, ['--state-dir', process.env.BRIG_STATE, 'run', '--template', 'minimal', '--', 'echo', 'alone'],
    { env: { ...env, BRIG_URL: 'http://127.0.0.1:1' }, encoding: 'utf8', timeout: 60_000 })
  assert.equal(noDaemon.status, 0, noDaemon.stderr)
  assert.equal(noDaemon.stdout, 'alone\n')
  const standalone = spawnSync(brig, ['--state-dir', process.env.BRIG_STATE, 'run', '--standalone', '--template', 'minimal', '--', 'echo', 'own'],
    { env, encoding: 'utf8', timeout: 60_000 })
  assert.equal(standalone.status, 0, standalone.stderr)
  assert.equal(standalone.stdout, 'own\n')
})
