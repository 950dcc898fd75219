// Where the time and memory go: CPU profiles of the handshake and heap snapshots with sockets open,
// for bare Socket.IO (a) and this plugin with the in-memory store (b) (or any variants given),
// then the difference per handshake (µs, by function and by package) and per socket (bytes, by
// object). Usage: node bench/profile.mjs [--variants a,b] [--handshakes 3000] [--sockets 2000]
// [--heap-sessions] (heap snapshots with one session per socket) [--skip-cpu] (heap only)
// [--fanout 1000] (also a CPU profile of a logout with that many sockets of one session, per socket)
// [--storm 1000] (also a CPU profile of a reconnect storm: that many sessions × 5 sockets dropped at
// once and back within a second, per socket). Profiles land in bench/results/profiles/ (git-ignored),
// the summary in bench/results/profile.md.
import { fork } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const out = join(here, 'results', 'profiles')
mkdirSync(out, { recursive: true })

const { values: cli } = parseArgs({
  options: {
    variants: { type: 'string', default: 'a,b' },
    handshakes: { type: 'string', default: '3000' },
    polling: { type: 'string', default: '1000' },
    sockets: { type: 'string', default: '2000' },
    storm: { type: 'string', default: '0' },
    fanout: { type: 'string', default: '0' },
    'heap-sessions': { type: 'boolean', default: false },
    'skip-cpu': { type: 'boolean', default: false },
    'analyze-only': { type: 'boolean', default: false }
  }
})
const N = { websocket: Number(cli.handshakes), polling: Number(cli.polling) }
const K = Number(cli.sockets)
const stormSessions = Number(cli.storm)
const stormPer = 5
const fanoutSockets = Number(cli.fanout)
const keys = cli.variants.split(',')
// The Cookie header bare Socket.IO gets: the shape of the plugin's (a browser sends it to any server).
const sameShapeCookie = `sessionId=${'x'.repeat(32)}.${'y'.repeat(43)}`
const servers = {
  a: { file: 'servers/bare.mjs', args: [], session: false },
  b: { file: 'servers/fastify.mjs', args: ['--store=memory', '--validate-interval=600000'], session: true },
  e: { file: 'servers/fastify.mjs', args: ['--store=memory', '--handwired'], session: true },
  c: { file: 'servers/express.mjs', args: [], session: true }
}
const transports = {
  websocket: { transports: ['websocket'], upgrade: false },
  polling: { transports: ['polling', 'websocket'], upgrade: true }
}

const children = new Set()
process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })

