// The live-authority bench: how fast a change or an end of a session made by an HTTP request on
// node A reaches the session's socket on node B (revocation latency), and what session sync costs
// the HTTP requests that change sessions (syncSessions on/off, one node and two nodes on Redis).
// Everything on 127.0.0.1: its own redis-server, each node in its own child process
// (servers/authority-node.mjs), the clients in another (authority-client.mjs).
// Usage: node bench/authority.mjs [--rounds 3] [--quick]
import { mkdirSync, writeFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { startChild, withTimeout } from './children.mjs'
import { startRedis } from './redis.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const started = performance.now()
const { values: cli } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    quick: { type: 'boolean', default: false }
  }
})
const scale = cli.quick ? 0.25 : 1
const rounds = Math.max(2, Math.min(8, Number(cli.rounds) || 3))
const config = {
  // Revocation latency: sessions per round, each with sockets on node B (two tabs), one request at a
  // time; after one smaller round that is not counted (JIT, pools).
  latencyRounds: rounds,
  latencySessions: Math.round(200 * scale),
  latencyWarmupSessions: Math.round(50 * scale),
  socketsPerSession: 2,
  latencyTimeoutMs: 5000,
  // A pause between two sessions' requests, so that the teardown of the last one (its websockets
  // closing on B and in the client) does not overlap the next measurement.
  latencyGapMs: 5,
  // Sync cost: short alternating phases, many rounds, after one uncounted round.
  throughputRounds: rounds * 5,
  throughputWarmup: Math.round(1500 * scale),
  throughputRequests: Math.round(600 * scale),
  throughputSessions: Math.round(200 * scale),
  concurrency: 20
}

function log (...args) {
  process.stderr.write(`[authority ${((performance.now() - started) / 1000).toFixed(1)}s] ${args.join(' ')}\n`)
}

// ---------------------------------------------------------------------------------------------
// Child processes (bench/children.mjs), each driven over IPC ({ id, cmd } → { id, result | error });
// all killed on exit. Redis (bench/redis.mjs): a private redis-server on a free loopback port, no
// persistence, stopped at the end.

/** CPU time (µs) the redis-server process used so far, as its INFO cpu reports it (getrusage). */
async function redisCpuUs (redis) {
  const info = await redisCommand(redis.port, ['INFO', 'cpu'])
  const field = (name) => Number(info.match(new RegExp(`${name}:([0-9.]+)`))?.[1])
  return (field('used_cpu_sys') + field('used_cpu_user')) * 1e6
}

/** Sends one command over a new connection and resolves with its reply (a bulk string) as text. */
function redisCommand (port, words) {
  return withTimeout(new Promise((resolve, reject) => {
    const socket = createConnection({ port, host: '127.0.0.1' })
    let reply = ''
    socket.once('error', reject)
    socket.on('data', (chunk) => {
      reply += chunk
      const header = reply.match(/^\$(\d+)\r\n/)
      if (header !== null && Buffer.byteLength(reply) >= header[0].length + Number(header[1]) + 2) {
        socket.end()
        resolve(reply.slice(header[0].length))
      } else if (reply.startsWith('-')) {
        socket.end()
        reject(new Error(`redis: ${reply.trim()}`))
      }
    })
    socket.write(`*${words.length}\r\n${words.map((w) => `$${Buffer.byteLength(w)}\r\n${w}\r\n`).join('')}`)
  }), 5000, `redis ${words[0]}`)
}

// ---------------------------------------------------------------------------------------------
// Statistics.

