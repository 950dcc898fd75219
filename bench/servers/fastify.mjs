// (b) and (d): this plugin on Fastify 5 with @fastify/session, an in-memory store (--store=memory)
// or connect-redis (--store=redis --redis=redis://127.0.0.1:port), `authorize` on and the default
// origin check. POST /login stores a user in the session, POST /logout calls reply.logout().
// --validate-interval=ms sets the plugin's expiry sweep (left to its default otherwise).
// The store's reads are counted (get, and any bulk read a sweep may use).
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import Fastify from 'fastify'
import fastifySocketIoSession from 'fastify-socket.io-session'
import { parseArgs } from 'node:util'
import { ready, serveControl } from './control.mjs'

const { values: args } = parseArgs({
  options: {
    store: { type: 'string', default: 'memory' },
    redis: { type: 'string' },
    'validate-interval': { type: 'string' }
  }
})

let store
let redisClient
if (args.store === 'redis') {
  const { createClient } = await import('redis')
  const { RedisStore } = await import('connect-redis')
  redisClient = createClient({ url: args.redis })
  redisClient.on('error', (err) => console.error('redis client:', err.message))
  await redisClient.connect()
  store = new RedisStore({ client: redisClient, prefix: `bench:${process.pid}:` })
} else {
  store = new fastifySession.MemoryStore()
}

// Counts every read of the store (one entry per call, with its time and session id) and every write.
const reads = []
const writes = []
for (const name of ['set', 'touch', 'destroy']) {
  const original = store[name]
  if (typeof original !== 'function') continue
  store[name] = function countedWrite (...params) {
    if (writes.length < 1_000_000) writes.push({ t: performance.now(), method: name })
    return original.apply(this, params)
  }
}
const readMethods = ['get', 'all', 'mget', 'getMany', 'getAll']
for (const name of readMethods) {
  const original = store[name]
  if (typeof original !== 'function') continue
  store[name] = function countedRead (...params) {
    if (reads.length < 1_000_000) reads.push({ t: performance.now(), method: name, sid: typeof params[0] === 'string' ? params[0] : undefined })
    return original.apply(this, params)
  }
}

const app = Fastify({ logger: false })
await app.register(fastifyCookie)
await app.register(fastifySession, {
  secret: 'a secret with at least 32 characters of entropy',
  cookie: { secure: false, maxAge: 24 * 3600 * 1000 }, // a maxAge, as most applications set: keep-alive renews it
  saveUninitialized: false,
  store
})
const pluginOptions = {
  authorize: (session) => session.get('user') !== undefined
}
if (args['validate-interval'] !== undefined) pluginOptions.validateInterval = Number(args['validate-interval'])
await app.register(fastifySocketIoSession, pluginOptions)

app.post('/login', async (request) => {
  request.session.set('user', { id: Math.random().toString(36).slice(2) })
  return 'ok'
})
app.post('/logout', async (request, reply) => {
  await reply.logout()
  return 'ok'
})

await app.ready()
app.io.of('/chat') // a second namespace: the logout covers every namespace
await app.listen({ port: 0, host: '127.0.0.1' })

serveControl({
  io: app.io,
  close: async () => {
    await app.close()
    if (redisClient !== undefined) await redisClient.quit()
  },
  extra: {
    // The reads (with the session ids read) and writes since `since` (performance.now() of this process).
    async reads ({ since = 0 }) {
      return {
        now: performance.now(),
        reads: reads.filter((r) => r.t >= since).map((r) => [r.t, r.method, r.sid]),
        writes: writes.filter((w) => w.t >= since).map((w) => [w.t, w.method])
      }
    },
    async now () {
      return { now: performance.now() }
    }
  }
})
ready(app.server.address().port, { pluginOptions: Object.keys(pluginOptions) })