function start (file, args = [], execArgv = []) {
  const child = fork(join(here, file), args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.add(child)
  child.on('exit', () => children.delete(child))
  let seq = 0
  const pending = new Map()
  let onReady
  const ready = new Promise((resolve) => { onReady = resolve })
  child.on('message', (msg) => {
    if (msg?.ready) return onReady(msg)
    const p = pending.get(msg?.id)
    if (p === undefined) return
    pending.delete(msg.id)
    if (msg.error !== undefined) p.reject(new Error(msg.error))
    else p.resolve(msg.result)
  })
  return {
    ready,
    call: (cmd, params = {}) => new Promise((resolve, reject) => {
      const id = ++seq
      pending.set(id, { resolve, reject })
      child.send({ id, cmd, ...params })
    }),
    async stop () {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      await this.call('exit').catch(() => {})
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }
  }
}

async function record (key) {
  const spec = servers[key]
  const server = start(spec.file, spec.args, ['--expose-gc'])
  const load = start('load.mjs')
  try {
    const { port } = await server.ready
    const url = `http://127.0.0.1:${port}`
    const headers = { origin: url }
    // every server gets a Cookie header, as a browser sends it (bare Socket.IO ignores it)
    headers.cookie = spec.session ? await load.call('login', { url }) : sameShapeCookie
    // Warm-up: about 3000 handshakes before the CPU per handshake stops falling (see run.mjs).
    await load.call('handshakes', { url, headers, ...transports.websocket, n: 3000, concurrency: 50 })
    await load.call('handshakes', { url, headers, ...transports.polling, n: 500, concurrency: 50 })
    for (const [name, t] of Object.entries(transports)) {
      if (cli['skip-cpu']) break
      await server.call('cpu', { clients: 0 })
      await server.call('profileStart', { intervalUs: 100 })
      const before = await server.call('cpu', { clients: 0 })
      await load.call('handshakes', { url, headers, ...t, n: N[name], concurrency: 50 })
      const after = await server.call('cpu', { clients: 0 })
      await server.call('profileStop', { path: join(out, `${key}-${name}.cpuprofile`) })
      console.error(`(${key}) ${name}: ${((after.cpuUs - before.cpuUs) / N[name]).toFixed(0)} µs CPU per handshake while profiled`)
    }
    // --heap-sessions: each socket with a session of its own (logged in before the first snapshot)
    const cookies = spec.session && cli['heap-sessions'] ? await load.call('loginMany', { url, headers: { origin: url }, count: K, concurrency: 10 }) : undefined
    await server.call('heapSnapshot', { path: join(out, `${key}-0.heapsnapshot`), clients: 0 })
    await load.call('open', { url, headers, cookies, ...transports.websocket, count: K, concurrency: 50 })
    const snap = await server.call('heapSnapshot', { path: join(out, `${key}-${K}.heapsnapshot`), clients: K })
    console.error(`(${key}) heap snapshots with 0 and ${K} sockets written (${snap.heapUsed} bytes used)`)
    await load.call('closeAll')
    if (stormSessions > 0) await recordStorm(key, spec, server, load, url, headers)
    if (fanoutSockets > 0) await recordFanout(key, spec, server, load, url, headers)
  } finally {
    await load.stop()
    await server.stop()
  }
}

/** A logout with fanoutSockets sockets of one session, profiled (bare: disconnectSockets(true) of a room). */
async function recordFanout (key, spec, server, load, url, headers) {
  for (const profiled of [false, true]) { // the first one warms up
    const h = spec.session ? { origin: url, cookie: await load.call('login', { url }) } : headers
    const open = await load.call('fanoutOpen', { url, headers: h, query: spec.session ? undefined : { room: '1' }, transports: ['websocket'], count: fanoutSockets, concurrency: 50 })
    await server.call('clients', { clients: open.opened, timeoutMs: 30_000 })
    const before = await server.call('cpu', { clients: open.opened })
    if (profiled) await server.call('profileStart', { intervalUs: 100 })
    const run = await load.call('fanoutLogout', { url, logoutHeaders: h })
    await server.call('clients', { clients: 0, timeoutMs: 30_000 })
    if (profiled) await server.call('profileStop', { path: join(out, `${key}-fanout.cpuprofile`) })
    const after = await server.call('cpu', { clients: 0 })
    if (profiled) console.error(`(${key}) logout of ${open.opened} sockets: ${((after.cpuUs - before.cpuUs) / 1000).toFixed(1)} ms CPU, ${run.fanoutMs?.toFixed(1)} ms to the last disconnect`)
  }
}

/** A reconnect storm, profiled: stormSessions × 5 sockets dropped at once, back within a second. */
async function recordStorm (key, spec, server, load, url, headers) {
  const cookies = spec.session ? await load.call('loginMany', { url, headers: { origin: url }, count: stormSessions, concurrency: 10 }) : undefined
  const total = stormSessions * stormPer
  const reconnect = { reconnectionDelay: 500, reconnectionDelayMax: 1000, randomizationFactor: 1 }
  const open = () => load.call('stormOpen', { url, headers: cookies === undefined ? headers : { origin: url }, cookies, perCookie: stormPer, count: total, transports: ['websocket'], reconnect, concurrency: 50 })
  for (const profiled of [false, true]) { // the first storm warms up
    await open()
    await server.call('clients', { clients: total, timeoutMs: 60_000 })
    const before = await server.call('cpu', { clients: total })
    if (profiled) await server.call('profileStart', { intervalUs: 100 })
    await server.call('dropAll')
    const wait = await load.call('stormWait', { timeoutMs: 60_000 })
    await server.call('clients', { clients: total, timeoutMs: 60_000 })
    if (profiled) await server.call('profileStop', { path: join(out, `${key}-storm.cpuprofile`) })
    const after = await server.call('cpu', { clients: total })
    await load.call('stormClose')
    await server.call('clients', { clients: 0, timeoutMs: 30_000 })
    if (profiled) console.error(`(${key}) storm: ${((after.cpuUs - before.cpuUs) / total).toFixed(0)} µs CPU per socket while profiled, ${wait.back}/${wait.count} back`)
  }
}

// --- CPU profiles -----------------------------------------------------------------------------

function where (url) {
  if (url === '') return ''
  const nm = url.lastIndexOf('node_modules/')
  if (nm !== -1) return url.slice(nm + 'node_modules/'.length)
  const dist = url.indexOf('/dist/')
  if (dist !== -1 && !url.includes('node_modules')) return `plugin:${url.slice(dist + 6)}`
  return url.replace(/^file:\/\/.*\/bench\//, 'bench/')
}

function packageOf (url, name) {
  if (url === '') return name // (garbage collector), (program), (idle), (root)
  if (url.startsWith('node:')) return 'node internals'
  const nm = url.lastIndexOf('node_modules/')
  if (nm !== -1) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  if (url.includes('/dist/')) return 'fastify-socket.io-session (dist/)'
  if (url.includes('/bench/')) return 'bench harness'
  return url
}

function analyzeProfile (path, n) {
  const profile = JSON.parse(readFileSync(path, 'utf8'))
  const byId = new Map()
  for (const node of profile.nodes) byId.set(node.id, node)
  const parent = new Map()
  for (const node of profile.nodes) for (const c of node.children ?? []) parent.set(c, node.id)
  const fnKey = (node) => {
    const f = node.callFrame
    return `${f.functionName || '(anonymous)'} ${where(f.url)}${f.url ? `:${f.lineNumber + 1}` : ''}`
  }
  const self = new Map()
  const inclusive = new Map()
  const own = new Map()
  const packages = new Map()
  let total = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0 // a sample's time is the gap to the next one
    const node = byId.get(profile.samples[i])
    const name = node.callFrame.functionName
    if (name === '(idle)' || name === '(program)') continue
    total += dt
    const k = fnKey(node)
    self.set(k, (self.get(k) ?? 0) + dt)
    const pkg = packageOf(node.callFrame.url, name)
    packages.set(pkg, (packages.get(pkg) ?? 0) + dt)
    // Inclusive time, and 'own' time: inclusive, but not counting what runs in a Socket.IO or
    // engine.io frame called from inside (the handshake's continuation, which the memory store's
    // synchronous callback runs within the session code's stack).
    const seen = new Set()
    let continuation = false
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)
      const key = fnKey(frame)
      if (!seen.has(key)) {
        seen.add(key)
        inclusive.set(key, (inclusive.get(key) ?? 0) + dt)
        if (!continuation) own.set(key, (own.get(key) ?? 0) + dt)
      }
      if (/node_modules\/(engine\.io|socket\.io|ws)\//.test(frame.callFrame.url)) continuation = true
    }
  }
  const perHandshake = (m) => new Map([...m].map(([k, v]) => [k, v / n]))
  return { total: total / n, self: perHandshake(self), inclusive: perHandshake(inclusive), own: perHandshake(own), packages: perHandshake(packages) }
}