const sortNum = (values) => values.filter(Number.isFinite).sort((x, y) => x - y)
function percentile (values, p) {
  const v = sortNum(values)
  if (v.length === 0) return NaN
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))]
}
const median = (values) => {
  const v = sortNum(values)
  if (v.length === 0) return NaN
  const mid = v.length >> 1
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}
const spread = (values) => { const v = sortNum(values); return [v[0], v.at(-1)] }
const fmt = (value, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a')

// ---------------------------------------------------------------------------------------------
// The nodes.

async function startNode (name, args) {
  const node = startChild('servers/authority-node.mjs', args)
  const { port } = await node.ready()
  return { name, node, url: `http://127.0.0.1:${port}` }
}

/** Waits (bounded) until the adapter of each node counts `count` nodes: a broadcast before that may miss one. */
async function nodesReady (nodes, count) {
  const deadline = Date.now() + 5000
  for (const n of nodes) {
    while ((await n.node.call('nodes')).nodes < count) {
      if (Date.now() > deadline) throw new Error(`${n.name}: the adapter does not count ${count} nodes`)
      await sleep(20)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 1. Revocation latency: node A changes or ends a session, its socket on node B takes it.

const scenarios = [
  { key: 'ping', label: 'adapter broadcast A → B (baseline: a route on A emits to a room of the socket on B)', event: 'bench:ping' },
  { key: 'change', label: '(a) change that keeps authority: B\'s socket.request.session shows the new value', event: 'authorize re-run on B, new value' },
  { key: 'revoke', label: '(b) change that removes authority (user := undefined): B\'s client gets \'session:end\'', event: 'session:end', reason: 'unauthorized' },
  { key: 'logout', label: '(c) reply.logout() on A: B\'s client gets \'session:end\'', event: 'session:end', reason: 'logout' }
]

async function latencyRound (round, pair, client, count) {
  const [A, B] = pair
  const out = {}
  const checks = []
  const group = `watch-${round}`
  const onB = Array.from({ length: config.socketsPerSession }, () => B.url)
  await client.call('login', { group, url: A.url, count, watch: true })
  const opened = await client.call('open', { group, urls: onB })
  if (opened.failures > 0) throw new Error(`${opened.failures} sockets failed to open on B`)
  for (const scenario of ['ping', 'change']) {
    out[scenario] = (await client.call('latency', { group, url: A.url, scenario, timeoutMs: config.latencyTimeoutMs, gapMs: config.latencyGapMs }, 120_000)).samples
  }
  // What B's sockets hold now must be the last value each saw change: checked through an ack.
  const who = await client.call('whoami', { group })
  const stale = who.answers.flatMap((answers, i) => answers.filter((a) => a === null || a.v !== who.last[i] || a.user !== true)).length
  if (stale > 0) checks.push(`change: ${stale} sockets on B do not show the last change`)
  out.revoke = (await client.call('latency', { group, url: A.url, scenario: 'revoke', timeoutMs: config.latencyTimeoutMs, gapMs: config.latencyGapMs }, 120_000)).samples
  await client.call('close', { group })

  const group2 = `logout-${round}`
  await client.call('login', { group: group2, url: A.url, count })
  const opened2 = await client.call('open', { group: group2, urls: onB })
  if (opened2.failures > 0) throw new Error(`${opened2.failures} sockets failed to open on B`)
  out.logout = (await client.call('latency', { group: group2, url: A.url, scenario: 'logout', timeoutMs: config.latencyTimeoutMs, gapMs: config.latencyGapMs }, 120_000)).samples
  await client.call('close', { group: group2 })

  for (const s of scenarios) {
    const samples = out[s.key]
    const missed = samples.filter((x) => x.eventMs === null || (x.disconnectMs === null)).length
    if (missed > 0) checks.push(`${s.key}: ${missed} sockets did not get it within ${config.latencyTimeoutMs} ms`)
    if (s.reason !== undefined) {
      const wrong = samples.filter((x) => x.eventMs !== null && (x.eventReason !== s.reason || x.disconnectReason !== 'io server disconnect')).length
      if (wrong > 0) checks.push(`${s.key}: ${wrong} wrong reasons`)
    }
  }
  const badResults = out.logout.filter((x) => x.result?.sockets !== config.socketsPerSession || x.result?.nodes !== 2 || x.result?.unacknowledged !== 0).length
  if (badResults > 0) checks.push(`logout: ${badResults} results other than { sockets: ${config.socketsPerSession}, nodes: 2, unacknowledged: 0 }`)
  return { samples: out, checks }
}

function summarizeLatency (runs) {
  return scenarios.map((s) => {
    const perRound = runs.map((r) => r.samples[s.key])
    const all = perRound.flat()
    const last = (x) => (s.key === 'revoke' || s.key === 'logout' ? x.disconnectMs : x.eventMs)
    const row = {
      scenario: s.key,
      label: s.label,
      samples: all.length,
      event: { p50: percentile(all.map((x) => x.eventMs), 50), p99: percentile(all.map((x) => x.eventMs), 99) },
      response: { p50: percentile(all.map((x) => x.responseMs), 50), p99: percentile(all.map((x) => x.responseMs), 99) },
      // What a user of the page on B lives with: how long after A's response B's socket still has
      // the old authority (0 when B had it before the response reached the client).
      stale: {
        p50: percentile(all.map((x) => Math.max(0, last(x) - x.responseMs)), 50),
        p99: percentile(all.map((x) => Math.max(0, last(x) - x.responseMs)), 99)
      },
      beforeResponse: all.filter((x) => last(x) !== null && last(x) <= x.responseMs).length / all.length,
      roundP50: spread(perRound.map((samples) => percentile(samples.map((x) => x.eventMs), 50)))
    }
    if (s.key === 'revoke' || s.key === 'logout') {
      row.disconnect = { p50: percentile(all.map((x) => x.disconnectMs), 50), p99: percentile(all.map((x) => x.disconnectMs), 99) }
    }
    // Ratio of each round's p50 to the broadcast's p50 in the same round.
    const ratios = runs.map((r) => percentile(r.samples[s.key].map((x) => x.eventMs), 50) / percentile(r.samples.ping.map((x) => x.eventMs), 50))
    row.ratioToBroadcast = { median: median(ratios), range: spread(ratios) }
    return row
  })
}

// ---------------------------------------------------------------------------------------------
// 2. What sync costs an HTTP request that changes a session.

const topologies = [
  { key: 'single', label: 'one node, in-memory store' },
  { key: 'pair', label: 'two nodes, Redis' }
]

async function throughputPhase (variant, client, redis, n) {
  const nodes = variant.nodes
  const before = await Promise.all(nodes.map((x) => x.node.call('usage')))
  const redisBefore = await redisCpuUs(redis)
  const run = await client.call('load', { group: variant.group, url: nodes[0].url, n, concurrency: config.concurrency }, 120_000)
  const redisAfter = await redisCpuUs(redis)
  const after = await Promise.all(nodes.map((x) => x.node.call('usage')))
  const ok = n - run.failures
  if (run.failures > 0) log(`${variant.key}: ${run.failures} failed requests`)
  return {
    rps: ok / (run.elapsedMs / 1000),
    cpuUs: after.reduce((s, u, i) => s + u.cpuUs - before[i].cpuUs, 0) / ok,
    cpuServingUs: (after[0].cpuUs - before[0].cpuUs) / ok,
    redisCpuUs: variant.redis ? (redisAfter - redisBefore) / ok : NaN,
    p50: run.p50,
    p99: run.p99,
    failures: run.failures
  }
}

function summarizeThroughput (results) {
  const rows = []
  const fields = [
    { field: 'rps', label: 'requests/s (client wall time)', digits: 0 },
    { field: 'cpuUs', label: 'server CPU per request, all nodes (µs)', digits: 0 },
    { field: 'cpuServingUs', label: 'server CPU per request, node A alone (µs)', digits: 0, pairOnly: true },
    { field: 'redisCpuUs', label: 'redis-server CPU per request (µs)', digits: 0, pairOnly: true },
    { field: 'p99', label: 'request latency p99 (ms)', digits: 1 }
  ]
  for (const t of topologies) {
    for (const f of fields) {
      if (f.pairOnly && t.key !== 'pair') continue
      const on = results[`${t.key}-on`].map((r) => r[f.field])
      const off = results[`${t.key}-off`].map((r) => r[f.field])
      const ratios = on.map((v, i) => v / off[i]) // same round: the machine's state cancels out
      rows.push({
        topology: t.key,
        label: t.label,
        metric: f.label,
        field: f.field,
        digits: f.digits,
        off: { median: median(off), range: spread(off), runs: off },
        on: { median: median(on), range: spread(on), runs: on },
        ratio: { median: median(ratios), range: spread(ratios), runs: ratios }
      })
    }
  }
  return rows
}

// ---------------------------------------------------------------------------------------------
// The report.

function tables (latency, throughput) {
  const lines = []
  lines.push(`Revocation latency: node A → node B over Redis (@socket.io/redis-adapter, connect-redis), ${config.latencySessions} sessions × ${config.latencyRounds} rounds, each with ${config.socketsPerSession} websockets on B; one request at a time (${config.latencyGapMs} ms apart); times in ms from sending the request to A, to the last of the session's sockets on B.`)
  lines.push('')
  lines.push('| scenario | request → event on B, p50 / p99 | request → disconnect on B, p50 / p99 | HTTP response, p50 / p99 | stale after the response, p50 / p99 | on B before the response | event p50 ÷ broadcast p50 (rounds min–max) |')
  lines.push('|---|---:|---:|---:|---:|---:|---|')
  for (const r of latency) {
    const pp = (x) => (x === undefined ? '—' : `${fmt(x.p50)} / ${fmt(x.p99)}`)
    const rounds = `${pp(r.event)} (round p50s ${fmt(r.roundP50[0])}–${fmt(r.roundP50[1])})`
    const ratio = r.scenario === 'ping' ? '1 (baseline)' : `${fmt(r.ratioToBroadcast.median)}× (${fmt(r.ratioToBroadcast.range[0])}–${fmt(r.ratioToBroadcast.range[1])})`
    lines.push(`| ${r.label} | ${rounds} | ${pp(r.disconnect)} | ${pp(r.response)} | ${pp(r.stale)} | ${Math.round(r.beforeResponse * 100)} % | ${ratio} |`)
  }
  lines.push('')
  lines.push(`Cost of sync: POST /change (sets a field) with ${config.concurrency} in flight, ${config.throughputRequests} requests per phase over ${config.throughputSessions} sessions, each with a connected websocket on every node (two nodes: requests to A, sockets on A and B); ${config.throughputRounds} rounds, syncSessions on and off interleaved, medians with min–max over rounds.`)
  lines.push('')
  lines.push('| nodes | metric | syncSessions: false | syncSessions: true | on ÷ off (same round) |')
  lines.push('|---|---|---:|---:|---|')
  for (const r of throughput) {
    const cell = (x) => `${fmt(x.median, r.digits)} (${fmt(x.range[0], r.digits)}–${fmt(x.range[1], r.digits)})`
    lines.push(`| ${r.label} | ${r.metric} | ${cell(r.off)} | ${cell(r.on)} | ${fmt(r.ratio.median)}× (${fmt(r.ratio.range[0])}–${fmt(r.ratio.range[1])}) |`)
  }
  return lines.join('\n')
}

// ---------------------------------------------------------------------------------------------

const redis = await startRedis().catch((err) => {
  console.error(`bench/authority.mjs: ${err.message}`)
  process.exit(1)
})
if (redis === null) {
  console.error('bench/authority.mjs: redis-server is not on PATH (Debian: apt-get install redis-server); the live-authority bench needs a real Redis for its two nodes')
  process.exit(1)
}
const servers = []
let client
const latencyRuns = []
const throughputResults = {}
const syncChecks = {}
const extraChecks = []
let failure
try {
  const nodeArgs = (key, sync) => ['--store=redis', `--redis=${redis.url}`, `--key=${key}`, `--sync=${sync}`]
  const [A, B, Aoff, Boff, memOn, memOff] = await Promise.all([
    startNode('A (sync on)', nodeArgs('bench-authority-on', 'on')),
    startNode('B (sync on)', nodeArgs('bench-authority-on', 'on')),
    startNode('A (sync off)', nodeArgs('bench-authority-off', 'off')),
    startNode('B (sync off)', nodeArgs('bench-authority-off', 'off')),
    startNode('single (sync on)', ['--store=memory', '--sync=on']),
    startNode('single (sync off)', ['--store=memory', '--sync=off'])
  ])
  servers.push(A, B, Aoff, Boff, memOn, memOff)
  await nodesReady([A, B], 2)
  await nodesReady([Aoff, Boff], 2)
  client = startChild('authority-client.mjs')
  log(`nodes up; redis-server ${redis.version}`)

  // 1. Revocation latency, in rounds (round 0: warm-up, not counted).
  for (let round = 0; round <= config.latencyRounds; round++) {
    const run = await latencyRound(round, [A, B], client, round === 0 ? config.latencyWarmupSessions : config.latencySessions)
    if (round > 0) latencyRuns.push(run)
    else extraChecks.push(...run.checks.map((c) => `warm-up: ${c}`))
    const p50 = (key) => fmt(percentile(run.samples[key].map((x) => x.eventMs), 50))
    log(`latency round ${round}: p50 ping ${p50('ping')}, change ${p50('change')}, revoke ${p50('revoke')}, logout ${p50('logout')} ms${run.checks.length > 0 ? `; CHECKS: ${run.checks.join('; ')}` : ''}`)
  }

  // 2. Sync cost: the sessions and their sockets stay open through every round.
  const variants = [
    { key: 'single-on', group: 'tp-single-on', nodes: [memOn] },
    { key: 'single-off', group: 'tp-single-off', nodes: [memOff] },
    { key: 'pair-on', group: 'tp-pair-on', nodes: [A, B], redis: true },
    { key: 'pair-off', group: 'tp-pair-off', nodes: [Aoff, Boff], redis: true }
  ]
  for (const v of variants) {
    await client.call('login', { group: v.group, url: v.nodes[0].url, count: config.throughputSessions })
    const opened = await client.call('open', { group: v.group, urls: v.nodes.map((x) => x.url) })
    if (opened.failures > 0) throw new Error(`${v.key}: ${opened.failures} sockets failed to open`)
  }
  for (const v of variants) await throughputPhase(v, client, redis, config.throughputWarmup)
  // Rounds that visit every variant, starting one further each round, so that neither on nor off
  // always runs first.
  for (let round = 0; round <= config.throughputRounds; round++) {
    const order = variants.map((_, i) => variants[(i + round) % variants.length])
    const brief = []
    for (const v of order) {
      const r = await throughputPhase(v, client, redis, config.throughputRequests)
      if (round > 0) (throughputResults[v.key] ??= []).push(r)
      brief.push(`${v.key} ${fmt(r.rps, 0)}/s ${fmt(r.cpuUs, 0)} µs`)
    }
    log(`throughput round ${round}${round === 0 ? ' (not counted)' : ''}: ${brief.join(', ')}`)
  }
  // With sync on every socket shows the last value its session was set to; with sync off none does
  // (no socket event read the session since it connected). Last value of session j: the last request
  // i of the last phase with i mod sessions = j.
  await sleep(200)
  const S = config.throughputSessions
  const n = config.throughputRequests
  for (const v of variants) {
    const { answers } = await client.call('whoami', { group: v.group })
    const current = answers.flatMap((list, j) => list.map((a) => a?.v === j + S * Math.floor((n - 1 - j) / S))).filter(Boolean).length
    const total = answers.flat().length
    syncChecks[v.key] = { current, total }
    const expected = v.key.endsWith('-on') ? total : 0
    if (current !== expected) extraChecks.push(`${v.key}: ${current} of ${total} sockets show their session's last value (expected ${expected})`)
    await client.call('close', { group: v.group })
  }
} catch (err) {
  failure = err
} finally {
  if (client !== undefined) await client.stop()
  await Promise.all(servers.map((s) => s.node.stop()))
  await redis.stop()
}
if (failure !== undefined) {
  console.error(failure)
  process.exit(1)
}

const latency = summarizeLatency(latencyRuns)
const throughput = summarizeThroughput(throughputResults)
const checks = [...latencyRuns.flatMap((r) => r.checks), ...extraChecks]
const markdown = tables(latency, throughput)
const machine = {
  nproc: cpus().length,
  cpu: cpus()[0]?.model,
  node: process.version,
  platform: `${process.platform} ${process.arch}`,
  redis: redis.version,
  loadavg: loadavg().map((x) => Number(x.toFixed(2)))
}
const elapsedS = (performance.now() - started) / 1000
const report = { date: new Date().toISOString(), elapsedS, machine, config, checks, syncChecks, latency, throughput, raw: { latency: latencyRuns, throughput: throughputResults }, markdown }
mkdirSync(join(here, 'results'), { recursive: true })
writeFileSync(join(here, 'results', 'authority.json'), JSON.stringify(report, null, 2) + '\n')
writeFileSync(join(here, 'results', 'authority.md'), markdown + '\n')
console.log(markdown)
console.log(`\n${checks.length === 0 ? 'checks: all passed (values seen on B, reasons, logout results; after the throughput rounds every socket shows its session\'s last value with sync on, none with sync off)' : `CHECKS FAILED: ${checks.join('; ')}`}`)
console.log(`${machine.nproc} × ${machine.cpu}, Node ${machine.node}, Redis ${machine.redis}; ${elapsedS.toFixed(0)} s; bench/results/authority.json`)
if (checks.length > 0) process.exitCode = 1
