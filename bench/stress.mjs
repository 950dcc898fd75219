// Stress: what the plugin withstands, with figures (issue 11, points 4 and 6). Loopback only; starts
// and stops its own servers, load generators and Redis; every phase bounded in count and time.
//   1. Leaks: 20,000 connect/disconnect cycles (websocket and polling→websocket, two namespaces, half of
//      them sending an event that saves): heap after GC against the start, what is left per session,
//      then fastify.close() and the active handles and timers.
//   2. Load on one node: 5,000 authenticated sockets (1,000 sessions × 5) held by this plugin and by
//      bare Socket.IO in the same run, in alternating rounds: heap and RSS per socket; with the plugin,
//      the expiry sweep's duration and the event-loop delay during it, and handshake latency while held.
//   3. Two nodes on Redis (connect-redis + the Redis adapter), 2,000 sockets each: logout fan-out, from
//      the logout request on one node to each socket's disconnect, on that node and on the other.
// Usage: node bench/stress.mjs [--quick] [--only cycles,load,redis]   (npm run stress builds first)
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { startChild as forkChild } from './children.mjs'
import { startRedis } from './redis.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const { values: cli } = parseArgs({ options: { quick: { type: 'boolean', default: false }, only: { type: 'string' } } })
const scale = cli.quick ? 0.1 : 1
const only = cli.only === undefined ? null : new Set(cli.only.split(','))
const config = {
  cycles: Math.round(20_000 * scale),
  cyclesWarmup: Math.round(2_000 * scale),
  cycleSessions: 200,
  heldSockets: Math.round(5_000 * scale),
  heldSessions: Math.round(1_000 * scale),
  heldRounds: 2,
  sweepIntervalMs: 5_000,
  latencyHandshakes: Math.round(300 * scale),
  nodeSockets: Math.round(2_000 * scale),
  nodeSessions: Math.round(200 * scale),
  logouts: Math.round(100 * scale)
}
const started = performance.now()
const log = (...args) => process.stderr.write(`[stress ${((performance.now() - started) / 1000).toFixed(0)}s] ${args.join(' ')}\n`)

// ---------------------------------------------------------------------------------------------
// Child processes (bench/children.mjs): tracked, and killed on the way out. `ready()` resolves with
// the child's URL.

function startChild (file, args = []) {
  const child = forkChild(file, args, { execArgv: ['--expose-gc'], readyTimeoutMs: 30_000, callTimeoutMs: 300_000 })
  return { ...child, ready: async () => `http://127.0.0.1:${(await child.ready()).port}` }
}

