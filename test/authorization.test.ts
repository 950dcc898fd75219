import t from 'tap'
import type { FastifySessionOptions } from '@fastify/session'
import { client, connect, once, refused, sleep, transportModes } from './helpers/client'
import { captureLogs, login, me, startServer } from './helpers/server'

const loggedIn = { authorize: (session: { user?: unknown }) => session.user !== undefined }

for (const { name, transports } of transportModes) {
  t.test(`${name}: authorize admits logged-in sessions and refuses others, in every namespace`, async (t) => {
    const server = await startServer(t, loggedIn)
    server.app.io.of('/admin')
    server.app.io.of(/^\/dynamic-\d+$/)
    const cookie = await login(server.url)
    server.app.io.of('/late') // created after registration and listen
    for (const namespace of ['/', '/admin', '/late', '/dynamic-1']) {
      const socket = await connect(t, server.url, { cookie, transports, namespace })
      t.ok(socket.connected, `${namespace}: logged in connects`)
      const err = await refused(t, server.url, { transports, namespace })
      t.equal(err.message, 'unauthorized', `${namespace}: anonymous refused`)
      t.same(err.data, { code: 'SESSION_UNAUTHORIZED' }, `${namespace}: readable code`)
    }
  })
}

t.test('a refused client does not retry in a loop', async (t) => {
  const server = await startServer(t, loggedIn)
  let attempts = 0
  server.app.io.engine.on('connection', () => { attempts++ })
  const socket = client(t, server.url, { reconnection: true, transports: ['polling', 'websocket'] })
  let errors = 0
  socket.on('connect_error', () => { errors++ })
  await once(socket, 'connect_error')
  await sleep(1500) // Socket.IO's first reconnection delay is 1 s at most
  t.equal(errors, 1, 'one connect_error')
  t.equal(attempts, 1, 'one handshake reached the server')
  t.equal(socket.active, false, 'the client gave up')
})

t.test('authorize may be async and sees the socket', async (t) => {
  const server = await startServer(t, {
    authorize: async (session, socket) => {
      await sleep(5)
      return session.user?.name === 'Ada' && socket.nsp.name !== '/forbidden'
    }
  })
  server.app.io.of('/forbidden')
  const ada = await login(server.url, 'Ada')
  const bob = await login(server.url, 'Bob')
  t.ok((await connect(t, server.url, { cookie: ada })).connected)
  t.equal((await refused(t, server.url, { cookie: bob })).data?.code, 'SESSION_UNAUTHORIZED')
  t.equal((await refused(t, server.url, { cookie: ada, namespace: '/forbidden' })).data?.code, 'SESSION_UNAUTHORIZED')
})

t.test('a throwing or rejecting authorize gives SESSION_ERROR, logged at error level; others are still served', async (t) => {
  const { lines, logger } = captureLogs('info')
  const server = await startServer(t, {
    authorize: (session) => {
      if (session.user?.name === 'Thrower') throw new Error('boom')
      if (session.user?.name === 'Rejecter') return Promise.reject(new Error('async boom'))
      return session.user !== undefined
    }
  }, { fastify: { logger } })
  for (const name of ['Thrower', 'Rejecter']) {
    const err = await refused(t, server.url, { cookie: await login(server.url, name) })
    t.equal(err.message, 'session error', name)
    t.same(err.data, { code: 'SESSION_ERROR' }, name)
  }
  const errors = lines.filter((line) => line.level === 50 && line.msg === 'socket.io session: the session could not be loaded or authorized')
  t.equal(errors.length, 2, 'each failure logged at error level')
  t.ok((await connect(t, server.url, { cookie: await login(server.url, 'Ada') })).connected, 'the server keeps serving')
  await refused(t, server.url)
  t.ok(lines.some((line) => line.level === 30 && line.msg === 'socket.io session: handshake unauthorized'), 'denials logged at info')
})

