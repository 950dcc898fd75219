// One node of the live-authority bench (bench/authority.mjs): this plugin on Fastify 5 with
// @fastify/session, either alone with the in-memory store (--store=memory) or as one node of a pair
// sharing a connect-redis store and @socket.io/redis-adapter (--store=redis --redis=URL, with
// --key naming the pair: the adapter's channels and the store's prefix, so that pairs on one Redis
// do not hear each other). --sync=on|off sets `syncSessions`. The expiry sweep is off
// (validateInterval: 0): it is not what is measured, and its reads would add noise.
//
// Routes (JSON bodies):
//   POST /login   { watch }  a user in the session; `watch: true` marks a session whose sockets report changes
//   POST /change  { v }      session field `v` := v (keeps authority)
//   POST /revoke             session.user := undefined (authorize refuses it from now on)
//   POST /logout             reply.logout(); answers what it resolved to ({ sockets, nodes, unacknowledged })
//   POST /ping    { tag, n } io.to(tag).emit('bench:ping', n): a bare adapter broadcast, the floor of any
//                            cross-node latency (sockets join the room `tag` of their handshake query)
// Socket event 'whoami' (with an ack): { user, v } as this node's socket.request.session holds them.
//
// How a socket shows that it took a change: `authorize(session, socket)`, which the plugin runs again
// each time it applies fresh data to a connected socket's session (public API), emits 'bench:v' with
// the new `v` to the sockets of watched sessions. It emits nothing for other sessions, so the
// throughput phases measure sync without any message to clients.
import fastifySession from '@fastify/session'
import fastifySocketIoSession from 'fastify-socket.io-session'
import { parseArgs } from 'node:util'
import { sessionApp } from './app.mjs'
import { ready, serveControl } from './control.mjs'

const { values: args } = parseArgs({
  options: {
    store: { type: 'string', default: 'memory' },
    redis: { type: 'string' },
    key: { type: 'string', default: 'bench-authority' },
    sync: { type: 'string', default: 'on' }
  }
})
if (!['on', 'off'].includes(args.sync)) throw new Error('--sync=on|off')

let store
let adapter
const redisClients = []
if (args.store === 'redis') {
  const { createClient } = await import('redis')
  const { RedisStore } = await import('connect-redis')
  const { createAdapter } = await import('@socket.io/redis-adapter')
  const client = async () => {
    const c = createClient({ url: args.redis })
    c.on('error', (err) => console.error('authority-node redis client:', err.message))
    await c.connect()
    redisClients.push(c)
    return c
  }
  store = new RedisStore({ client: await client(), prefix: `${args.key}:sess:` })
  adapter = createAdapter(await client(), await client(), { key: args.key })
} else {
  store = new fastifySession.MemoryStore()
}

const app = await sessionApp(store)
await app.register(fastifySocketIoSession, {
  syncSessions: args.sync === 'on',
  validateInterval: 0,
  serverOptions: adapter === undefined ? {} : { adapter },
  authorize (session, socket) {
    const allowed = session.get('user') !== undefined
    if (allowed && session.get('watch') === true) {
      const v = session.get('v')
      // At the handshake (not yet connected) this only notes the value the socket starts with.
      if (socket.data.v !== v) {
        socket.data.v = v
        if (socket.connected) socket.emit('bench:v', v)
      }
    }
    return allowed
  }
})

app.post('/login', async (request) => {
  request.session.set('user', { id: Math.random().toString(36).slice(2) })
  if (request.body?.watch === true) request.session.set('watch', true)
  return { ok: true }
})
app.post('/change', async (request) => {
  request.session.set('v', request.body?.v)
  return { ok: true }
})
app.post('/revoke', async (request) => {
  request.session.set('user', undefined)
  return { ok: true }
})
app.post('/logout', async (request, reply) => {
  return await reply.logout()
})
app.post('/ping', async (request) => {
  app.io.to(String(request.body?.tag)).emit('bench:ping', request.body?.n)
  return { ok: true }
})

await app.ready()
app.io.on('connection', (socket) => {
  const tag = socket.handshake.query.tag
  if (typeof tag === 'string' && tag !== '') socket.join(tag)
  socket.on('whoami', (ack) => {
    const session = socket.request.session
    if (typeof ack === 'function') ack({ user: session?.get('user') !== undefined, v: session?.get('v') })
  })
})
await app.listen({ port: 0, host: '127.0.0.1' })

serveControl({
  io: app.io,
  close: async () => {
    await app.close()
    await Promise.all(redisClients.map((c) => c.quit().catch(() => {})))
  },
  extra: {
    // CPU used so far (µs), without waiting for any connection count.
    async usage () {
      const u = process.cpuUsage()
      return { cpuUs: u.user + u.system, clients: app.io.engine.clientsCount }
    },
    // How many nodes the adapter counts (1 with the in-memory adapter).
    async nodes () {
      return { nodes: await app.io.of('/').adapter.serverCount() }
    }
  }
})
ready(app.server.address().port, { store: args.store, sync: args.sync })
