import { Sandbox } from '@e2b/code-interpreter'
const { id } = JSON.parse(process.argv[2])
const s = await Sandbox.connect(id)
console.log(JSON.stringify(await s.runCode('keep = 99')))
try { await s.runCode('while True: pass', { timeoutMs: 2000 }) } catch (e) { console.log('rejected', e.name, e.message) }
const t = Date.now()
const e = await s.runCode('keep', { timeoutMs: 30000 })
console.log(Date.now() - t, JSON.stringify(e), e.executionCount)