t.test('a failing store gives SESSION_ERROR, and the server keeps serving', async (t) => {
  const data = new Map<string, unknown>()
  let failing: false | 'callback' | 'throw' = false
  const store: FastifySessionOptions['store'] = {
    get: (id, cb) => {
      if (failing === 'throw') throw new Error('store broken')
      failing === 'callback' ? cb(new Error('store down')) : cb(null, data.get(id) as never)
    },
    set: (id, session, cb) => { data.set(id, JSON.parse(JSON.stringify(session))); cb() },
    destroy: (id, cb) => { data.delete(id); cb() }
  }
  const server = await startServer(t, loggedIn, { session: { store } })
  const cookie = await login(server.url)
  for (const { name, transports } of transportModes) {
    for (const mode of ['callback', 'throw'] as const) {
      failing = mode
      const err = await refused(t, server.url, { cookie, transports })
      t.same(err.data, { code: 'SESSION_ERROR' }, `${name}: store failure (${mode})`)
    }
    failing = false
    t.ok((await connect(t, server.url, { cookie, transports })).connected, `${name}: store back`)
  }
})

t.test('without authorize, every session is accepted, a fresh one included', async (t) => {
  const server = await startServer(t)
  t.ok((await connect(t, server.url)).connected)
})

t.test('connection state recovery cannot bypass authorization', async (t) => {
  let allow = true
  const recovering = await startServer(t, { authorize: (session) => allow && session.user !== undefined, serverOptions: { connectionStateRecovery: {} } })
  // The client sends a recovery offset only once it has received an event.
  recovering.app.io.on('connection', (socket) => { socket.emit('hello') })
  const cookie = await login(recovering.url)
  const socket = client(t, recovering.url, { cookie, reconnection: true })
  await once(socket, 'hello')
  t.equal(socket.recovered, false)

  // Dropped connection, allowed: the session is recovered, and goes through authorization again.
  socket.io.engine.close()
  await once(socket, 'connect')
  t.equal(socket.recovered, true, 'recovered')
  const [serverSocket] = await recovering.app.io.fetchSockets()
  const { sessionId } = await me(recovering.url, cookie)
  t.ok(serverSocket.rooms.has(`session:${sessionId}`), 'in its session room')

  // Dropped again, now denied: recovery must not let the socket in.
  allow = false
  socket.io.engine.close()
  const err = await once<Error & { data?: { code?: string } }>(socket, 'connect_error')
  t.equal(err.data?.code, 'SESSION_UNAUTHORIZED')
  t.equal(socket.connected, false)
})

for (const { name, transports } of transportModes) {
  t.test(`${name}: a connection whose session an event handler destroyed opens no other namespace: SESSION_ERROR, logged`, async (t) => {
    const { lines, logger } = captureLogs('info')
    const server = await startServer(t, { validateInterval: 0 }, { fastify: { logger } })
    server.app.io.of('/admin')
    server.app.io.on('connection', (socket) => {
      socket.on('destroy', async (ack: (left: unknown) => void) => {
        await socket.request.session.destroy()
        ack(socket.request.session)
      })
    })
    const cookie = await login(server.url)
    const socket = await connect(t, server.url, { cookie, transports })
    t.equal(await socket.emitWithAck('destroy'), null, 'the connection has no session left')

    const admin = socket.io.socket('/admin') // the same connection, multiplexed
    t.teardown(() => { admin.disconnect() })
    const err = await once<Error & { data?: { code?: string } }>(admin, 'connect_error')
    t.equal(err.message, 'session error')
    t.same(err.data, { code: 'SESSION_ERROR' }, 'a readable refusal, not a crash in authorize')
    const logged = lines.filter((line) => line.level === 50 && line.msg === 'socket.io session: the session could not be loaded or authorized')
    t.equal(logged.length, 1, 'logged at error level, once')
    t.match(logged[0], { namespace: '/admin', err: { message: 'no session was loaded for this handshake' } })
    t.ok((await connect(t, server.url, { cookie: await login(server.url), transports, namespace: '/admin' })).connected, 'a new connection with a session is admitted')
  })
}