const median = (values) => {
  const v = values.filter(Number.isFinite).sort((x, y) => x - y)
  return v.length === 0 ? NaN : v.length % 2 === 1 ? v[v.length >> 1] : (v[(v.length >> 1) - 1] + v[v.length >> 1]) / 2
}
const fmt = (value, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a')
const kb = (bytes) => fmt(bytes / 1024, 2)

// ---------------------------------------------------------------------------------------------
// 1. Leaks

async function cyclesPhase () {
  const server = startChild('servers/stress.mjs', ['--validate-interval=1000'])
  const loads = [startChild('stress-client.mjs'), startChild('stress-client.mjs')]
  try {
    const url = await server.ready()
    const cookies = await loads[0].call('loginMany', { url, count: config.cycleSessions })
    const run = async (n, offset) => {
      const results = await Promise.all(loads.map((load, k) => load.call('cycles', { url, cookies, n: n / 2, offset: offset + k * (n / 2) })))
      await server.call('clients', { clients: 0, timeoutMs: 30_000 })
      return results.reduce((sum, r) => ({ n: sum.n + r.n, failures: sum.failures + r.failures, saves: sum.saves + r.saves, elapsedMs: Math.max(sum.elapsedMs, r.elapsedMs) }), { n: 0, failures: 0, saves: 0, elapsedMs: 0 })
    }
    await run(config.cyclesWarmup, 0)
    await sleep(2500) // two sweeps with nothing left to check
    const start = await server.call('mem', { clients: 0 })
    const cycles = await run(config.cycles, config.cyclesWarmup)
    await sleep(2500)
    const end = await server.call('mem', { clients: 0 })
    const state = await server.call('state')
    const close = await server.call('closeCheck')
    const result = { cycles, heapStart: start.heapUsed, heapEnd: end.heapUsed, heapDelta: end.heapUsed - start.heapUsed, rssStart: start.rss, rssEnd: end.rss, state, close }
    log(`cycles: ${cycles.n} in ${fmt(cycles.elapsedMs / 1000)} s (${cycles.failures} failed, ${cycles.saves} saves); heap ${kb(start.heapUsed)} → ${kb(end.heapUsed)} KB; state ${JSON.stringify(state.namespaces)}; after close ${JSON.stringify(close.afterClose)}`)
    return result
  } finally {
    await Promise.all(loads.map((l) => l.stop()))
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Load on one node, against bare Socket.IO

async function heldPhase () {
  const plugin = startChild('servers/stress.mjs', [`--validate-interval=${config.sweepIntervalMs}`])
  const bare = startChild('servers/bare.mjs')
  const loads = [startChild('stress-client.mjs'), startChild('stress-client.mjs')]
  const rounds = []
  try {
    const pluginUrl = await plugin.ready()
    const bareUrl = await bare.ready()
    const cookies = await loads[0].call('loginMany', { url: pluginUrl, count: config.heldSessions })
    const perCookie = Math.ceil(config.heldSockets / cookies.length)
    const hold = async (server, url, withCookies) => {
      const before = await server.call('mem', { clients: 0 })
      const halves = [0, 1].map((k) => withCookies ? cookies.filter((_, i) => i % 2 === k) : ['none=1'])
      const opened = await Promise.all(loads.map((load, k) => load.call('open', { url, cookies: halves[k], perCookie: withCookies ? perCookie : config.heldSockets, count: config.heldSockets / 2 })))
      const sockets = opened.reduce((s, r) => s + r.opened, 0)
      const after = await server.call('mem', { clients: sockets })
      return { sockets, failures: opened.reduce((s, r) => s + r.failures, 0), heap: (after.heapUsed - before.heapUsed) / sockets, rss: (after.rss - before.rss) / sockets }
    }
    const release = async (server) => {
      await Promise.all(loads.map((load) => load.call('closeAll')))
      await server.call('clients', { clients: 0, timeoutMs: 60_000 })
    }
    for (let round = 1; round <= config.heldRounds; round++) {
      const bareRound = await hold(bare, bareUrl, false)
      await release(bare)
      const pluginRound = await hold(plugin, pluginUrl, true)
      // While they are held: handshake latency, then one whole sweep watched with a 1 ms probe.
      const latency = await loads[0].call('latency', { url: pluginUrl, cookie: cookies[0], n: config.latencyHandshakes })
      const { now } = await plugin.call('now')
      await plugin.call('probeStart')
      await sleep(config.sweepIntervalMs + 2000)
      const probe = await plugin.call('probeStop')
      const { reads } = await plugin.call('reads', { since: now })
      await release(plugin)
      // A sweep is a burst of store reads (one per session); the latency runs' reads come before.
      const bursts = []
      for (const t of reads) {
        const last = bursts.at(-1)
        if (last !== undefined && t - last.last < 500) { last.last = t; last.reads++ } else bursts.push({ first: t, last: t, reads: 1 })
      }
      const sweep = bursts.filter((b) => b.reads >= cookies.length * 0.9).at(-1)
      const during = sweep === undefined ? [] : probe.samples.filter(([t]) => t >= sweep.first - 5 && t <= sweep.last + 50).map(([, lag]) => lag)
      const outside = probe.samples.filter(([t]) => sweep === undefined || t < sweep.first - 5 || t > sweep.last + 50).map(([, lag]) => lag)
      const result = {
        bare: bareRound,
        plugin: pluginRound,
        latency,
        sweep: sweep === undefined ? null : { sessions: sweep.reads, ms: sweep.last - sweep.first, maxDelayMs: Math.max(0, ...during) },
        baselineMaxDelayMs: Math.max(0, ...outside)
      }
      rounds.push(result)
      log(`held, round ${round}: heap/socket bare ${kb(bareRound.heap)} KB, plugin ${kb(pluginRound.heap)} KB; handshake p99 ${fmt(latency.p99, 2)} ms; sweep ${JSON.stringify(result.sweep)}`)
    }
    return { sessions: cookies.length, perCookie, rounds }
  } finally {
    await Promise.all(loads.map((l) => l.stop()))
    await plugin.stop()
    await bare.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Two nodes on Redis: logout fan-out across nodes

async function redisPhase (redis) {
  const nodes = [startChild('servers/stress.mjs', ['--store=redis', `--redis=${redis.url}`]), startChild('servers/stress.mjs', ['--store=redis', `--redis=${redis.url}`])]
  const loads = [startChild('stress-client.mjs'), startChild('stress-client.mjs')]
  try {
    const urls = await Promise.all(nodes.map((node) => node.ready()))
    await sleep(500) // the adapters subscribe
    const cookies = await loads[0].call('loginMany', { url: urls[0], count: config.nodeSessions })
    const perCookie = Math.ceil(config.nodeSockets / cookies.length)
    // Each session has sockets on both nodes; each load generator holds both nodes' sockets of half the sessions.
    const halves = [0, 1].map((k) => cookies.filter((_, i) => i % 2 === k))
    await Promise.all(loads.map(async (load, k) => {
      for (const url of urls) await load.call('open', { url, cookies: halves[k], perCookie, count: halves[k].length * perCookie })
    }))
    const held = await Promise.all(nodes.map((node) => node.call('state')))
    const logouts = Math.min(config.logouts, cookies.length)
    const fanouts = await Promise.all(loads.map((load, k) => load.call('logoutFanout', { logoutUrl: urls[k], cookies: halves[k].slice(0, logouts / 2) })))
    await Promise.all(loads.map((load) => load.call('closeAll')))
    const merge = (key) => {
      const all = fanouts.map((f) => f[key])
      return { n: all.reduce((s, x) => s + x.n, 0), p50: median(all.map((x) => x.p50)), p99: Math.max(...all.map((x) => x.p99)), max: Math.max(...all.map((x) => x.max)) }
    }
    const result = { socketsPerNode: held.map((s) => s.clients), sessions: cookies.length, logouts, missing: fanouts.reduce((s, f) => s + f.missing, 0), sameNode: merge('sameNode'), otherNode: merge('otherNode') }
    log(`redis: ${result.socketsPerNode.join(' + ')} sockets, ${logouts} logouts; same node p99 ${fmt(result.sameNode.p99, 1)} ms, other node p99 ${fmt(result.otherNode.p99, 1)} ms; ${result.missing} missed`)
    return result
  } finally {
    await Promise.all(loads.map((l) => l.stop()))
    await Promise.all(nodes.map((n) => n.stop()))
  }
}

// ---------------------------------------------------------------------------------------------

const results = {}
const redis = only === null || only.has('redis') ? await startRedis() : null
try {
  if (only === null || only.has('cycles')) results.cycles = await cyclesPhase()
  if (only === null || only.has('load')) results.held = await heldPhase()
  if (redis !== null) results.redis = await redisPhase(redis)
  else if (only === null || only.has('redis')) log('redis-server is not on PATH: the two-node phase is skipped')
} finally {
  if (redis !== null) await redis.stop()
}

const rows = []
if (results.cycles !== undefined) {
  const c = results.cycles
  const left = Object.entries(c.state.namespaces).map(([name, s]) => `${name}: ${s.sockets} sockets, ${s.rooms} rooms, ${s.sids} ids`).join('; ')
  rows.push(['connect/disconnect cycles (websocket and polling, 2 namespaces, half saving)', `${c.cycles.n} in ${fmt(c.cycles.elapsedMs / 1000, 0)} s, ${c.cycles.failures} failed`])
  rows.push(['heap after GC, after − before the cycles', `${kb(c.heapDelta)} KB (${fmt(c.heapDelta / c.cycles.n, 1)} B per cycle; ${kb(c.heapStart)} → ${kb(c.heapEnd)} KB)`])
  rows.push(['left after the cycles', `${c.state.clients} connections; ${left}`])
  rows.push(['active handles and timers after fastify.close()', `${JSON.stringify(c.close.afterClose)} (at start: ${JSON.stringify(c.close.atStart)})`])
}
if (results.held !== undefined) {
  const r = results.held.rounds
  const spread = (values, digits) => `${fmt(median(values), digits)} (${fmt(Math.min(...values), digits)}–${fmt(Math.max(...values), digits)})`
  rows.push([`heap per open socket, ${config.heldSockets} sockets (KB): bare Socket.IO`, spread(r.map((x) => x.bare.heap / 1024), 2)])
  rows.push(['heap per open socket (KB): this plugin, authenticated', `${spread(r.map((x) => x.plugin.heap / 1024), 2)}, ${fmt(median(r.map((x) => x.plugin.heap / x.bare.heap)), 2)}× bare`])
  rows.push(['RSS per open socket (KB): bare / plugin', `${spread(r.map((x) => x.bare.rss / 1024), 2)} / ${spread(r.map((x) => x.plugin.rss / 1024), 2)}`])
  rows.push([`expiry sweep of ${results.held.sessions} sessions (${config.heldSockets} sockets): duration (ms)`, spread(r.map((x) => x.sweep?.ms ?? NaN), 1)])
  rows.push(['max event-loop delay during the sweep (ms); between sweeps', `${spread(r.map((x) => x.sweep?.maxDelayMs ?? NaN), 1)}; ${spread(r.map((x) => x.baselineMaxDelayMs), 1)}`])
  rows.push([`handshake latency while ${config.heldSockets} are held, p50 / p99 (ms)`, `${spread(r.map((x) => x.latency.p50), 2)} / ${spread(r.map((x) => x.latency.p99), 2)}`])
}
if (results.redis !== undefined) {
  const x = results.redis
  rows.push([`two nodes on Redis, ${x.socketsPerNode.join(' + ')} sockets: logout fan-out, same node p50 / p99 (ms)`, `${fmt(x.sameNode.p50)} / ${fmt(x.sameNode.p99)} (${x.sameNode.n} sockets, ${x.logouts} logouts)`])
  rows.push(['logout fan-out to the other node, p50 / p99 (ms)', `${fmt(x.otherNode.p50)} / ${fmt(x.otherNode.p99)} (${x.otherNode.n} sockets; ${x.missing} not disconnected)`])
}
const markdown = ['| what | figure |', '|---|---|', ...rows.map(([what, figure]) => `| ${what} | ${figure} |`)].join('\n')
const machine = { nproc: cpus().length, cpu: cpus()[0]?.model, memoryGB: Math.round(totalmem() / 2 ** 30), node: process.version, platform: `${process.platform} ${process.arch}` }
const elapsedS = (performance.now() - started) / 1000
mkdirSync(join(here, 'results'), { recursive: true })
writeFileSync(join(here, 'results', 'stress.json'), JSON.stringify({ date: new Date().toISOString(), elapsedS, machine, config, results, markdown }, null, 2) + '\n')
writeFileSync(join(here, 'results', 'stress.md'), markdown + '\n')
console.log(markdown)
console.log(`\n${machine.nproc} × ${machine.cpu}, ${machine.memoryGB} GB, Node ${machine.node}; ${elapsedS.toFixed(0)} s; bench/results/stress.json`)
