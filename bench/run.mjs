// The benchmark: bare Socket.IO (a), this plugin with the in-memory store (b), the Express +
// express-session recipe (c), this plugin with a Redis store (d) and `decryptSession` hand-wired in
// an engine.io middleware (e), side by side, in rounds (a b c d e, a b c d e, ...) so that the noise
// of a shared machine spreads evenly. Each server under test runs in its own child process and
// measures itself; the load generator is another child. Writes the table and an SVG chart.
// Usage: node bench/run.mjs [--rounds 3] [--quick] [--only b,c] [--no-sweep | --sweep | --only-sweep]
//        [--phases cpu,latency,memory,fanout,storm,authority] (default: all) [--ab path/to/other/dist/index.js]
// 'authority' runs bench/authority.mjs (live authority: revocation latency, cost of syncSessions) at the
// end, when redis-server is on PATH, and adds its tables to the report and a panel to the chart.
// --ab adds (f): the plugin built elsewhere (a modified copy of dist/), in-memory store, to compare with (b).
import { fork, spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync, existsSync, readdirSync, readFileSync } from 'node:fs'
import { cpus, loadavg, release, totalmem, type } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { renderChart } from './chart.mjs'
import { children, startChild as forkChild } from './children.mjs'
import { startRedis } from './redis.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const { values: cli } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    'no-sweep': { type: 'boolean', default: false },
    sweep: { type: 'boolean', default: false },
    'only-sweep': { type: 'boolean', default: false },
    phases: { type: 'string', default: 'cpu,latency,memory,fanout,storm,authority' },
    ab: { type: 'string' }
  }
})

const scale = cli.quick ? 0.2 : 1
const phases = new Set(cli.phases.split(','))
const rounds = Math.max(2, Math.min(6, Number(cli.rounds) || 3))
const config = {
  rounds,
  // CPU: short phases, many rounds: the noise of a shared machine drifts over seconds, and short
  // alternating phases spread it evenly over the variants.
  cpuRounds: rounds * 2,
  memoryRounds: Math.max(2, rounds - 1),
  fanoutRounds: rounds + 1,
  concurrency: 50,
  warmup: { websocket: Math.round(1500 * scale), polling: Math.round(300 * scale) },
  cpuWarmupRounds: 2,
  cpuHandshakes: { websocket: Math.round(600 * scale), polling: Math.round(300 * scale) },
  latencyHandshakes: Math.round(250 * scale),
  memorySockets: Math.round(5000 * scale),
  fanoutSockets: 1000,
  // Reconnect storm: every connection dropped at once; the clients reconnect after a random delay
  // within stormDelayMs (socket.io-client: reconnectionDelay stormDelayMs/2, randomizationFactor 1),
  // or all at once (no delay: the thundering herd of a restart).
  stormRounds: Math.max(2, rounds - 1),
  stormSessions: Math.round(1000 * scale),
  stormSocketsPerSession: 5,
  stormDelayMs: 1000,
  sweepSessions: Math.round(1000 * scale),
  sweepSocketsPerSession: 10,
  sweepIntervalMs: 3000,
  sweepsWatched: 3
}

const transports = {
  websocket: { transports: ['websocket'], upgrade: false },
  polling: { transports: ['polling', 'websocket'], upgrade: true }
}

// `refuses`: checked to refuse a socket without a session; `logout`: has POST /logout (fan-out).
// The plugin's expiry sweep runs every 10 minutes in these servers (its own servers measure it):
// at its default 30 s, a sweep's reads could fall into a reconnect storm's count of store reads.
const mainSweep = '--validate-interval=600000'
const variants = [
  { key: 'a', name: 'bare Socket.IO (node:http, no session)', short: 'bare Socket.IO', file: 'servers/bare.mjs', args: [], session: false, logout: true },
  { key: 'b', name: 'this plugin, in-memory store', short: 'plugin, memory store', file: 'servers/fastify.mjs', args: ['--store=memory', mainSweep], session: true, plugin: true, refuses: true, logout: true },
  { key: 'c', name: 'Express 5 + express-session recipe', short: 'Express recipe', file: 'servers/express.mjs', args: [], session: true, refuses: true, logout: true },
  { key: 'd', name: 'this plugin, connect-redis store', short: 'plugin, Redis store', file: 'servers/fastify.mjs', args: ['--store=redis', mainSweep], session: true, plugin: true, redis: true, refuses: true, logout: true },
  { key: 'e', name: 'decryptSession hand-wired in an engine.io middleware, in-memory store (nothing else)', short: 'decryptSession only', file: 'servers/fastify.mjs', args: ['--store=memory', '--handwired'], session: true }
]
if (cli.ab !== undefined) {
  variants.push({ key: 'f', name: `this plugin from ${cli.ab}, in-memory store (A/B)`, short: 'A/B build, memory store', file: 'servers/fastify.mjs', args: ['--store=memory', mainSweep, `--plugin=${cli.ab}`], session: true, plugin: true, refuses: true, logout: true })
}
const others = ['b', 'c', 'd', 'e', 'f']

