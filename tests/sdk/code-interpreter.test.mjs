// The official code-interpreter SDK (@e2b/code-interpreter, pinned in package.json), unmodified,
// against a real `brig serve` and its code-interpreter-v1 template. Run by tests/sdk/run.sh, which
// starts the daemon and sets E2B_API_KEY / E2B_API_URL / E2B_SANDBOX_URL. One sandbox serves the
// whole file; the tests run one after another, each setting up the kernel state it relies on.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from '@e2b/code-interpreter'
// @e2b/code-interpreter re-uses the error classes of the e2b package it depends on.
import { InvalidArgumentError, NotFoundError, TimeoutError } from 'e2b'

let sbx
before(async () => {
  sbx = await Sandbox.create({ timeoutMs: 300_000, envs: { BRIG_CREATE_ENV: 'from-create' } })
})
after(async () => {
  await sbx?.kill().catch(() => {})
})

const stdout = (e) => e.logs.stdout.join('')
const stderr = (e) => e.logs.stderr.join('')

test('code-interpreter: state is kept across cells; execution count increases', async () => {
  const first = await sbx.runCode('x = 41')
  assert.equal(first.error, undefined)
  assert.equal(first.text, undefined)
  const second = await sbx.runCode('x + 1')
  assert.equal(second.error, undefined)
  assert.equal(second.text, '42')
  assert.equal(typeof first.executionCount, 'number')
  assert.equal(typeof second.executionCount, 'number')
  assert.ok(second.executionCount > first.executionCount, `${second.executionCount} > ${first.executionCount}`)
})

test('code-interpreter: stdout and stderr, streamed to callbacks and collected in logs', async () => {
  const out = []
  const err = []
  const e = await sbx.runCode("import sys\nprint('out1')\nprint('err1', file=sys.stderr)", {
    onStdout: (m) => out.push(m),
    onStderr: (m) => err.push(m),
  })
  assert.equal(e.error, undefined)
  assert.ok(out.some((m) => m.line.includes('out1') && m.error === false), JSON.stringify(out))
  assert.ok(err.some((m) => m.line.includes('err1') && m.error === true), JSON.stringify(err))
  assert.ok(!out.some((m) => m.line.includes('err1')), 'stderr did not leak into stdout')
  assert.ok(!err.some((m) => m.line.includes('out1')), 'stdout did not leak into stderr')
  assert.match(stdout(e), /out1/)
  assert.match(stderr(e), /err1/)
})

test('code-interpreter: a matplotlib figure comes back as a PNG', async () => {
  const e = await sbx.runCode("import matplotlib.pyplot as plt\nplt.plot([1,2,3])\nplt.title('t')")
  assert.equal(e.error, undefined, JSON.stringify(e.error))
  const withPng = e.results.find((r) => r.png)
  assert.ok(withPng, `a result with png among ${JSON.stringify(e.results.map((r) => r.formats()))}`)
  const png = Buffer.from(withPng.png, 'base64')
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
  assert.equal(png.subarray(12, 16).toString('latin1'), 'IHDR')
  const width = png.readUInt32BE(16)
  const height = png.readUInt32BE(20)
  assert.ok(width > 0 && height > 0, `${width}x${height}`)
})

test('code-interpreter: a pandas DataFrame comes back as HTML', async () => {
  const e = await sbx.runCode("import pandas as pd\npd.DataFrame({'a':[1,2],'b':[3,4]})")
  assert.equal(e.error, undefined, JSON.stringify(e.error))
  assert.ok(e.results.length >= 1)
  const r = e.results[0]
  assert.equal(r.isMainResult, true)
  assert.ok(r.html?.includes('<table'), String(r.html))
  assert.ok(r.text, 'the text/plain form is there too')
})

test('code-interpreter: an exception is an execution error with a traceback, not a throw', async () => {
  const e = await sbx.runCode('1/0')
  assert.ok(e.error, 'execution.error is set')
  assert.equal(e.error.name, 'ZeroDivisionError')
  assert.match(e.error.value, /division by zero/)
  assert.ok(e.error.traceback.includes('ZeroDivisionError'), e.error.traceback)
  assert.equal(e.results.length, 0)
})

test('code-interpreter: JavaScript cell', async () => {
  const e = await sbx.runCode('const a = [1,2,3]; a.map(x => x*2).join(",")', { language: 'js' })
  assert.equal(e.error, undefined, JSON.stringify(e.error))
  assert.ok(e.text?.includes('2,4,6'), String(e.text))
})

