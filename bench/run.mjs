// The benchmark: bare Socket.IO (a), this plugin with the in-memory store (b), the Express +
// express-session recipe (c) and this plugin with a Redis store (d), side by side, in rounds
// (a b c d, a b c d, ...) so that the noise of a shared machine spreads evenly. Each server under
// test runs in its own child process and measures itself; the load generator is another child.
// Usage: node bench/run.mjs [--rounds 2] [--quick] [--only a,b] [--no-sweep]
import { fork, spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs'
import { createServer } from 'node:net'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'

const here = dirname(fileURLToPath(import.meta.url))
const { values: cli } = parseArgs({
  options: {
    rounds: { type: 'string', default: '2' },
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    'no-sweep': { type: 'boolean', default: false }
  }
})

const scale = cli.quick ? 0.2 : 1
const config = {
  rounds: Math.max(1, Math.min(5, Number(cli.rounds) || 2)),
  concurrency: 50,
  warmup: Math.round(400 * scale),
  cpuHandshakes: { websocket: Math.round(3000 * scale), polling: Math.round(2000 * scale) },
  latencyHandshakes: Math.round(300 * scale),
  memorySockets: Math.round(5000 * scale),
  fanoutSockets: 1000,
  fanoutReps: 3,
  sweepSessions: Math.round(1000 * scale),
  sweepSocketsPerSession: 10,
  sweepIntervalMs: 3000
}

const transports = {
  websocket: { transports: ['websocket'], upgrade: false },
  polling: { transports: ['polling', 'websocket'], upgrade: true }
}

const variants = [
  { key: 'a', name: 'bare Socket.IO (node:http, no session)', file: 'servers/bare.mjs', args: [], session: false },
  { key: 'b', name: 'this plugin, in-memory store', file: 'servers/fastify.mjs', args: ['--store=memory'], session: true, plugin: true },
  { key: 'c', name: 'Express 5 + express-session recipe', file: 'servers/express.mjs', args: [], session: true },
  { key: 'd', name: 'this plugin, connect-redis store', file: 'servers/fastify.mjs', args: ['--store=redis'], session: true, plugin: true, redis: true }
]

// ---------------------------------------------------------------------------------------------
// Child processes: every one started here is tracked and killed on the way out.

const children = new Set()

function killChildren () {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
}
process.on('exit', killChildren)
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killChildren()
    process.exit(130)
  })
}

function startChild (file, args = [], execArgv = []) {
  const child = fork(join(here, file), args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.add(child)
  const pending = new Map()
  let seq = 0
  let onReady
  const readyMessage = new Promise((resolve, reject) => {
    onReady = resolve
    child.once('exit', (code) => reject(new Error(`${file} exited (${code}) before it was ready`)))
  })
  readyMessage.catch(() => {})
  child.on('message', (msg) => {
    if (msg?.ready) return onReady(msg)
    const entry = pending.get(msg?.id)
    if (entry === undefined) return
    pending.delete(msg.id)
    clearTimeout(entry.timer)
    if (msg.error !== undefined) entry.reject(new Error(`${file} ${entry.cmd}: ${msg.error}`))
    else entry.resolve(msg.result)
  })
  child.on('exit', (code, signal) => {
    children.delete(child)
    for (const entry of pending.values()) {
      clearTimeout(entry.timer)
      entry.reject(new Error(`${file} exited (${code ?? signal}) during ${entry.cmd}`))
    }
    pending.clear()
  })
  return {
    child,
    ready: (timeoutMs = 20_000) => withTimeout(readyMessage, timeoutMs, `${file} ready`),
    call (cmd, params = {}, timeoutMs = 120_000) {
      const id = ++seq
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id)
          reject(new Error(`${file} ${cmd}: no answer in ${timeoutMs} ms`))
        }, timeoutMs)
        pending.set(id, { resolve, reject, timer, cmd })
        child.send({ id, cmd, ...params })
      })
    },
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      try { await this.call('exit', {}, 5000) } catch {}
      if (!(await withTimeout(exited, 5000, 'exit').then(() => true, () => false))) {
        child.kill('SIGKILL')
        await exited
      }
    }
  }
}

