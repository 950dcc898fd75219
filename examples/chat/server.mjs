// The chat demo of fastify-socket.io-session: log in over HTTP, chat over Socket.IO, log out everywhere.
//
//   npm start                                    in-memory sessions, one process
//   REDIS_URL=redis://127.0.0.1:6379 npm start   sessions in Redis and the Redis adapter: run several
//                                                instances (PORT=3000, PORT=3001) that share sessions and chat
//
// Tests import buildDemo() and listen on port 0; `node examples/chat/server.mjs` also listens.

import { createHash, timingSafeEqual } from 'node:crypto'
import { realpathSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import fastifyStatic from '@fastify/static'
import fastifySocketIoSession from 'fastify-socket.io-session'

const here = dirname(fileURLToPath(import.meta.url))

/** The demo's accounts. Shown on the login page: this is a demo, not a way to store passwords. */
export const demoUsers = [
  { id: 'ada', name: 'Ada', password: 'lovelace' },
  { id: 'alan', name: 'Alan', password: 'turing' },
  { id: 'grace', name: 'Grace', password: 'hopper' }
]

const DEMO_SECRET = 'demo-only secret: set SESSION_SECRET to 32+ random characters in production'

/** The room of every tab of one user (the plugin's `userRoom` option). */
const userRoom = (userId) => `user:${userId}`

/**
 * Builds the demo app, not listening yet.
 * @param {{ redisUrl?: string, logger?: boolean | object, sessionSecret?: string }} [options]
 * @returns {Promise<import('fastify').FastifyInstance>}
 */
export async function buildDemo ({ redisUrl, logger = false, sessionSecret = process.env.SESSION_SECRET ?? DEMO_SECRET } = {}) {
  const app = Fastify({ logger })

  // With REDIS_URL: sessions in Redis, and a Redis adapter so that rooms, broadcasts, fetchSockets()
  // and logout reach the sockets of every instance.
  const redis = redisUrl === undefined || redisUrl === '' ? undefined : await connectRedis(redisUrl, app.log)
  if (redis !== undefined) {
    app.addHook('onClose', async () => {
      await Promise.allSettled(redis.clients.map((client) => client.close()))
    })
  }

  await app.register(fastifyCookie)
  await app.register(fastifySession, {
    secret: sessionSecret,
    cookie: { secure: 'auto', httpOnly: true, sameSite: 'lax', maxAge: 8 * 60 * 60 * 1000 },
    saveUninitialized: false, // no session (and no cookie) until someone logs in
    ...(redis === undefined ? {} : { store: redis.store })
  })

  await app.register(fastifySocketIoSession, {
    // Only logged-in sessions may open a socket; the others get connect_error SESSION_UNAUTHORIZED.
    authorize: (session) => session.user !== undefined,
    // Each socket also joins its user's room: one message reaches every tab of that user.
    userRoom: (session) => (session.user === undefined ? undefined : userRoom(session.user.id)),
    ...(redis === undefined ? {} : { serverOptions: { adapter: redis.adapter } })
  })

  await app.register(fastifyStatic, { root: join(here, 'public') })

  registerRoutes(app)
  registerChat(app)
  return app
}

// ---------------------------------------------------------------- HTTP: login, logout, who am I

function registerRoutes (app) {
  app.get('/api/me', async (request) => ({
    user: request.session.user ?? null,
    demoUsers: demoUsers.map(({ name, password }) => ({ name, password }))
  }))

  app.post('/api/login', {
    schema: {
      body: {
        type: 'object',
        required: ['name', 'password'],
        properties: { name: { type: 'string', maxLength: 100 }, password: { type: 'string', maxLength: 100 } }
      }
    }
  }, async (request, reply) => {
    const account = findAccount(request.body.name, request.body.password)
    if (account === undefined) return reply.code(401).send({ error: 'Unknown name or wrong password' })
    // A new session id at login (no session fixation); the sockets of the old id are disconnected.
    await reply.regenerateSession()
    request.session.user = { id: account.id, name: account.name }
    return { user: request.session.user }
  })

  app.post('/api/logout', async (_request, reply) => {
    // Destroys the session, clears its cookie and disconnects every socket of the session, in every
    // tab, on every instance: their pages receive 'session:end' with { reason: 'logout' }, then
    // 'disconnect' with reason 'io server disconnect'. It resolves once every instance confirmed.
    await reply.logout()
    return reply.code(204).send()
  })
}

function findAccount (name, password) {
  const account = demoUsers.find((user) => user.name.toLowerCase() === name.trim().toLowerCase())
  if (account === undefined) return undefined
  return sameSecret(password, account.password) ? account : undefined
}

function sameSecret (given, expected) {
  const digest = (value) => createHash('sha256').update(value).digest()
  return timingSafeEqual(digest(given), digest(expected))
}

// ---------------------------------------------------------------- Socket.IO: chat, presence, notices

function registerChat (app) {
  const io = app.io
  let closing = false
  let presenceTimer

  io.on('connection', (socket) => {
    // The session of the handshake: the plugin loaded it, and `authorize` made sure it has a user.
    const user = socket.request.session.user
    socket.data.user = user // socket.data travels with fetchSockets() across instances

    socket.emit('hello', { user })
    schedulePresence()
    notifyUser(user, async () => {
      const tabs = (await io.in(userRoom(user.id)).fetchSockets()).length
      return `A new tab of ${user.name} connected: ${tabs} open now.`
    })

    socket.on('chat', (text, ack) => {
      if (typeof text !== 'string' || text.trim() === '') return
      io.emit('chat', { from: user.name, text: text.trim().slice(0, 500), at: Date.now() })
      if (typeof ack === 'function') ack({ ok: true })
    })

    socket.on('ping-me', () => {
      notifyUser(user, async () => `Ping! Sent to the room ${userRoom(user.id)}: every tab of ${user.name} shows it.`)
    })

    socket.on('disconnect', schedulePresence)
  })

  /** A notice for one user only, on every tab and every instance. */
  function notifyUser (user, text) {
    text().then(
      (value) => io.to(userRoom(user.id)).emit('notice', { text: value, at: Date.now() }),
      (err) => app.log.warn({ err }, 'chat demo: notice failed')
    )
  }

  // Presence: who is online, from the sockets of every instance. Coalesced, since tabs come and go in bursts.
  function schedulePresence () {
    if (closing) return
    clearTimeout(presenceTimer)
    presenceTimer = setTimeout(broadcastPresence, 50)
  }

  async function broadcastPresence () {
    try {
      const online = new Map()
      for (const remote of await io.fetchSockets()) {
        const user = remote.data.user
        if (user === undefined) continue
        const entry = online.get(user.id) ?? { name: user.name, tabs: 0 }
        entry.tabs++
        online.set(user.id, entry)
      }
      if (!closing) io.emit('presence', Array.from(online.values()).sort((a, b) => a.name.localeCompare(b.name)))
    } catch (err) {
      if (!closing) app.log.warn({ err }, 'chat demo: presence failed')
    }
  }

  app.addHook('preClose', (done) => {
    closing = true
    clearTimeout(presenceTimer)
    done()
  })
}

// ---------------------------------------------------------------- Redis (REDIS_URL)

async function connectRedis (url, log) {
  const [{ createClient }, { RedisStore }, { createAdapter }] = await Promise.all([
    import('redis'),
    import('connect-redis'),
    import('@socket.io/redis-adapter')
  ])
  const reconnectStrategy = (retries) => Math.min(retries * 50, 500)
  // The session store's client fails at once while Redis is down (handshakes get SESSION_ERROR instead
  // of waiting); the adapter's clients keep their offline queue (see the README, "Several nodes").
  const storeClient = createClient({ url, disableOfflineQueue: true, socket: { reconnectStrategy } })
  const pub = createClient({ url, socket: { reconnectStrategy } })
  const sub = pub.duplicate()
  const clients = [storeClient, pub, sub]
  for (const client of clients) client.on('error', (err) => log.error({ err }, 'chat demo: redis error'))
  await Promise.all(clients.map((client) => client.connect()))
  return {
    clients,
    store: new RedisStore({ client: storeClient, prefix: 'chat-demo:sess:' }),
    adapter: createAdapter(pub, sub, { key: 'chat-demo' })
  }
}

// ---------------------------------------------------------------- npm start

async function main () {
  const host = process.env.HOST || '127.0.0.1'
  const port = Number(process.env.PORT || 3000)
  const redisUrl = process.env.REDIS_URL || undefined
  if (process.env.SESSION_SECRET === undefined) {
    console.warn('SESSION_SECRET is not set: using the demo secret, fine for trying the demo only.')
  }
  const app = await buildDemo({ redisUrl, logger: { level: process.env.LOG_LEVEL || 'warn' } })
  await app.listen({ host, port })
  const shown = host.includes(':') ? `[${host}]` : host
  console.log(`Chat demo of fastify-socket.io-session: http://${shown}:${app.server.address().port}` +
    (redisUrl === undefined ? ' (in-memory sessions)' : ' (sessions and Socket.IO on Redis)'))

  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      app.close().then(() => process.exit(0), (err) => { console.error(err); process.exit(1) })
    })
  }
}

function isMain () {
  if (process.argv[1] === undefined) return false
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
}

if (isMain()) {
  main().catch((err) => {
    console.error(err)
    process.exit(1)
  })
}
