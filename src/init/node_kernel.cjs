// brig's JavaScript kernel on plain Node.js, for templates that have Node.js but no Deno
// kernelspec. The kernel host (src/init/line_kernel.cc) embeds this file, writes it to its
// private directory and starts one `node --expose-internals --experimental-vm-modules
// node_kernel.cjs` per context (the second flag lets import() work in a vm.Script):
// stdin is /dev/null, stdout and stderr are pipes it streams as the cell's output, and fd 3 is
// a socketpair to the host carrying JSON lines:
//   host -> kernel: {"code": "...", "silent": false}             (one at a time)
//   kernel -> host: {"type":"ready"}                              (once, at start)
//                   {"type":"result","data":{"text/plain":...}}   (the cell's value)
//                   {"type":"error","ename":...,"evalue":...,"traceback":[...]}
//                   {"type":"done"}                               (stdout/stderr flushed before)
//
// Cells run as scripts in this process's one global context (vm.runInThisContext), so what a
// cell declares at its top level stays for later cells: var/function as properties of
// globalThis, let/const/class as global lexical bindings (declaring the same let/const/class
// name again in a later cell is a SyntaxError, as in Node's REPL). The completion value of the
// last statement is the cell's result (util.inspect text, or a MIME bundle from a
// [Symbol.for("Jupyter.display")]() method, as with Deno's kernel).
//
// A cell with top-level `await` is rewritten by Node's own REPL transform
// (internal/repl/await, hence --expose-internals) into an async function whose top-level
// declarations are hoisted out as globals (const becomes let); its last expression is still
// the result. Without that module (a Node.js that lacks it), such a cell runs wrapped in an
// async function: it runs, but returns no value and keeps none of its declarations.
//
// Interrupts are SIGINT (the host signals this process, a second later its process group):
// synchronous code stops (vm breakOnSigint), an awaiting cell is abandoned (what it started
// keeps running). Code that blocks the event loop outside the cell's synchronous part cannot
// be stopped here; the host then kills and restarts the kernel.
'use strict';

const net = require('net');
const vm = require('vm');
const util = require('util');
const path = require('path');
const Module = require('module');
const { pathToFileURL } = require('url');

const kMaxCommand = 64 << 20;   // one line from the host (code is at most 8 MiB, escaped)
const kMaxText = 16 << 20;      // a result's text
const out = process.stdout;
const err = process.stderr;
const self = __filename;

let processTopLevelAwait = null;
try {
  ({ processTopLevelAwait } = require('internal/repl/await'));
} catch {
  // not exposed by this Node.js: the fallback below
}

// What cells see as `require`: modules resolved from the context's working directory.
const cellRequire = Module.createRequire(path.join(process.cwd(), '[cell]'));
Object.defineProperty(globalThis, 'require', { value: cellRequire, writable: true, configurable: true });
const isBuiltin = Module.isBuiltin || ((s) => Module.builtinModules.includes(s.replace(/^node:/, '')));

async function importModuleDynamically(specifier) {
  if (!isBuiltin(specifier) && !/^[a-z][a-z0-9+.-]*:/i.test(specifier)) {
    let resolved = null;
    try {
      resolved = cellRequire.resolve(specifier);
    } catch {
      // an ESM-only package or a typo: let import() say which
    }
    if (resolved) return import(pathToFileURL(resolved).href);
  }
  return import(specifier);
}

const chan = new net.Socket({ fd: 3, readable: true, writable: true });
const send = (msg) => chan.write(JSON.stringify(msg) + '\n');
// Everything written to stdout/stderr so far has reached its pipe.
const flushed = (s) => new Promise((resolve) => (s.writableLength === 0 ? resolve() : s.write('', () => resolve())));

const INTERRUPTED = Symbol('interrupted');
let interruptAwait = null;  // set while a cell awaits
process.on('SIGINT', () => {
  if (interruptAwait) interruptAwait();
});
// An error thrown by a callback or a rejection nobody handles would end the process (and every
// variable with it): it is shown on stderr instead.
const shown = (e) => {
  const d = describe(e);
  return d.traceback.length ? d.traceback.join('\n') : `${d.ename}: ${d.evalue}`;
};
process.on('uncaughtException', (e) => err.write(`Uncaught ${shown(e)}\n`));
process.on('unhandledRejection', (e) => err.write(`Uncaught (in promise) ${shown(e)}\n`));

