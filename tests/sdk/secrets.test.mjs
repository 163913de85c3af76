// Secrets through the official e2b SDK (Secret, e2b-next.md 2.4) against a real `brig serve`:
// created, read, listed, updated and destroyed; the value is never returned, never logged; and
// a value that a sandbox prints anyway (here: given to it on purpose) comes out redacted, from
// commands and from code cells. Run by tests/sdk/run.sh (E2B_API_KEY, E2B_API_URL,
// E2B_SANDBOX_URL, BRIG_LOG: the daemon's log file).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { Secret, Sandbox, SecretNotFoundError } from 'e2b'
import { Sandbox as CodeSandbox } from '@e2b/code-interpreter'

const api = process.env.E2B_API_URL
const key = process.env.E2B_API_KEY
const tag = randomBytes(4).toString('hex')
const value = `sk-test-${randomBytes(16).toString('hex')}`
const made = []
const sandboxes = []

after(async () => {
  for (const id of made) await Secret.destroy(id).catch(() => {})
  for (const s of sandboxes) await s.kill().catch(() => {})
})

async function raw(method, path, body) {
  const r = await fetch(api + path, {
    method, headers: { 'X-API-KEY': key, 'Content-Type': 'application/json' }, body: body === undefined ? undefined : body,
  })
  return { status: r.status, text: await r.text(), headers: r.headers }
}

test('Secret: create, getInfo, exists, list, update, destroy; the value never comes back', async () => {
  const name = `Brig-Test-${tag}`
  const s = await Secret.create(name, value, { metadata: { purpose: 'test' } })
  made.push(s.secretId)
  assert.equal(s.name, name.toLowerCase())
  assert.match(s.secretId, /^sec_/)
  assert.equal(s.version, 1)
  assert.deepEqual(s.metadata, { purpose: 'test' })
  assert.ok(s.createdAt instanceof Date && !isNaN(s.createdAt))
  const byName = await Secret.getInfo(name.toUpperCase())
  assert.equal(byName.secretId, s.secretId)
  assert.equal(await Secret.exists(s.secretId), true)
  assert.equal(await Secret.exists(`missing-${tag}`), false)
  const updated = await Secret.update(s.secretId, value + '-v2')
  assert.equal(updated.version, 2)
  assert.deepEqual(updated.metadata, { purpose: 'test' })
  // Listed, page by page.
  const second = await Secret.create(`brig-test-${tag}-b`, 'another-value-42')
  made.push(second.secretId)
  const seen = new Set()
  const pages = Secret.list({ limit: 1 })
  for (let i = 0; i < 100 && pages.hasNext; i++) for (const x of await pages.nextItems()) seen.add(x.secretId)
  assert.ok(seen.has(s.secretId) && seen.has(second.secretId))
  // No read surface carries the value, and none may be cached.
  for (const path of ['/secrets', `/secrets/${s.secretId}`, `/secrets/${name}`]) {
    const r = await raw('GET', path)
    assert.equal(r.status, 200)
    assert.ok(!r.text.includes(value), `${path} returned the value`)
    assert.equal(r.headers.get('cache-control'), 'no-store')
  }
  assert.equal(await Secret.destroy(second.secretId), true)
  assert.equal(await Secret.destroy(second.secretId), false)
  await assert.rejects(Secret.getInfo(second.secretId), SecretNotFoundError)
  await assert.rejects(Secret.update(`missing-${tag}`, 'x-value-1234'), SecretNotFoundError)
})

test('Secret: bad names, a taken name and bad bodies are clear 4xx answers', async () => {
  await assert.rejects(Secret.create('sec_reserved', 'v-123456'), /reserved/)
  await assert.rejects(Secret.create('has space', 'v-123456'), /letters, digits/)
  const s = await Secret.create(`dup-${tag}`, 'dup-value-123')
  made.push(s.secretId)
  const dup = await raw('POST', '/secrets', JSON.stringify({ name: `DUP-${tag}`, value: 'x-123456' }))
  assert.equal(dup.status, 409)
  for (const body of ['{', '[]', '{"name":"ok"}', '{"name":"ok","value":7}', '{"name":"ok","value":""}',
    '{"name":"ok","value":"v","metadata":[1]}', '{"name":"ok","value":"v","metadata":{"k":1}}',
    JSON.stringify({ name: 'big', value: 'v'.repeat(65537) })]) {
    const r = await raw('POST', '/secrets', body)
    assert.equal(r.status, 400, `${body.slice(0, 60)} -> ${r.status} ${r.text}`)
    assert.match(JSON.parse(r.text).message, /\w/)
  }
  assert.equal((await raw('GET', '/secrets?limit=x')).status, 400)
  assert.equal((await raw('PUT', `/secrets/${s.secretId}`, '{}')).status, 404)
  assert.equal((await fetch(api + '/secrets')).status, 401)
})

test('a secret\'s value printed in a sandbox comes out redacted, even when written in pieces', async () => {
  const s = await Secret.create(`redact-${tag}`, value)
  made.push(s.secretId)
  const sbx = await Sandbox.create({ timeoutMs: 120_000 })
  sandboxes.push(sbx)
  // Given to the process on purpose: brig never puts a secret into a sandbox itself.
  const whole = await sbx.commands.run('printf "token=%s\\n" "$V"; printf "%s" "$V" >&2', { envs: { V: value } })
  assert.equal(whole.stdout, 'token=[redacted]\n')
  assert.equal(whole.stderr, '[redacted]')
  // Two writes 200 ms apart, the value cut in the middle: still one match.
  const split = await sbx.commands.run(
    `python3 -c "import os,sys,time; v=os.environ['V']; sys.stdout.write('a '+v[:9]); sys.stdout.flush(); time.sleep(0.2); sys.stdout.write(v[9:]+' b')"`,
    { envs: { V: value } })
  assert.equal(split.stdout, 'a [redacted] b')
  // A near miss is printed as it is (held back at most until the stream ends).
  const near = await sbx.commands.run('printf "%s" "${V%?}"', { envs: { V: value } })
  assert.equal(near.stdout, value.slice(0, -1))
  // Streamed to a callback too.
  let streamed = ''
  await sbx.commands.run('echo "$V"', { envs: { V: value }, onStdout: (d) => (streamed += d) })
  assert.equal(streamed, '[redacted]\n')
})

test('a secret\'s value in a code cell\'s output comes out redacted', async () => {
  const s = await Secret.create(`cell-${tag}`, value + '-cell')
  made.push(s.secretId)
  const sbx = await CodeSandbox.create({ timeoutMs: 120_000 })
  sandboxes.push(sbx)
  const ex = await sbx.runCode(`v = ${JSON.stringify(value + '-cell')}\nprint("x", v)\nv`)
  assert.equal(ex.error, undefined)
  assert.equal(ex.logs.stdout.join(''), 'x [redacted]\n')
  assert.match(ex.text, /^'?\[redacted\]'?$/)
})

test('the daemon never logs a secret\'s value', async () => {
  const log = readFileSync(process.env.BRIG_LOG, 'utf8')
  assert.ok(log.includes('/secrets'), 'control: the log has the secrets requests')
  assert.ok(!log.includes(value), 'the value is in the daemon log')
})
