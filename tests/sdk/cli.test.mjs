// `brig sandbox ...` and `brig files ...` as a client of the running daemon.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { writeFileSync, readFileSync, mkdtempSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'

const brig = process.env.BRIG_BIN
const env = { ...process.env, BRIG_URL: process.env.E2B_API_URL, BRIG_API_KEY: process.env.E2B_API_KEY }
const run = (...args) => {
  const r = spawnSync(brig, args, { env, encoding: 'utf8' })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

test('brig sandbox and brig files against brig serve', () => {
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
  assert.doesNotMatch(run('sandbox', 'info', id).out, /envdAccessToken/)
  assert.equal(run('sandbox', 'kill', id).code, 0)
  const again = run('sandbox', 'kill', id)
  assert.notEqual(again.code, 0)
  assert.match(again.err, /not found/)
  const unreachable = spawnSync(brig, ['sandbox', 'list'], { env: { ...env, BRIG_URL: 'http://127.0.0.1:1' }, encoding: 'utf8' })
  assert.notEqual(unreachable.status, 0)
  assert.match(unreachable.stderr, /brig serve/)
})