// The Deno kernel may publish its execute_result after its idle status; the result still counts.
test('code-interpreter: TypeScript cell with top-level await', async () => {
  const e = await sbx.runCode(
    'const v: number = await new Promise<number>(r => setTimeout(() => r(21), 10)); v * 2',
    { language: 'ts' },
  )
  assert.equal(e.error, undefined, JSON.stringify(e.error))
  assert.equal(e.text, '42')
})

test('code-interpreter: bash cells keep shell state', async () => {
  const first = await sbx.runCode('X=5; echo "val=$X"; cd /tmp', { language: 'bash' })
  assert.equal(first.error, undefined, JSON.stringify(first.error))
  assert.match(stdout(first), /val=5/)
  const second = await sbx.runCode('echo $X; pwd', { language: 'bash' })
  assert.equal(second.error, undefined, JSON.stringify(second.error))
  const lines = stdout(second).split('\n').map((l) => l.trim())
  assert.ok(lines.includes('5'), JSON.stringify(second.logs))
  assert.ok(lines.includes('/tmp'), JSON.stringify(second.logs))
})

test('code-interpreter: R cells (IRkernel) keep state and take per-run env vars', async () => {
  // IRkernel shows a cell's value as display data, not as an execute_result: it is a result,
  // but not the main one (execution.text stays empty), as with upstream.
  const shown = (e) => e.results.map((r) => r.text).join('\n')
  const first = await sbx.runCode('x <- c(1, 2, 3)\nprint("from r")\nsum(x) * 2', { language: 'r' })
  assert.equal(first.error, undefined, JSON.stringify(first.error))
  assert.match(shown(first), /\[1\] 12/)
  assert.match(stdout(first), /from r/)
  const second = await sbx.runCode('length(x)', { language: 'R' })
  assert.match(shown(second), /\[1\] 3/)
  const env = await sbx.runCode('Sys.getenv("PER_RUN_R")', { language: 'r', envs: { PER_RUN_R: 'yes-r' } })
  assert.match(shown(env), /yes-r/)
  const after = await sbx.runCode('Sys.getenv("PER_RUN_R")', { language: 'r' })
  assert.doesNotMatch(shown(after), /yes-r/)
  const err = await sbx.runCode('stop("boom")', { language: 'r' })
  assert.ok(err.error, 'an R error is an execution error')
  assert.match(err.error.value + err.error.traceback, /boom/)
})

test('code-interpreter: contexts: create, run, list, restart, remove', async () => {
  const ctx = await sbx.createCodeContext({ language: 'python', cwd: '/tmp' })
  assert.equal(typeof ctx.id, 'string')
  assert.ok(ctx.id.length > 0)
  assert.equal(ctx.language, 'python')
  assert.equal(ctx.cwd, '/tmp')

  assert.equal((await sbx.runCode('import os; os.getcwd()', { context: ctx })).text, '/tmp')
  const set = await sbx.runCode('y = 1', { context: ctx })
  assert.equal(set.error, undefined)
  assert.equal((await sbx.runCode('y', { context: ctx })).text, '1')
  // The default context does not see it.
  assert.equal((await sbx.runCode('y')).error?.name, 'NameError')

  const listed = await sbx.listCodeContexts()
  assert.ok(Array.isArray(listed))
  const mine = listed.find((c) => c.id === ctx.id)
  assert.ok(mine, JSON.stringify(listed))
  assert.equal(mine.language, 'python')
  assert.equal(mine.cwd, '/tmp')

  await sbx.restartCodeContext(ctx)
  const restarted = await sbx.runCode('y', { context: ctx })
  assert.equal(restarted.error?.name, 'NameError', JSON.stringify(restarted))
  const cwd = await sbx.runCode('import os; os.getcwd()', { context: ctx })
  assert.equal(cwd.text, '/tmp', `the restarted kernel keeps the cwd: ${JSON.stringify(cwd)}`)

  await sbx.removeCodeContext(ctx)
  assert.ok(!(await sbx.listCodeContexts()).some((c) => c.id === ctx.id))
  // requestTimeoutMs: the SDK leaves its request timer running when the response is an HTTP
  // error, which would keep this process alive for the default 60 s after the last test.
  await assert.rejects(sbx.runCode('1', { context: ctx, requestTimeoutMs: 5_000 }), (e) => {
    assert.ok(e instanceof NotFoundError || /not found/i.test(e.message), `${e.name}: ${e.message}`)
    return true
  })
})

