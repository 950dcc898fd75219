// The session work of one handshake, timed in isolation (no sockets, no network): what the plugin's
// engine.io `allowRequest` hook costs, and its parts. Usage: node bench/micro.mjs [--n 20000]
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import Fastify from 'fastify'
import fastifySocketIoSession from 'fastify-socket.io-session'
import { IncomingMessage } from 'node:http'
import { Socket } from 'node:net'
import { parseArgs } from 'node:util'

const { values: cli } = parseArgs({ options: { n: { type: 'string', default: '20000' } } })
const N = Number(cli.n)

const app = Fastify({ logger: false })
await app.register(fastifyCookie)
await app.register(fastifySession, {
  secret: 'a secret with at least 32 characters of entropy',
  cookie: { secure: false, maxAge: 24 * 3600 * 1000 },
  saveUninitialized: false
})
await app.register(fastifySocketIoSession, { authorize: (session) => session.get('user') !== undefined, validateInterval: 0 })
app.post('/login', async (request) => {
  request.session.set('user', { id: 'u1' })
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

/** µs per call of fn(i), after a warm-up, as the median of 5 runs. */
function time (fn) {
  for (let i = 0; i < Math.min(N, 5000); i++) fn(i)
  const runs = []
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < N; i++) fn(i)
    runs.push(Number(process.hrtime.bigint() - t0) / 1000 / N)
  }
  return runs.sort((a, b) => a - b)[2]
}

const requests = Array.from({ length: N }, handshakeRequest)
let sink
const sample = handshakeRequest()
await new Promise((resolve) => app.decryptSession(signed, sample, resolve))
const session = sample.session
const signer = session[Object.getOwnPropertySymbols(session).find((s) => s.description === 'cookieSignerKey')]
const allowRequest = app.io.engine.opts.allowRequest

const hashKey = Object.getOwnPropertySymbols(Object.getPrototypeOf(session)).find((s) => s.description === 'hash')
const rows = [
  ['fastify.parseCookie(cookie header)', time(() => { sink = app.parseCookie(cookie) })],
  ['session signer.unsign(cookie) (HMAC-SHA256 check)', time(() => { sink = signer.unsign(signed) })],
  ['  of which Session\'s change-detection hash (stringify + SHA-256)', hashKey === undefined ? NaN : time(() => { sink = session[hashKey]() })],
  ['fastify.decryptSession (unsign + store.get + new Session)', time((i) => { app.decryptSession(signed, requests[i], () => {}) })],
  ['plugin allowRequest (origin check + cookie + decryptSession)', time((i) => { allowRequest(requests[i], (err, ok) => { sink = ok || err }) })]
]
const width = Math.max(...rows.map(([k]) => k.length))
console.log(`session work per handshake, in-memory store, µs per call (median of 5 × ${N}):`)
for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v.toFixed(2)}`)
console.log(`  ${'new Session (decryptSession − unsign, approx.)'.padEnd(width)}  ${(rows[3][1] - rows[1][1]).toFixed(2)}`)
if (sink === undefined) console.log('')
await app.close()