function diff (b, a) {
  const keys = new Set([...a.keys(), ...b.keys()])
  return [...keys].map((k) => [k, (b.get(k) ?? 0) - (a.get(k) ?? 0), b.get(k) ?? 0, a.get(k) ?? 0])
}

// --- Heap snapshots ---------------------------------------------------------------------------

function aggregateSnapshot (path) {
  const snap = JSON.parse(readFileSync(path, 'utf8'))
  const fields = snap.snapshot.meta.node_fields
  const types = snap.snapshot.meta.node_types[0]
  const width = fields.length
  const iType = fields.indexOf('type')
  const iName = fields.indexOf('name')
  const iSize = fields.indexOf('self_size')
  const nodes = snap.nodes
  const strings = snap.strings
  const agg = new Map()
  let total = 0
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + iType]]
    const size = nodes[i + iSize]
    total += size
    let name = strings[nodes[i + iName]]
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string') name = `(${type}s)`
    else if (type === 'number') name = '(heap numbers)'
    else if (type === 'code') name = '(code)'
    else if (type === 'array') name = `(array) ${name}`
    else if (type === 'hidden') name = `(hidden) ${name}`
    else if (type === 'closure') name = `${name}()`
    else if (type === 'object shape') name = '(object shapes / maps)'
    const entry = agg.get(name) ?? { size: 0, count: 0 }
    entry.size += size
    entry.count++
    agg.set(name, entry)
  }
  return { agg, total }
}

function perSocket (path0, pathK, k) {
  const s0 = aggregateSnapshot(path0)
  const sK = aggregateSnapshot(pathK)
  const names = new Set([...s0.agg.keys(), ...sK.agg.keys()])
  const rows = new Map()
  for (const name of names) {
    const a = s0.agg.get(name) ?? { size: 0, count: 0 }
    const b = sK.agg.get(name) ?? { size: 0, count: 0 }
    rows.set(name, { bytes: (b.size - a.size) / k, count: (b.count - a.count) / k })
  }
  return { total: (sK.total - s0.total) / k, rows }
}