// Child processes (bench/children.mjs): tracked, and killed on the way out.
const startChild = (file, args = [], execArgv = []) => forkChild(file, args, { execArgv, callTimeoutMs: 120_000 })

/** The installed versions of these packages (as the bench's servers resolve them). */
function packageVersions (names) {
  const out = {}
  for (const name of names) {
    try {
      out[name] = JSON.parse(readFileSync(join(here, '..', 'node_modules', name, 'package.json'), 'utf8')).version
    } catch {}
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// The servers under test run side by side (idle ones cost nothing); each metric is measured in
// rounds that visit every server in turn, so that the background noise spreads evenly.

function log (...args) {
  process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(1)}s] ${args.join(' ')}\n`)
}

function median (values) {
  const v = values.filter(Number.isFinite).sort((x, y) => x - y)
  if (v.length === 0) return NaN
  const mid = v.length >> 1
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

/** Starts a variant's server, logs in once and checks that what must be refused is refused. */
async function startTarget (variant, redis, load, extraArgs = []) {
  const args = [...variant.args, ...extraArgs]
  if (variant.redis) args.push(`--redis=${redis.url}`)
  const server = startChild(variant.file, args, ['--expose-gc'])
  const { port } = await server.ready()
  const url = `http://127.0.0.1:${port}`
  const origin = url // the Host the client sends: the default origin check runs, and passes
  const target = { variant, server, url, origin, headers: { origin } }
  if (variant.session) target.headers.cookie = await load.call('login', { url })
  if (variant.refuses) {
    const attempts = [{ url, transports: ['websocket'], headers: { origin } }]
    if (variant.plugin) attempts.push({ url, transports: ['websocket'], headers: { origin: 'http://evil.example', cookie: target.headers.cookie } })
    const refused = await load.call('refused', { attempts })
    if (refused.includes('connected')) throw new Error(`(${variant.key}) accepted a connection it must refuse: ${refused}`)
    target.refused = refused
  }
  return target
}

async function cpuPhase (target, load, transport, n) {
  const { server, url, headers } = target
  const before = await server.call('cpu', { clients: 0 })
  const run = await load.call('handshakes', { url, headers, ...transports[transport], n, concurrency: config.concurrency })
  const after = await server.call('cpu', { clients: 0 })
  if (run.failures > 0) log(`(${target.variant.key}) ${transport}: ${run.failures} failed handshakes`)
  const ok = n - run.failures
  return { cpu: (after.cpuUs - before.cpuUs) / ok, cps: ok / (run.elapsedMs / 1000), failures: run.failures }
}

async function latencyPhase (target, load, transport, n) {
  const { url, headers } = target
  // Time to 'connect'; the polling socket need not wait for its upgrade here.
  const run = await load.call('handshakes', { url, headers, ...transports[transport], upgrade: false, n, concurrency: 1 })
  return { p50: run.p50, p99: run.p99, failures: run.failures }
}

async function memoryPhase (target, loads, count) {
  const { server, url, headers } = target
  const before = await server.call('mem', { clients: 0 })
  const runs = await Promise.all(loads.map((load) => load.call('open', {
    url, headers, ...transports.websocket, count: count / loads.length, concurrency: config.concurrency / loads.length
  }, 180_000)))
  const opened = runs.reduce((s, r) => s + r.opened, 0)
  const after = await server.call('mem', { clients: opened })
  await Promise.all(loads.map((load) => load.call('closeAll')))
  await server.call('clients', { clients: 0, timeoutMs: 30_000 })
  return {
    sockets: opened,
    heap: (after.heapUsed - before.heapUsed) / opened,
    rss: (after.rss - before.rss) / opened,
    external: (after.external - before.external) / opened
  }
}