function display(value) {
  if (value === undefined) return null;
  if (value !== null && (typeof value === 'object' || typeof value === 'function')) {
    let bundle = null;
    try {
      const fn = value[Symbol.for('Jupyter.display')];
      if (typeof fn === 'function') bundle = fn.call(value);
    } catch {
      bundle = null;
    }
    if (bundle !== null && typeof bundle === 'object' && Object.keys(bundle).length > 0) return bundle;
  }
  let text = util.inspect(value, { maxStringLength: kMaxText });
  if (text.length > kMaxText) text = text.slice(0, kMaxText) + '...';
  return { 'text/plain': text };
}

function describe(e) {
  if (e === INTERRUPTED || (e && e.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED'))
    return { ename: 'KeyboardInterrupt', evalue: 'interrupted', traceback: [] };
  if (util.types.isNativeError(e) || e instanceof Error) {
    // Frames of Node.js itself and of this file say nothing about the cell.
    const stack = String(e.stack ?? `${e.name}: ${e.message}`)
      .split('\n')
      .filter((l) => !/^\s+at (.*\()?node:/.test(l) && !l.includes(self) && !/^\s+at new Promise \(<anonymous>\)$/.test(l));
    return { ename: String(e.name ?? 'Error'), evalue: String(e.message ?? ''), traceback: [stack.join('\n')] };
  }
  return { ename: 'Uncaught', evalue: util.inspect(e), traceback: [] };
}

let cells = 0;

// Runs one cell; its value, or throws.
async function evaluate(code, filename) {
  const compile = (src) => new vm.Script(src, { filename, importModuleDynamically });
  let script = null;
  let wrapped = false;
  let wrappedError = null;
  if (code.includes('await')) {
    if (processTopLevelAwait) {
      try {
        const src = processTopLevelAwait(code + '\n');  // null: no top-level await
        if (src !== null) {
          script = compile(src);
          wrapped = true;
        }
      } catch (e) {
        wrappedError = e;  // reported if the plain code does not compile either
      }
    } else {
      try {
        compile(code);
      } catch (e) {
        if (!(e instanceof SyntaxError) || !/await/.test(e.message)) throw e;
        script = compile(`(async () => {\n${code}\n})().then(() => undefined)`);
        wrapped = true;
      }
    }
  }
  if (!script) {
    try {
      script = compile(code);
    } catch (e) {
      throw wrappedError ?? e;
    }
  }
  const value = script.runInThisContext({ breakOnSigint: true, displayErrors: true });
  if (!wrapped) return value;
  const settled = await new Promise((resolve, reject) => {
    interruptAwait = () => reject(INTERRUPTED);
    Promise.resolve(value).then(resolve, reject);
  }).finally(() => {
    interruptAwait = null;
  });
  return settled?.value;
}

async function run(cmd) {
  const main = !cmd.silent;
  const filename = main ? `<cell ${++cells}>` : '<brig>';
  try {
    const value = await evaluate(String(cmd.code ?? ''), filename);
    const data = main ? display(value) : null;
    if (data) {
      await Promise.all([flushed(out), flushed(err)]);
      send({ type: 'result', data });
    }
  } catch (e) {
    await Promise.all([flushed(out), flushed(err)]);
    let described;
    try {
      described = describe(e);  // the cell's own object: its getters may throw
    } catch {
      described = { ename: 'Error', evalue: 'a thrown value that could not be described', traceback: [] };
    }
    send({ type: 'error', ...described });
  }
  await Promise.all([flushed(out), flushed(err)]);
  send({ type: 'done' });
}

let pending = '';
const queue = [];
let busy = false;
async function pump() {
  if (busy) return;
  busy = true;
  try {
    while (queue.length) await run(queue.shift());
  } finally {
    busy = false;  // whatever a cell did, the next one runs
  }
}

chan.setEncoding('utf8');
chan.on('data', (chunk) => {
  pending += chunk;
  if (pending.length > kMaxCommand) process.exit(2);
  let nl;
  while ((nl = pending.indexOf('\n')) >= 0) {
    const line = pending.slice(0, nl);
    pending = pending.slice(nl + 1);
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch {
      continue;
    }
    if (cmd && typeof cmd === 'object') queue.push(cmd);
  }
  pump();
});
chan.on('end', () => process.exit(0));
chan.on('error', () => process.exit(0));
send({ type: 'ready' });
