// The one test that leaves this machine (issue 13): `npm view` of a small package from inside a
// sandbox, through the npm registry this machine reaches, with the internet allowed, denied,
// and allowed for the registry's name only (brig egress reads the TLS SNI and dials the name).
// Opt-in, since every other test here reaches only this machine: BRIG_TEST_REGISTRY=1
// tests/sdk/run.sh build/src/brig (or this file alone with BRIG_BIN and BRIG_STATE), as root.
// Its own daemon, with the host's DNS upstream (the default).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'

const skip = process.env.BRIG_TEST_REGISTRY !== '1' && 'opt-in: BRIG_TEST_REGISTRY=1 (reaches registry.npmjs.org)'
const brig = process.env.BRIG_BIN
const state = process.env.BRIG_STATE
const port = 20000 + Math.floor(Math.random() * 20000)
const url = `http://127.0.0.1:${port}`
const { Sandbox, CommandExitError, ALL_TRAFFIC } = await import('e2b')
const opts = skip ? {} : { apiKey: readFileSync(`${state}/api-key`, 'utf8').trim(), apiUrl: url, sandboxUrl: url }
const REGISTRY = 'registry.npmjs.org'
// One try, bounded: a denied request fails in seconds, not after npm's retries.
const VIEW = `npm view is-number version --registry https://${REGISTRY}/ --fetch-retries 0 --fetch-timeout 10000`

let daemon
let log = ''
const created = []

before(async () => {
  if (skip) return
  daemon = spawn(brig, ['--state-dir', state, '--log-level', 'info', 'serve', '--listen', `127.0.0.1:${port}`, '--pool', '0'],
    { stdio: ['ignore', 'ignore', 'pipe'] })
  daemon.stderr.on('data', (c) => (log = (log + c).slice(-100_000)))
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(url + '/health')).ok) return
    } catch {}
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error('daemon did not start: ' + log)
})

after(async () => {
  if (skip) return
  for (const s of created) await s.kill().catch(() => {})
  if (daemon.exitCode === null) await new Promise((r) => (daemon.on('exit', r), daemon.kill('SIGTERM')))
})

async function view(network) {
  const s = await Sandbox.create({ ...opts, timeoutMs: 120_000, ...network })
  created.push(s)
  return s.commands.run(VIEW, { timeoutMs: 60_000 }).then((r) => r.stdout.trim(), (e) => e)
}

test('npm view works from a sandbox with the internet allowed', { skip }, async () => {
  const got = await view({ allowInternetAccess: true })
  assert.match(String(got.stderr ?? got), /^\d+\.\d+\.\d+$/, log.slice(-3000))
})

test('npm view fails from a sandbox with the internet denied', { skip }, async () => {
  const got = await view({ allowInternetAccess: false })
  assert.ok(got instanceof CommandExitError, `expected a failure, got ${got}`)
})

test('npm view works with only the registry allowed by name, and fails with another name allowed', { skip }, async () => {
  const allowed = await view({ network: { allowOut: [REGISTRY], denyOut: [ALL_TRAFFIC] } })
  assert.match(String(allowed.stderr ?? allowed), /^\d+\.\d+\.\d+$/, log.slice(-3000))
  const other = await view({ network: { allowOut: ['example.com'], denyOut: [ALL_TRAFFIC] } })
  assert.ok(other instanceof CommandExitError, `expected a failure, got ${other}`)
  assert.match(log, new RegExp(`${REGISTRY.replace(/\./g, '\\.')}`), 'brig egress logged its decisions on the name')
})