async function fanoutPhase (target, load, count) {
  const { server, url, origin, variant } = target
  let headers = { ...target.headers } // bare: the same Cookie header, which it ignores
  let query
  if (variant.session) headers = { origin, cookie: await load.call('login', { url }) }
  else query = { room: '1' } // the bare server joins these sockets to the room its /logout disconnects
  const open = await load.call('fanoutOpen', { url, headers, query, ...transports.websocket, count, concurrency: config.concurrency }, 120_000)
  await server.call('clients', { clients: open.opened, timeoutMs: 30_000 })
  await sleep(100)
  const before = await server.call('cpu', { clients: open.opened })
  const run = await load.call('fanoutLogout', { url, logoutHeaders: headers }, 60_000)
  const after = await server.call('cpu', { clients: 0 })
  if (!run.complete) log(`(${variant.key}) fan-out incomplete: ${run.disconnected}/${run.count}`)
  if (run.reasons['io server disconnect'] !== run.count) log(`(${variant.key}) fan-out reasons: ${JSON.stringify(run.reasons)}`)
  return { ms: run.fanoutMs, cpuMs: (after.cpuUs - before.cpuUs) / 1000, responseMs: run.responseMs, sockets: run.count }
}

/** Distinct sessions of a target (logged in once, then reused), `count` of them. */
async function sessionsOf (target, load, count) {
  target.cookies ??= []
  if (target.cookies.length < count) {
    const more = await load.call('loginMany', { url: target.url, headers: { origin: target.origin }, count: count - target.cookies.length, concurrency: 10 }, 300_000)
    target.cookies.push(...more)
  }
  return target.cookies.slice(0, count)
}

/** Heap per open socket with one session per socket (bare: the same sockets, no session). */
async function memoryPerSessionPhase (target, loads, count) {
  const { server, url, origin, variant } = target
  const cookies = variant.session ? await sessionsOf(target, loads[0], count) : undefined
  const before = await server.call('mem', { clients: 0 })
  const runs = await Promise.all(loads.map((load, i) => load.call('open', {
    url,
    headers: cookies === undefined ? target.headers : { origin },
    cookies: cookies?.filter((_, j) => j % loads.length === i),
    ...transports.websocket,
    count: count / loads.length,
    concurrency: config.concurrency / loads.length
  }, 180_000)))
  const opened = runs.reduce((s, r) => s + r.opened, 0)
  const after = await server.call('mem', { clients: opened })
  await Promise.all(loads.map((load) => load.call('closeAll')))
  await server.call('clients', { clients: 0, timeoutMs: 30_000 })
  return { sockets: opened, heap: (after.heapUsed - before.heapUsed) / opened, rss: (after.rss - before.rss) / opened }
}

/**
 * Reconnect storm: stormSessions sessions × stormSocketsPerSession sockets (bare: as many sockets
 * without a session), two client processes; the server drops every connection at once, the clients
 * reconnect after a random delay within stormDelayMs. Measured: the time from the first drop to the
 * last socket back, the handshake latency of the reconnections (attempt → connect), the server's CPU
 * time, and the store reads per distinct session.
 */
async function stormPhase (target, loads, delayMs) {
  const { server, url, origin, variant } = target
  const per = config.stormSocketsPerSession
  const cookies = variant.session ? await sessionsOf(target, loads[0], config.stormSessions) : undefined
  const reconnect = delayMs > 0
    ? { reconnectionDelay: delayMs / 2, reconnectionDelayMax: delayMs, randomizationFactor: 1 }
    : { reconnectionDelay: 0, reconnectionDelayMax: 0, randomizationFactor: 0 }
  const opened = await Promise.all(loads.map((load, i) => load.call('stormOpen', {
    url,
    headers: cookies === undefined ? target.headers : { origin },
    cookies: cookies?.filter((_, j) => j % loads.length === i),
    perCookie: per,
    count: (config.stormSessions * per) / loads.length,
    ...transports.websocket,
    reconnect,
    concurrency: config.concurrency / loads.length
  }, 240_000)))
  try {
    const total = opened.reduce((s, r) => s + r.opened, 0)
    await server.call('clients', { clients: total, timeoutMs: 60_000 })
    await sleep(200)
    const logging = variant.session ? await server.call('logReads', { on: true }) : undefined
    const cpu0 = await server.call('cpu', { clients: total })
    await server.call('dropAll')
    const waits = await Promise.all(loads.map((load) => load.call('stormWait', { timeoutMs: 60_000 }, 90_000)))
    const cpu1 = await server.call('cpu', { clients: total })
    let reads
    if (logging !== undefined) {
      reads = await server.call('reads', { since: logging.now })
      await server.call('logReads', { on: false })
    }
    const complete = waits.every((w) => w.complete)
    if (!complete) log(`(${variant.key}) storm: ${waits.reduce((s, w) => s + w.back, 0)}/${total} back`)
    const latencies = waits.flatMap((w) => w.latencies).sort((x, y) => x - y)
    const sids = reads === undefined ? undefined : new Set(reads.reads.map(([, , sid]) => sid))
    return {
      sockets: total,
      backMs: complete ? Math.max(...waits.map((w) => w.lastBack)) - Math.min(...waits.map((w) => w.firstDrop)) : NaN,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      cpuMs: (cpu1.cpuUs - cpu0.cpuUs) / 1000,
      reads: reads?.reads.length,
      sessions: sids?.size,
      readsPerSession: sids === undefined ? undefined : reads.reads.length / sids.size,
      attempts: waits.reduce((s, w) => s + w.attempts, 0)
    }
  } finally {
    await Promise.all(loads.map((load) => load.call('stormClose')))
    await server.call('clients', { clients: 0, timeoutMs: 30_000 })
  }
}