// --- Report -----------------------------------------------------------------------------------

if (!cli['analyze-only']) {
  for (const key of keys) await record(key)
}

const lines = []
const f1 = (x) => x.toFixed(1)
const [base, ...others] = keys
const phases = cli['skip-cpu'] ? [] : Object.keys(transports).map((t) => [t, N[t], 'handshake'])
if (stormSessions > 0) phases.push(['storm', stormSessions * stormPer, 'socket in a reconnect storm (drop, disconnect, reconnect)'])
if (fanoutSockets > 0) phases.push(['fanout', fanoutSockets, 'socket of a logout (POST /logout → every socket disconnected)'])
for (const [transport, count, unit] of phases) {
  const a = analyzeProfile(join(out, `${base}-${transport}.cpuprofile`), count)
  for (const key of others) {
    const b = analyzeProfile(join(out, `${key}-${transport}.cpuprofile`), count)
    lines.push(`## CPU per ${unit}, ${transport}: (${key}) ${f1(b.total)} µs vs (${base}) ${f1(a.total)} µs sampled, +${f1(b.total - a.total)} µs`, '')
    lines.push('By package (self time, µs per handshake):', '', `| package | (${key}) | (${base}) | difference |`, '|---|---:|---:|---:|')
    for (const [k, d, vb, va] of diff(b.packages, a.packages).sort((x, y) => Math.abs(y[1]) - Math.abs(x[1])).slice(0, 14)) {
      lines.push(`| ${k} | ${f1(vb)} | ${f1(va)} | ${d >= 0 ? '+' : ''}${f1(d)} |`)
    }
    lines.push('', 'Functions with the largest difference in self time (µs per handshake):', '', `| function | (${key}) | (${base}) | difference |`, '|---|---:|---:|---:|')
    for (const [k, d, vb, va] of diff(b.self, a.self).sort((x, y) => Math.abs(y[1]) - Math.abs(x[1])).slice(0, 25)) {
      lines.push(`| \`${k}\` | ${f1(vb)} | ${f1(va)} | ${d >= 0 ? '+' : ''}${f1(d)} |`)
    }
    lines.push('', `Time of the session work in (${key}), µs per handshake: inclusive of what it calls, except the Socket.IO/engine.io work its callback continues into:`, '', '| function | own inclusive |', '|---|---:|')
    const interesting = /plugin:|fastify\/session|fastify\/cookie|cookie-signature|express-session|safe-stable-stringify|^(Hash|Hmac|init|digest|update|createHash|createHmac|timingSafeEqual) /
    for (const [k, v] of [...b.own].filter(([k]) => interesting.test(k)).sort((x, y) => y[1] - x[1]).slice(0, 30)) {
      if (v >= 0.5) lines.push(`| \`${k}\` | ${f1(v)} |`)
    }
    lines.push('')
  }
}

const heapBase = perSocket(join(out, `${base}-0.heapsnapshot`), join(out, `${base}-${K}.heapsnapshot`), K)
for (const key of others) {
  const h = perSocket(join(out, `${key}-0.heapsnapshot`), join(out, `${key}-${K}.heapsnapshot`), K)
  lines.push(`## Heap per open socket (${K} websocket sockets, snapshot difference): (${key}) ${h.total.toFixed(0)} B vs (${base}) ${heapBase.total.toFixed(0)} B, +${(h.total - heapBase.total).toFixed(0)} B`, '')
  lines.push(`| object (constructor / kind) | (${key}) bytes | (${key}) count | (${base}) bytes | (${base}) count | difference, bytes |`, '|---|---:|---:|---:|---:|---:|')
  const names = new Set([...h.rows.keys(), ...heapBase.rows.keys()])
  const rows = [...names].map((n) => {
    const b = h.rows.get(n) ?? { bytes: 0, count: 0 }
    const a = heapBase.rows.get(n) ?? { bytes: 0, count: 0 }
    return [n, b, a, b.bytes - a.bytes]
  }).sort((x, y) => Math.abs(y[3]) - Math.abs(x[3])).slice(0, 30)
  for (const [n, b, a, d] of rows) {
    lines.push(`| \`${n}\` | ${b.bytes.toFixed(0)} | ${b.count.toFixed(2)} | ${a.bytes.toFixed(0)} | ${a.count.toFixed(2)} | ${d >= 0 ? '+' : ''}${d.toFixed(0)} |`)
  }
  lines.push('')
}
const report = lines.join('\n')
writeFileSync(join(here, 'results', 'profile.md'), report + '\n')
console.log(report)
