// The server under stress (bench/stress.mjs): this plugin on Fastify 5 with @fastify/session, the
// quick start's authorize, an in-memory store (--store=memory) or connect-redis with the Redis adapter
// (--store=redis --redis=url), and a second namespace. A 'count' event saves the session (autoSave).
// Besides control.mjs's commands: `state` (what is left per session), `reads` (the store's reads, to
// time a sweep), `closeCheck` (fastify.close(), then the active handles and timers).
import fastifySession from '@fastify/session'
import fastifySocketIoSession from 'fastify-socket.io-session'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { sessionApp } from './app.mjs'
import { ready, serveControl } from './control.mjs'

const { values: args } = parseArgs({
  options: {
    store: { type: 'string', default: 'memory' },
    redis: { type: 'string' },
    'validate-interval': { type: 'string', default: '30000' }
  }
})

const resourcesAtStart = countResources()
let store
const redisClients = []
const serverOptions = {}
if (args.store === 'redis') {
  const { createClient } = await import('redis')
  const { RedisStore } = await import('connect-redis')
  const { createAdapter } = await import('@socket.io/redis-adapter')
  const reconnectStrategy = (retries) => Math.min(retries * 50, 500)
  const storeClient = createClient({ url: args.redis, disableOfflineQueue: true, socket: { reconnectStrategy } })
  const pubClient = createClient({ url: args.redis, socket: { reconnectStrategy } })
  const subClient = pubClient.duplicate()
  for (const client of [storeClient, pubClient, subClient]) {
    client.on('error', (err) => console.error('redis client:', err.message))
    redisClients.push(client)
  }
  await Promise.all(redisClients.map((client) => client.connect()))
  store = new RedisStore({ client: storeClient, prefix: 'stress:' })
  serverOptions.adapter = createAdapter(pubClient, subClient)
} else {
  store = new fastifySession.MemoryStore()
}

// The store's reads, with their time: a sweep is a burst of them.
const reads = []
const get = store.get
store.get = function countedGet (sessionId, callback) {
  if (reads.length < 1_000_000) reads.push(performance.now())
  return get.call(this, sessionId, callback)
}

const app = await sessionApp(store)
await app.register(fastifySocketIoSession, {
  serverOptions,
  authorize: (session) => session.user !== undefined,
  validateInterval: Number(args['validate-interval'])
})
app.addHook('onClose', async () => {
  await Promise.all(redisClients.map((client) => (client.isReady ? client.close() : client.destroy())))
})

app.post('/login', async (request, reply) => {
  await reply.regenerateSession()
  request.session.user = { id: Math.random().toString(36).slice(2) }
  return 'ok'
})
app.post('/logout', async (_request, reply) => {
  await reply.logout()
  return 'ok'
})
for (const nsp of ['/', '/chat']) {
  app.io.of(nsp).on('connection', (socket) => {
    socket.on('count', (ack) => {
      const session = socket.request.session
      session.count = (session.count ?? 0) + 1
      ack(session.count)
    })
  })
}

await app.listen({ port: 0, host: '127.0.0.1' })

function countResources () {
  const counts = {}
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1
  return counts
}

serveControl({
  io: app.io,
  close: async () => { await app.close() },
  extra: {
    async state () {
      const namespaces = {}
      for (const [name, nsp] of app.io._nsps) namespaces[name] = { sockets: nsp.sockets.size, rooms: nsp.adapter.rooms.size, sids: nsp.adapter.sids.size }
      return { clients: app.io.engine.clientsCount, namespaces, resources: countResources() }
    },
    async reads ({ since = 0 }) {
      return { now: performance.now(), reads: reads.filter((t) => t >= since) }
    },
    async now () {
      return { now: performance.now() }
    },
    async closeCheck () {
      const before = countResources()
      await app.close()
      await sleep(100)
      return { atStart: resourcesAtStart, beforeClose: before, afterClose: countResources() }
    }
  }
})
ready(app.server.address().port)