function percentile (sorted, p) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

/** Runs `phase` for every target, `rounds` times, alternating: a b c d e, a b c d e, ... */
async function alternate (name, targets, rounds, phase, show, discard = 0) {
  const out = {}
  const t0 = performance.now()
  for (let round = 1 - discard; round <= rounds; round++) {
    for (const target of targets) {
      const t1 = performance.now()
      const result = await phase(target)
      result.phaseMs = Math.round(performance.now() - t1)
      if (round >= 1) (out[target.variant.key] ??= []).push(result)
    }
  }
  const brief = Object.entries(out).map(([k, list]) => `${k} ${list.map((r) => fmt(r[show], 1)).join('/')}`).join(', ')
  log(`${name} (${((performance.now() - t0) / 1000).toFixed(1)} s): ${show} ${brief}`)
  return out
}

async function measureAll (selected, redis) {
  const loads = [startChild('load.mjs'), startChild('load.mjs')]
  const targets = []
  try {
    for (const variant of selected) targets.push(await startTarget(variant, redis, loads[0]))
    // Bare Socket.IO gets the same Cookie header as the plugin, as a browser would send it: what it
    // costs to receive and keep (about 130 bytes per socket) is then in the baseline, not in the ratio.
    const bare = targets.find((t) => t.variant.key === 'a')
    const plugin = targets.find((t) => t.variant.plugin)
    if (bare !== undefined && plugin !== undefined) bare.headers.cookie = plugin.headers.cookie
    log(`servers up: ${targets.map((t) => `(${t.variant.key}) ${t.url}`).join(', ')}`)

    // Warm-up: JIT, pools, first-use allocations. Measured here: a fresh server needs about 3000
    // websocket handshakes before its CPU per handshake stops falling (from 2.5× to 1×, for bare
    // Socket.IO and for this plugin alike), and a server left idle while the others warm up cools
    // down again; so each CPU metric also starts with alternating rounds that are not counted.
    for (const t of targets) {
      for (const transport of Object.keys(transports)) {
        await loads[0].call('handshakes', { url: t.url, headers: t.headers, ...transports[transport], n: config.warmup[transport], concurrency: config.concurrency })
      }
    }

    const results = {}
    const run = (phase) => phases.has(phase)
    for (const transport of Object.keys(transports)) {
      if (!run('cpu')) break
      results[`cpu_${transport}`] = await alternate(`CPU/handshake ${transport}`, targets, config.cpuRounds,
        (t) => cpuPhase(t, loads[0], transport, config.cpuHandshakes[transport]), 'cpu', config.cpuWarmupRounds)
    }
    for (const transport of Object.keys(transports)) {
      if (!run('latency')) break
      results[`latency_${transport}`] = await alternate(`latency ${transport}`, targets, config.rounds,
        (t) => latencyPhase(t, loads[0], transport, config.latencyHandshakes), 'p50')
    }
    if (run('memory')) {
      results.memory = await alternate('memory per socket', targets, config.memoryRounds,
        (t) => memoryPhase(t, loads, config.memorySockets), 'heap')
      results.memorySessions = await alternate('memory per socket, one session each', targets, config.memoryRounds,
        (t) => memoryPerSessionPhase(t, loads, config.memorySockets), 'heap')
    }
    if (run('fanout')) {
      results.fanout = await alternate('logout fan-out', targets.filter((t) => t.variant.logout), config.fanoutRounds,
        (t) => fanoutPhase(t, loads[0], config.fanoutSockets), 'ms')
    }
    if (run('storm')) {
      results.storm = await alternate('reconnect storm, back within 1 s', targets, config.stormRounds, (t) => stormPhase(t, loads, config.stormDelayMs), 'backMs')
      results.stormAtOnce = await alternate('reconnect storm, all at once', targets, config.stormRounds, (t) => stormPhase(t, loads, 0), 'backMs')
    }
    results.refused = Object.fromEntries(targets.map((t) => [t.variant.key, t.refused]))
    return results
  } finally {
    await Promise.all(loads.map((l) => l.stop()))
    await Promise.all(targets.map((t) => t.server.stop()))
  }
}

