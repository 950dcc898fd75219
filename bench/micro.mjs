// The session work of one handshake, timed in isolation (no sockets, no network): what the plugin's
// engine.io `allowRequest` hook costs, and its parts, against @fastify/session's own `decryptSession`.
// Times are CPU time of this process (user + system) per call, the median of 7 runs, so that other
// processes on the machine inflate them less than wall time would.
// Usage: node bench/micro.mjs [--n 20000] [--store memory|json]
import fastifySocketIoSession from 'fastify-socket.io-session'
import { createRequire } from 'node:module'
import { IncomingMessage } from 'node:http'
import { Socket } from 'node:net'
import { parseArgs } from 'node:util'
import { sessionApp } from './servers/app.mjs'

const require = createRequire(import.meta.url)
const { createSessionLoader } = require('../dist/session-load.js')

const { values: cli } = parseArgs({ options: { n: { type: 'string', default: '20000' }, store: { type: 'string', default: 'memory' } } })
const N = Number(cli.n)

// A store that keeps JSON, as Redis or PostgreSQL stores do (synchronous here: no I/O is timed).
class JsonStore {
  data = new Map()
  get (id, cb) { const s = this.data.get(id); cb(null, s === undefined ? null : JSON.parse(s)) }
  set (id, session, cb) { this.data.set(id, JSON.stringify(session)); cb() }
  destroy (id, cb) { this.data.delete(id); cb() }
}

const app = await sessionApp(cli.store === 'json' ? new JsonStore() : undefined)
await app.register(fastifySocketIoSession, { authorize: (session) => session.get('user') !== undefined, validateInterval: 0 })
app.post('/login', async (request) => {
  request.session.set('user', { id: 'u1', name: 'Ada' })
  return 'ok'
})
await app.ready()
const login = await app.inject({ method: 'POST', url: '/login' })
const cookie = login.headers['set-cookie'].split(';', 1)[0]
const signed = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1))
const host = '127.0.0.1:3000'

function handshakeRequest () {
  const req = new IncomingMessage(new Socket())
  req.headers = { host, origin: `http://${host}`, cookie, connection: 'Upgrade', upgrade: 'websocket' }
  req.url = '/socket.io/?EIO=4&transport=websocket'
  req.method = 'GET'
  return req
}

/** µs of CPU per call of fn(i), after a warm-up, as the median of 7 runs. */
function time (fn) {
  for (let i = 0; i < Math.min(N, 5000); i++) fn(i)
  const runs = []
  for (let r = 0; r < 7; r++) {
    const c0 = process.cpuUsage()
    for (let i = 0; i < N; i++) fn(i)
    const c = process.cpuUsage(c0)
    runs.push((c.user + c.system) / N)
  }
  return runs.sort((a, b) => a - b)[3]
}

const requests = Array.from({ length: N }, handshakeRequest)
let sink
const sample = handshakeRequest()
await new Promise((resolve) => app.decryptSession(signed, sample, resolve))
const session = sample.session
const symbolOf = (o, d) => Object.getOwnPropertySymbols(o).find((s) => s.description === d)
const signer = session[symbolOf(session, 'cookieSignerKey')]
const hashKey = symbolOf(Object.getPrototypeOf(session), 'hash')
const load = createSessionLoader(app, {})
const allowRequest = app.io.engine.opts.allowRequest

const rows = [
  ['fastify.parseCookie(cookie header)', time(() => { sink = app.parseCookie(cookie) })],
  ['signer.unsign(cookie): the HMAC-SHA256 check', time(() => { sink = signer.unsign(signed) })],
  ['Session\'s change-detection hash (stringify + SHA-256)', time(() => { sink = session[hashKey]() })],
  ['@fastify/session: fastify.decryptSession (unsign + store.get + new Session)', time((i) => { app.decryptSession(signed, requests[i], () => {}) })],
  ['plugin: its session loading (cached check + store.get + restored Session)', time((i) => { load(signed, requests[i], () => {}) })],
  ['plugin: allowRequest (origin check + cookie + session loading)', time((i) => { allowRequest(requests[i], (err, ok) => { sink = ok || err }) })]
]
const width = Math.max(...rows.map(([k]) => k.length))
console.log(`session work per handshake, ${cli.store === 'json' ? 'JSON' : 'in-memory'} store, µs of CPU per call (median of 7 × ${N}):`)
for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v.toFixed(2)}`)
if (sink === undefined) console.log('')
await app.close()