function withTimeout (promise, ms, what) {
  let timer
  return Promise.race([
    promise,
    new Promise((resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms) })
  ]).finally(() => clearTimeout(timer))
}

// ---------------------------------------------------------------------------------------------
// Redis, when redis-server is on PATH: one private instance on a free loopback port.

function freePort () {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

async function startRedis () {
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status !== 0) return null
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'bench-redis-'))
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: ['ignore', 'pipe', 'inherit'] })
  children.add(proc)
  proc.on('exit', () => children.delete(proc))
  let output = ''
  await withTimeout(new Promise((resolve, reject) => {
    proc.stdout.on('data', (chunk) => {
      output += chunk
      if (output.includes('Ready to accept connections')) resolve()
    })
    proc.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${output}`)))
  }), 10_000, 'redis-server start')
  proc.stdout.resume()
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop () {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((resolve) => proc.once('exit', resolve))
        proc.kill('SIGTERM')
        await withTimeout(exited, 5000, 'redis-server stop').catch(() => proc.kill('SIGKILL'))
      }
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One server under test, one round: every metric but the sweep.

function log (...args) {
  process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(1)}s] ${args.join(' ')}\n`)
}

function median (values) {
  const v = values.filter(Number.isFinite).sort((x, y) => x - y)
  if (v.length === 0) return NaN
  const mid = v.length >> 1
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

async function measure (variant, redis) {
  const args = variant.redis ? [...variant.args, `--redis=${redis.url}`] : variant.args
  const server = startChild(variant.file, args, ['--expose-gc'])
  const load = startChild('load.mjs')
  try {
    const { port } = await server.ready()
    const url = `http://127.0.0.1:${port}`
    const origin = url // the Host the client sends: the default origin check runs and passes
    const out = { port }

    let cookie
    if (variant.session) cookie = await load.call('login', { url })
    const headers = cookie === undefined ? { origin } : { origin, cookie }

    // The server must really check: no session, and (plugin) a foreign Origin, are refused.
    if (variant.session) {
      const attempts = [{ url, transports: ['websocket'], headers: { origin } }]
      if (variant.plugin) attempts.push({ url, transports: ['websocket'], headers: { origin: 'http://evil.example', cookie } })
      out.refused = await load.call('refused', { attempts })
      if (out.refused.includes('connected')) throw new Error(`${variant.key}: a connection that must be refused was accepted: ${out.refused}`)
    }

    // Warm-up: JIT, pools, first-use allocations.
    for (const t of Object.values(transports)) {
      await load.call('handshakes', { url, headers, ...t, n: config.warmup, concurrency: config.concurrency })
    }

    // CPU per handshake and handshakes per second, 50 in flight.
    for (const [name, t] of Object.entries(transports)) {
      const n = config.cpuHandshakes[name]
      const before = await server.call('cpu', { clients: 0 })
      const run = await load.call('handshakes', { url, headers, ...t, n, concurrency: config.concurrency })
      const after = await server.call('cpu', { clients: 0 })
      if (run.failures > 0) log(`${variant.key} ${name}: ${run.failures} failed handshakes`)
      const ok = n - run.failures
      out[`cpu_${name}`] = (after.cpuUs - before.cpuUs) / ok
      out[`cps_${name}`] = ok / (run.elapsedMs / 1000)
      out[`failures_${name}`] = run.failures
    }

    // Latency, one in flight.
    for (const [name, t] of Object.entries(transports)) {
      const run = await load.call('handshakes', { url, headers, ...t, n: config.latencyHandshakes, concurrency: 1 })
      out[`p50_${name}`] = run.p50
      out[`p99_${name}`] = run.p99
    }

    // Memory per connected socket (websocket), after forced GC.
    {
      const before = await server.call('mem', { clients: 0 })
      const run = await load.call('open', { url, headers, ...transports.websocket, count: config.memorySockets, concurrency: config.concurrency }, 180_000)
      const after = await server.call('mem', { clients: run.opened })
      out.memSockets = run.opened
      out.openPerSec = run.opened / (run.elapsedMs / 1000)
      out.heapPerSocket = (after.heapUsed - before.heapUsed) / run.opened
      out.rssPerSocket = (after.rss - before.rss) / run.opened
      out.externalPerSocket = (after.external - before.external) / run.opened
      await load.call('closeAll')
      await server.call('clients', { clients: 0, timeoutMs: 30_000 })
    }

    // Logout fan-out: 1000 sockets of one session, from the logout request to the last 'disconnect'.
    {
      const times = []
      const details = []
      for (let rep = 0; rep < config.fanoutReps; rep++) {
        let sessionHeaders = { origin }
        let query
        if (variant.session) sessionHeaders = { origin, cookie: await load.call('login', { url }) }
        else query = { room: '1' }
        const run = await load.call('fanout', {
          url,
          headers: sessionHeaders,
          logoutHeaders: sessionHeaders,
          query,
          ...transports.websocket,
          count: config.fanoutSockets,
          concurrency: config.concurrency
        }, 120_000)
        await server.call('clients', { clients: 0, timeoutMs: 30_000 })
        times.push(run.fanoutMs)
        details.push({ fanoutMs: run.fanoutMs, responseMs: run.responseMs, count: run.count, complete: run.complete, reasons: run.reasons })
        if (!run.complete) log(`${variant.key} fan-out incomplete: ${run.disconnected}/${run.count}`)
      }
      out.fanoutMs = median(times)
      out.fanout = details
    }
    return out
  } finally {
    await load.stop()
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// The expiry sweep (`validateInterval`), plugin variants only, once lib/ has it.

function sweepAvailable () {
  const lib = join(here, '..', 'dist')
  if (!existsSync(lib)) return false
  return readdirSync(lib).some((f) => /sweep|lifecycle|validat|expir/i.test(f) && f.endsWith('.js'))
}

async function measureSweep (variant, redis) {
  const args = [...variant.args, `--validate-interval=${config.sweepIntervalMs}`]
  if (variant.redis) args.push(`--redis=${redis.url}`)
  const server = startChild(variant.file, args, ['--expose-gc'])
  const loads = [startChild('load.mjs'), startChild('load.mjs')]
  try {
    const { port } = await server.ready()
    const url = `http://127.0.0.1:${port}`
    const headers = { origin: url }
    const cookies = await loads[0].call('loginMany', { url, headers, count: config.sweepSessions, concurrency: 10 })
    const total = config.sweepSessions * config.sweepSocketsPerSession
    // Two client processes, each with half the sessions' sockets.
    const opened = await Promise.all(loads.map((load, i) => load.call('open', {
      url,
      headers,
      cookies: cookies.filter((_, j) => j % 2 === i),
      ...transports.websocket,
      count: total / 2,
      concurrency: 25
    }, 240_000)))
    const count = opened.reduce((s, r) => s + r.opened, 0)
    await server.call('clients', { clients: count, timeoutMs: 60_000 })
    // Watch two full intervals with the sockets idle: event-loop delay and store reads.
    const { now } = await server.call('now')
    await server.call('eldStart', { resolutionMs: 1 })
    await sleep(config.sweepIntervalMs * 2 + 500)
    const eld = await server.call('eldStop')
    const { reads } = await server.call('reads', { since: now })
    // A sweep is a burst of reads; bursts are separated by more than half an interval.
    const sweeps = []
    for (const [t, , sid] of reads) {
      const current = sweeps.at(-1)
      if (current === undefined || t - current.last > config.sweepIntervalMs / 2) sweeps.push({ first: t, last: t, reads: 0, sids: new Set() })
      const s = sweeps.at(-1)
      s.last = t
      s.reads++
      if (sid !== undefined) s.sids.add(sid)
    }
    const complete = sweeps.filter((s) => s.sids.size > 0)
    return {
      sockets: count,
      sessions: cookies.length,
      sweeps: complete.length,
      readsPerSweep: median(complete.map((s) => s.reads)),
      distinctPerSweep: median(complete.map((s) => s.sids.size)),
      readsPerSession: median(complete.map((s) => s.reads / cookies.length)),
      sweepSpanMs: median(complete.map((s) => s.last - s.first)),
      eldMaxMs: eld.maxMs - 1, // the histogram counts the 1 ms timer resolution itself
      eldP99Ms: eld.p99Ms - 1
    }
  } finally {
    await Promise.all(loads.map((l) => l.stop()))
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// The report.

const metrics = [
  { key: 'cpu_websocket', label: 'server CPU per handshake, websocket (µs)', unit: 'µs', target: 1.10, digits: 0 },
  { key: 'cpu_polling', label: 'server CPU per handshake, polling→websocket (µs)', unit: 'µs', target: 1.10, digits: 0 },
  { key: 'cps_websocket', label: 'handshakes/s, websocket, 50 in flight', unit: '/s', digits: 0, higherIsBetter: true },
  { key: 'cps_polling', label: 'handshakes/s, polling→websocket, 50 in flight', unit: '/s', digits: 0, higherIsBetter: true },
  { key: 'p50_websocket', label: 'handshake latency p50, websocket (ms)', unit: 'ms', digits: 2 },
  { key: 'p99_websocket', label: 'handshake latency p99, websocket (ms)', unit: 'ms', digits: 2 },
  { key: 'p50_polling', label: 'handshake latency p50, polling (ms)', unit: 'ms', digits: 2 },
  { key: 'p99_polling', label: 'handshake latency p99, polling (ms)', unit: 'ms', digits: 2 },
  { key: 'heapPerSocket', label: 'server heap per open socket (bytes)', unit: 'B', target: 1.12, digits: 0 },
  { key: 'rssPerSocket', label: 'server RSS per open socket (bytes)', unit: 'B', digits: 0 },
  { key: 'fanoutMs', label: 'logout fan-out, 1000 sockets of one session (ms)', unit: 'ms', target: 1.05, digits: 1 }
]

function fmt (value, digits = 2) {
  if (!Number.isFinite(value)) return 'n/a'
  return value.toFixed(digits)
}

function summarize (runs) {
  const rows = []
  for (const m of metrics) {
    const base = runs.a?.map((r) => r[m.key]) ?? []
    const row = { metric: m.label, key: m.key, target: m.target, a: median(base), aMin: Math.min(...base), aMax: Math.max(...base) }
    for (const k of ['b', 'c', 'd']) {
      const list = runs[k]
      if (list === undefined) continue
      const ratios = list.map((r, i) => r[m.key] / base[i])
      row[k] = { ratio: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios), abs: median(list.map((r) => r[m.key])) }
    }
    rows.push(row)
  }
  return rows
}

function table (rows, sweep) {
  const lines = []
  lines.push('| metric | (a) bare, absolute | (b)/(a) plugin, memory | (c)/(a) Express recipe | (d)/(a) plugin, Redis | spread over runs (min–max) | target (b), (d) |')
  lines.push('|---|---:|---:|---:|---:|---|---|')
  for (const r of rows) {
    const m = metrics.find((x) => x.key === r.key)
    const cell = (k) => (r[k] === undefined ? 'n/a' : `${fmt(r[k].ratio)}×`)
    const spread = [`a ${fmt(r.aMin, m.digits)}–${fmt(r.aMax, m.digits)}`]
    for (const k of ['b', 'c', 'd']) if (r[k] !== undefined) spread.push(`${k} ${fmt(r[k].min)}–${fmt(r[k].max)}`)
    lines.push(`| ${r.metric} | ${fmt(r.a, m.digits)} | ${cell('b')} | ${cell('c')} | ${cell('d')} | ${spread.join('; ')} | ${r.target === undefined ? '' : `≤ ${r.target.toFixed(2)}×`} |`)
  }
  if (sweep !== undefined) {
    const cell = (k, f, digits) => {
      const list = sweep[k]
      if (list === undefined || list.length === 0) return 'n/a'
      return fmt(median(list.map((s) => s[f])), digits)
    }
    const spread = (f, digits) => ['b', 'd'].filter((k) => sweep[k]?.length > 0)
      .map((k) => `${k} ${fmt(Math.min(...sweep[k].map((s) => s[f])), digits)}–${fmt(Math.max(...sweep[k].map((s) => s[f])), digits)}`).join('; ')
    lines.push(`| sweep: store reads per distinct session (${config.sweepSessions * config.sweepSocketsPerSession} sockets, ${config.sweepSessions} sessions), absolute | n/a | ${cell('b', 'readsPerSession', 2)} | n/a | ${cell('d', 'readsPerSession', 2)} | ${spread('readsPerSession', 2)} | ≤ 1 |`)
    lines.push(`| sweep: max event-loop delay during a sweep (ms), absolute | n/a | ${cell('b', 'eldMaxMs', 1)} | n/a | ${cell('d', 'eldMaxMs', 1)} | ${spread('eldMaxMs', 1)} | ≤ 10 ms |`)
  }
  return lines.join('\n')
}

// ---------------------------------------------------------------------------------------------

const started = performance.now()
const only = cli.only === undefined ? null : new Set(cli.only.split(','))
const redis = await startRedis()
if (redis === null) log('redis-server is not on PATH: variant (d) is skipped')
const selected = variants.filter((v) => (only === null || only.has(v.key) || v.key === 'a') && (!v.redis || redis !== null))

const runs = {}
const sweep = {}
const doSweep = !cli['no-sweep'] && sweepAvailable()
try {
  for (let round = 1; round <= config.rounds; round++) {
    for (const variant of selected) {
      log(`round ${round}/${config.rounds}: (${variant.key}) ${variant.name}`)
      const result = await measure(variant, redis)
      ;(runs[variant.key] ??= []).push(result)
      log(`  cpu ws ${fmt(result.cpu_websocket, 0)} µs, polling ${fmt(result.cpu_polling, 0)} µs, heap/socket ${fmt(result.heapPerSocket, 0)} B, fan-out ${fmt(result.fanoutMs, 1)} ms`)
    }
    if (doSweep) {
      for (const variant of selected.filter((v) => v.plugin)) {
        log(`round ${round}/${config.rounds}: sweep (${variant.key}) ${variant.name}`)
        const result = await measureSweep(variant, redis)
        ;(sweep[variant.key] ??= []).push(result)
        log(`  ${result.sweeps} sweeps, ${fmt(result.readsPerSweep, 0)} reads/sweep over ${result.sessions} sessions, max event-loop delay ${fmt(result.eldMaxMs, 1)} ms`)
      }
    }
  }
} finally {
  if (redis !== null) await redis.stop()
}
if (!doSweep && !cli['no-sweep']) log('the plugin has no expiry sweep yet (no sweep module in dist/): the sweep metric is skipped')

const rows = summarize(runs)
const markdown = table(rows, doSweep ? sweep : undefined)
const machine = {
  nproc: cpus().length,
  cpu: cpus()[0]?.model,
  node: process.version,
  platform: `${process.platform} ${process.arch}`
}
const elapsedS = (performance.now() - started) / 1000
const report = { date: new Date().toISOString(), elapsedS, machine, config, variants: Object.fromEntries(selected.map((v) => [v.key, v.name])), rows, runs, sweep, markdown }
mkdirSync(join(here, 'results'), { recursive: true })
writeFileSync(join(here, 'results', 'latest.json'), JSON.stringify(report, null, 2) + '\n')
writeFileSync(join(here, 'results', 'latest.md'), markdown + '\n')
console.log(markdown)
console.log(`\n${machine.nproc} × ${machine.cpu}, Node ${machine.node}; ${config.rounds} rounds in ${elapsedS.toFixed(0)} s; bench/results/latest.json`)