// ---------------------------------------------------------------------------------------------
// The expiry sweep (`validateInterval`), plugin variants only, once lib/ has it: 10000 idle sockets
// over 1000 sessions, several sweeps watched; each sweep is one sample.

function sweepAvailable () {
  if (cli.sweep) return true
  const dist = join(here, '..', 'dist')
  if (!existsSync(dist)) return false
  return readdirSync(dist).some((f) => /sweep|lifecycle|validat|expir/i.test(f) && f.endsWith('.js'))
}

async function measureSweep (variant, redis) {
  const loads = [startChild('load.mjs'), startChild('load.mjs')]
  let target
  try {
    target = await startTarget(variant, redis, loads[0], [`--validate-interval=${config.sweepIntervalMs}`, '--log-reads'])
    const { server, url, origin } = target
    const headers = { origin }
    const cookies = await loads[0].call('loginMany', { url, headers, count: config.sweepSessions, concurrency: 10 })
    const total = config.sweepSessions * config.sweepSocketsPerSession
    // Two client processes, each with the sockets of half the sessions.
    const opened = await Promise.all(loads.map((load, i) => load.call('open', {
      url,
      headers,
      cookies: cookies.filter((_, j) => j % 2 === i),
      ...transports.websocket,
      count: total / 2,
      concurrency: config.concurrency / 2
    }, 240_000)))
    const count = opened.reduce((s, r) => s + r.opened, 0)
    await server.call('clients', { clients: count, timeoutMs: 60_000 })

    // Watch a few intervals with the sockets idle: store reads, and event-loop delay with a 1 ms probe.
    const { now } = await server.call('now')
    await server.call('probeStart')
    await sleep(config.sweepIntervalMs * config.sweepsWatched + 500)
    const probe = await server.call('probeStop')
    const { reads, writes } = await server.call('reads', { since: now })
    await Promise.all(loads.map((load) => load.call('closeAll')))

    // A sweep is a burst of reads; bursts are separated by more than half an interval. A burst cut
    // by the start or the end of the window is left out.
    const windowEnd = probe.samples.at(-1)?.[0] ?? Infinity
    const bursts = []
    for (const [t, , sid] of reads) {
      let s = bursts.at(-1)
      if (s === undefined || t - s.last > config.sweepIntervalMs / 2) {
        s = { first: t, last: t, reads: 0, sids: new Set() }
        bursts.push(s)
      }
      s.last = t
      s.reads++
      if (sid !== undefined) s.sids.add(sid)
    }
    const whole = bursts.filter((s) => s.first - now > 50 && windowEnd - s.last > 200)
    // The delay a sweep causes shows up in the probe samples from just before its first read (the
    // sweep collects its sessions first) to shortly after its last; the rest of the window is the
    // baseline: garbage collection and the other processes of a shared machine.
    const during = (t, s) => t >= s.first - 1 && t <= s.last + 100
    const sweeps = whole.map((s) => ({
      reads: s.reads,
      distinctSessions: s.sids.size,
      readsPerSession: s.reads / s.sids.size,
      spanMs: s.last - s.first,
      maxDelayMs: Math.max(0, ...probe.samples.filter(([t]) => during(t, s)).map(([, lag]) => lag)),
      writes: writes.filter(([t]) => t >= s.first - 1 && t <= s.last + 1000).length
    }))
    const outside = probe.samples.filter(([t]) => !bursts.some((s) => during(t, s))).map(([, lag]) => lag)
    return { sockets: count, sessions: cookies.length, sweeps, baselineMaxDelayMs: Math.max(0, ...outside), windowReads: reads.length, windowWrites: writes.length }
  } finally {
    await Promise.all(loads.map((l) => l.stop()))
    if (target !== undefined) await target.server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// The report: per metric, (a)'s absolute value and the other variants' ratios to (a) of the same
// round; the median over rounds, and the spread (min–max) over rounds.

const stormSize = () => `${config.stormSessions * config.stormSocketsPerSession} sockets (${config.stormSessions} sessions × ${config.stormSocketsPerSession})`
const storm = () => `${stormSize()}, back within ${config.stormDelayMs / 1000} s`
// `target`: the goal for the plugin's ratio to (a); `absolute`: a per-variant figure, not a ratio.
const metrics = [
  { label: 'server CPU per handshake, websocket (µs)', from: ['cpu_websocket', 'cpu'], target: 1.10, digits: 0, chart: 'CPU per handshake, websocket' },
  { label: 'server CPU per handshake, polling→websocket (µs)', from: ['cpu_polling', 'cpu'], target: 1.10, digits: 0, chart: 'CPU per handshake, polling→websocket' },
  { label: 'handshakes/s, websocket, 50 in flight', from: ['cpu_websocket', 'cps'], digits: 0 },
  { label: 'handshakes/s, polling→websocket, 50 in flight', from: ['cpu_polling', 'cps'], digits: 0 },
  { label: 'handshake latency p50, websocket (ms)', from: ['latency_websocket', 'p50'], digits: 2 },
  { label: 'handshake latency p99, websocket (ms)', from: ['latency_websocket', 'p99'], digits: 2 },
  { label: 'handshake latency p50, polling (ms)', from: ['latency_polling', 'p50'], digits: 2 },
  { label: 'handshake latency p99, polling (ms)', from: ['latency_polling', 'p99'], digits: 2 },
  { label: 'server heap per open socket, one session shared by all (bytes)', from: ['memory', 'heap'], target: 1.05, digits: 0, chart: 'heap per socket, shared session' },
  { label: 'server heap per open socket, one session per socket (bytes)', from: ['memorySessions', 'heap'], target: 1.05, digits: 0, chart: 'heap per socket, a session each' },
  { label: 'server RSS per open socket, one session shared by all (bytes)', from: ['memory', 'rss'], digits: 0 },
  { label: 'logout fan-out, 1000 sockets: request → last disconnect (ms)', from: ['fanout', 'ms'], target: 1.05, digits: 1, chart: 'logout, 1000 sockets: wall time' },
  { label: 'logout fan-out, 1000 sockets: server CPU (ms)', from: ['fanout', 'cpuMs'], target: 1.05, digits: 1, chart: 'logout, 1000 sockets: server CPU' },
  { label: () => `reconnect storm, ${storm()}: first drop → last socket back (ms)`, from: ['storm', 'backMs'], digits: 0, chart: 'storm within 1 s: time until all back' },
  { label: () => 'reconnect storm: handshake latency p99 during the storm, attempt → connect (ms)', from: ['storm', 'p99'], digits: 1, chart: 'storm within 1 s: handshake p99' },
  { label: () => 'reconnect storm: server CPU, drop → all back (ms)', from: ['storm', 'cpuMs'], digits: 0, chart: 'storm within 1 s: server CPU' },
  { label: () => 'reconnect storm: store reads per distinct session (absolute)', from: ['storm', 'readsPerSession'], absolute: true, target: 1.05, digits: 2 },
  { label: () => `reconnect storm, ${stormSize()}, all back at once (no delay): first drop → last socket back (ms)`, from: ['stormAtOnce', 'backMs'], digits: 0, chart: 'storm at once: time until all back' },
  { label: () => 'reconnect storm at once: handshake latency p99, attempt → connect (ms)', from: ['stormAtOnce', 'p99'], digits: 1, chart: 'storm at once: handshake p99' },
  { label: () => 'reconnect storm at once: server CPU, drop → all back (ms)', from: ['stormAtOnce', 'cpuMs'], digits: 0, chart: 'storm at once: server CPU' },
  { label: () => 'reconnect storm at once: store reads per distinct session (absolute)', from: ['stormAtOnce', 'readsPerSession'], absolute: true, target: 1.05, digits: 2 }
]

function fmt (value, digits = 2) {
  if (!Number.isFinite(value)) return 'n/a'
  return value.toFixed(digits)
}

const spreadOf = (values) => ({ median: median(values), min: Math.min(...values.filter(Number.isFinite)), max: Math.max(...values.filter(Number.isFinite)), runs: values })

function summarize (results) {
  return metrics.map((m) => {
    const [group, field] = m.from
    const per = results[group] ?? {}
    const base = (per.a ?? []).map((r) => r[field])
    const label = typeof m.label === 'function' ? m.label() : m.label
    const row = { metric: label, chart: m.chart, group, field, target: m.target, absolute: m.absolute === true, digits: m.digits, a: spreadOf(base) }
    for (const k of others) {
      if (per[k] === undefined) continue
      const values = per[k].map((r) => r[field])
      if (m.absolute) {
        row[k] = { ...spreadOf(values), ratio: NaN }
      } else {
        const ratios = values.map((v, i) => v / base[i])
        const s = spreadOf(ratios)
        row[k] = { ratio: s.median, min: s.min, max: s.max, median: median(values), runs: values, ratios }
      }
    }
    return row
  })
}

function table (rows, sweep, present) {
  const lines = []
  const heads = { b: '(b)/(a) plugin, memory store', c: '(c)/(a) Express recipe', d: '(d)/(a) plugin, Redis store', e: '(e)/(a) decryptSession only', f: '(f)/(a) A/B build' }
  const keys = others.filter((k) => present.has(k))
  lines.push(`| metric | (a) bare, absolute | ${keys.map((k) => heads[k]).join(' | ')} | spread over rounds (min–max) | target for (b), (d) |`)
  lines.push(`|---|---:|${keys.map(() => '---:|').join('')}---|---|`)
  for (const r of rows) {
    if (keys.every((k) => r[k] === undefined) && !Number.isFinite(r.a.median)) continue
    if (r.absolute) {
      const cell = (k) => (r[k] === undefined || !Number.isFinite(r[k].median) ? 'n/a' : fmt(r[k].median, r.digits))
      const spread = keys.filter((k) => Number.isFinite(r[k]?.median)).map((k) => `${k} ${fmt(r[k].min, r.digits)}–${fmt(r[k].max, r.digits)}`)
      lines.push(`| ${r.metric} | n/a | ${keys.map(cell).join(' | ')} | ${spread.join('; ')} | ${r.target === undefined ? '' : `≤ ${r.target.toFixed(2)}`} |`)
      continue
    }
    const cell = (k) => (r[k] === undefined ? 'n/a' : `${fmt(r[k].ratio)}×`)
    const spread = [`a ${fmt(r.a.min, r.digits)}–${fmt(r.a.max, r.digits)}`]
    for (const k of keys) if (r[k] !== undefined) spread.push(`${k} ${fmt(r[k].min)}–${fmt(r[k].max)}`)
    lines.push(`| ${r.metric} | ${fmt(r.a.median, r.digits)} | ${keys.map(cell).join(' | ')} | ${spread.join('; ')} | ${r.target === undefined ? '' : `≤ ${r.target.toFixed(2)}×`} |`)
  }
  if (sweep !== undefined) {
    const all = (k) => (sweep[k]?.sweeps ?? [])
    const cell = (k, f, digits) => (all(k).length === 0 ? 'n/a' : fmt(median(all(k).map((s) => s[f])), digits))
    const spread = (f, digits) => ['b', 'd'].filter((k) => all(k).length > 0)
      .map((k) => `${k} ${fmt(Math.min(...all(k).map((s) => s[f])), digits)}–${fmt(Math.max(...all(k).map((s) => s[f])), digits)} (${all(k).length} sweeps)`).join('; ')
    const size = `${config.sweepSessions * config.sweepSocketsPerSession} sockets over ${config.sweepSessions} sessions`
    const row = (label, f, digits, target) => `| ${label} | n/a | ${keys.map((k) => (k === 'b' || k === 'd' ? cell(k, f, digits) : 'n/a')).join(' | ')} | ${spread(f, digits)} | ${target} |`
    lines.push(row(`sweep, ${size}: store reads per distinct session (absolute)`, 'readsPerSession', 2, '≤ 1'))
    lines.push(row(`sweep, ${size}: max event-loop delay during a sweep (ms, absolute)`, 'maxDelayMs', 1, '≤ 10 ms'))
    const baseline = (k) => (sweep[k] === undefined || (k !== 'b' && k !== 'd') ? 'n/a' : fmt(sweep[k].baselineMaxDelayMs, 1))
    lines.push(`| same server between sweeps: max event-loop delay (ms, absolute; GC and machine noise) | n/a | ${keys.map(baseline).join(' | ')} | | |`)
  }
  return lines.join('\n')
}

// ---------------------------------------------------------------------------------------------

const started = performance.now()
const only = cli.only === undefined ? null : new Set(cli.only.split(','))
const redis = await startRedis()
if (redis === null) log('redis-server is not on PATH: variant (d) is skipped')
const selected = variants.filter((v) => (only === null || only.has(v.key) || v.key === 'a' || v.key === 'f') && (!v.redis || redis !== null))
const doSweep = !cli['no-sweep'] && sweepAvailable()

let results
const sweep = {}
try {
  results = cli['only-sweep'] ? {} : await measureAll(selected, redis)
  if (doSweep) {
    for (const variant of selected.filter((v) => v.plugin)) {
      const result = await measureSweep(variant, redis)
      sweep[variant.key] = result
      log(`sweep (${variant.key}): ${result.sweeps.map((s) => `${s.reads} reads/${s.distinctSessions} sessions, ${fmt(s.maxDelayMs, 1)} ms`).join('; ')}`)
    }
  }
} finally {
  if (redis !== null) await redis.stop()
}
if (!doSweep && !cli['no-sweep']) log('the plugin has no expiry sweep yet (no sweep module in dist/): the sweep rows are left out')

// Live authority: its own script (its own Redis and nodes), after everything above has stopped.
let authority
if (phases.has('authority') && !cli['only-sweep']) {
  if (redis === null) {
    log('redis-server is not on PATH: the live-authority bench is skipped')
  } else {
    const startedAt = Date.now()
    const child = fork(join(here, 'authority.mjs'), [...(cli.quick ? ['--quick'] : []), '--rounds', String(config.rounds)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
    children.add(child)
    const code = await new Promise((resolve) => child.once('exit', (c, signal) => { children.delete(child); resolve(c ?? signal) }))
    try {
      const found = JSON.parse(readFileSync(join(here, 'results', 'authority.json'), 'utf8'))
      if (code === 0 && Date.parse(found.date) >= startedAt) authority = found
      else log(`the live-authority bench ended with ${code}: its results are left out`)
    } catch (err) {
      log(`the live-authority bench wrote no results: ${err.message}`)
    }
  }
}

const rows = summarize(results)
const present = new Set(selected.map((v) => v.key))
let markdown = table(rows, doSweep ? sweep : undefined, present)
if (authority !== undefined) markdown += `\n\n### Live authority (bench/authority.mjs)\n\n${authority.markdown.trim()}`
const machine = {
  nproc: cpus().length,
  cpu: cpus()[0]?.model,
  mhz: cpus()[0]?.speed,
  memoryGB: Math.round(totalmem() / 2 ** 30),
  os: `${type()} ${release()}`,
  node: process.version,
  platform: `${process.platform} ${process.arch}`,
  loadavg: loadavg().map((l) => Number(l.toFixed(2)))
}
const versions = packageVersions(['socket.io', 'engine.io', 'ws', 'fastify', '@fastify/session', '@fastify/cookie', 'express', 'express-session', 'connect-redis', 'redis', 'socket.io-client'])
if (redis !== null) versions['redis-server'] = redis.version
const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: here, encoding: 'utf8' }).stdout?.trim() || undefined
const elapsedS = (performance.now() - started) / 1000
const report = { date: new Date().toISOString(), elapsedS, commit, machine, versions, config, variants: Object.fromEntries(selected.map((v) => [v.key, v.name])), rows, results, sweep, authority: authority === undefined ? undefined : { date: authority.date, latency: authority.latency, throughput: authority.throughput, checks: authority.checks }, markdown }
const svg = renderChart({ rows, variants: selected, machine, versions, date: report.date, commit, rounds: config.rounds, authority })
mkdirSync(join(here, 'results'), { recursive: true })
writeFileSync(join(here, 'results', 'latest.json'), JSON.stringify(report, null, 2) + '\n')
writeFileSync(join(here, 'results', 'latest.md'), markdown + '\n')
writeFileSync(join(here, 'results', 'latest.svg'), svg)
console.log(markdown)
console.log(`\n${machine.nproc} × ${machine.cpu}, Node ${machine.node}; ${config.rounds} rounds; ${elapsedS.toFixed(0)} s; bench/results/latest.json, latest.md, latest.svg`)
