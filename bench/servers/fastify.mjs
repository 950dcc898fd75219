// (b) and (d): this plugin on Fastify 5 with @fastify/session, an in-memory store (--store=memory)
// or connect-redis (--store=redis --redis=redis://127.0.0.1:port), `authorize` on and the default
// origin check. POST /login stores a user in the session, POST /logout calls reply.logout().
// --validate-interval=ms sets the plugin's expiry sweep (left to its default otherwise).
// (e) with --handwired: no plugin, a Socket.IO server on the same Fastify server and nothing but
// `fastify.decryptSession` in an engine.io middleware, on the handshake only (what @fastify/session
// costs by itself, without authorization, origin check, rooms or lifecycle; it refuses nothing).
// The store's reads and writes are counted (store-log.mjs); recorded one by one with --log-reads.
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import Fastify from 'fastify'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { Server } from 'socket.io'
import { ready, serveControl } from './control.mjs'
import { logStore } from './store-log.mjs'

const { values: args } = parseArgs({
  options: {
    store: { type: 'string', default: 'memory' },
    redis: { type: 'string' },
    'validate-interval': { type: 'string' },
    handwired: { type: 'boolean', default: false },
    plugin: { type: 'string' }, // another build of the plugin (its dist/index.js), for A/B runs
    'log-reads': { type: 'boolean', default: false }
  }
})

const fastifySocketIoSession = args.plugin === undefined
  ? (await import('fastify-socket.io-session')).default
  : (await import(pathToFileURL(resolve(args.plugin)).href)).default

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

const storeCommands = logStore(store, { log: args['log-reads'] })

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
let io
if (args.handwired) {
  io = new Server(app.server)
  app.addHook('preClose', (done) => { io.engine.close(); done() })
  app.addHook('onClose', async () => { await io.close() })
  io.engine.use((req, res, next) => {
    if (req._query.sid !== undefined) return next() // the handshake only
    const signed = app.parseCookie(req.headers.cookie ?? '').sessionId ?? ''
    app.decryptSession(signed, req, next)
  })
} else {
  await app.register(fastifySocketIoSession, pluginOptions)
}

app.post('/login', async (request) => {
  request.session.set('user', { id: Math.random().toString(36).slice(2) })
  return 'ok'
})
if (!args.handwired) {
  app.post('/logout', async (request, reply) => {
    await reply.logout()
    return 'ok'
  })
}

await app.ready()
io ??= app.io
io.of('/chat') // a second namespace: the logout covers every namespace
await app.listen({ port: 0, host: '127.0.0.1' })

serveControl({
  io,
  close: async () => {
    await app.close()
    if (redisClient !== undefined) await redisClient.quit()
  },
  extra: storeCommands
})
ready(app.server.address().port, { pluginOptions: args.handwired ? null : Object.keys(pluginOptions) })