test('code-interpreter: env vars per run, and from create', async () => {
  const withEnv = await sbx.runCode("import os; os.environ.get('PER_RUN')", { envs: { PER_RUN: 'yes' } })
  assert.equal(withEnv.error, undefined, JSON.stringify(withEnv.error))
  assert.equal(withEnv.text, 'yes')
  const without = await sbx.runCode("import os; os.environ.get('PER_RUN')")
  assert.equal(without.error, undefined, JSON.stringify(without.error))
  assert.notEqual(without.text, 'yes', 'the per-run env var does not outlive its run')
  assert.equal(without.text, undefined, JSON.stringify(without.results))
  const fromCreate = await sbx.runCode("import os; os.environ['BRIG_CREATE_ENV']")
  assert.equal(fromCreate.error, undefined, JSON.stringify(fromCreate.error))
  assert.equal(fromCreate.text, 'from-create')
})

test('code-interpreter: a timed-out cell is interrupted and the kernel keeps its state', async () => {
  assert.equal((await sbx.runCode('keep = 99')).error, undefined)
  const started = Date.now()
  await assert.rejects(sbx.runCode('while True: pass', { timeoutMs: 2_000 }), (e) => {
    assert.ok(e instanceof TimeoutError, `${e.name}: ${e.message}`)
    return true
  })
  assert.ok(Date.now() - started < 10_000, 'the SDK gave up after about timeoutMs')
  // The next cell waits behind the interrupted one in the context's queue, then sees the state.
  const e = await sbx.runCode('keep', { timeoutMs: 30_000 })
  assert.equal(e.error, undefined, JSON.stringify(e.error))
  assert.equal(e.text, '99')
})

test('code-interpreter: a cell printing 10 MB', async () => {
  const e = await sbx.runCode("print('x' * 10_000_000)", { timeoutMs: 120_000 })
  assert.equal(e.error, undefined, JSON.stringify(e.error))
  const out = stdout(e)
  assert.ok(out.length >= 10_000_000, `got ${out.length} characters`)
  assert.equal(out.replace(/\n$/, '').length, 10_000_000)
  assert.match(out, /^x+\n?$/)
})

test('code-interpreter: errors: unknown language; context and language together', async () => {
  await assert.rejects(sbx.runCode('1', { language: 'cobol', requestTimeoutMs: 5_000 }))
  const ctx = await sbx.createCodeContext({ language: 'python' })
  try {
    await assert.rejects(sbx.runCode('1', { context: ctx, language: 'python' }), InvalidArgumentError)
  } finally {
    await sbx.removeCodeContext(ctx)
  }
})

// ipykernel aborts the execute requests that reach it just after a cell raised (stop_on_error), so
// a cell queued behind a failing one, or the step that restores per-run env vars, must still run.
test('code-interpreter: a cell queued behind a failing cell still runs', async () => {
  assert.equal((await sbx.runCode('queued = 7')).error, undefined)
  const empty = []
  for (let i = 0; i < 20; i++) {
    const failing = sbx.runCode('import time; time.sleep(0.2); 1/0')
    await new Promise((r) => setTimeout(r, 50))
    const [a, b] = await Promise.all([failing, sbx.runCode('queued')])
    assert.equal(a.error?.name, 'ZeroDivisionError')
    if (b.text !== '7') empty.push({ i, results: b.results, error: b.error, executionCount: b.executionCount })
  }
  assert.deepEqual(empty, [])
})

test('code-interpreter: per-run env vars do not outlive a failing cell', async () => {
  const leaked = []
  for (let i = 0; i < 20; i++) {
    const failing = await sbx.runCode('1/0', { envs: { BRIG_LEAK: `leak-${i}` } })
    assert.equal(failing.error?.name, 'ZeroDivisionError')
    const next = await sbx.runCode("import os; os.environ.get('BRIG_LEAK')")
    if (next.text !== undefined) leaked.push({ i, text: next.text })
    await sbx.runCode("import os; os.environ.pop('BRIG_LEAK', None); None")
  }
  assert.deepEqual(leaked, [])
})

test('code-interpreter: a trivial cell', async () => {
  const started = Date.now()
  const e = await sbx.runCode('1+1')
  const ms = Date.now() - started
  assert.equal(e.error, undefined)
  assert.equal(e.text, '2')
  assert.ok(ms < 10_000, `took ${ms} ms`)
})
