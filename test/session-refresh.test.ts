import t from 'tap'
import fastifyPassport from '@fastify/passport'
import type { SessionEndReason, SessionSocket } from '../types/index'
import { askUntil, connect, once } from './helpers/client'
import { captureLogs, login, me, post, startServer } from './helpers/server'
import { TestStore } from './helpers/store'

// lib/session-refresh.ts: fresh data of a connected session applied to its sockets, which are
// re-authorized; a session found gone from the store ends them. Live authority as a whole is in
// live-authority.test.ts.

/** A store with TTLs, as Redis is: a session read after its stored expiry is gone. */
class TtlStore extends TestStore {
  override get (sessionId: string, callback: (err: unknown, session?: any) => void): void {
    const expires = this.read(sessionId)?.cookie?.expires
    if (typeof expires === 'string' && Date.parse(expires) <= Date.now()) this.data.delete(sessionId)
    super.get(sessionId, callback)
  }
}

t.test('a session gone from a store with TTLs ends its sockets as expired once its loaded expiry passed, as destroyed before', async (t) => {
  const store = new TtlStore()
  const ended: Array<{ sessionId: string, reason: SessionEndReason }> = []
  const maxAge = 1000
  const server = await startServer(t, { validateInterval: 50, keepAlive: false, onSessionEnd: (sessionId, reason) => { ended.push({ sessionId, reason }) } }, {
    session: { store, cookie: { secure: 'auto', maxAge }, rolling: false }
  })

  // Left alone: the store drops it at its expiry, and the sweep finds nothing.
  const cookie = await login(server.url)
  const sessionId = (await me(server.url, cookie)).sessionId
  const socket = await connect(t, server.url, { cookie })
  const told = once(socket, 'session:end', maxAge + 2000)
  const closed = once(socket, 'disconnect', maxAge + 2000)
  t.same(await told, { reason: 'expired' }, 'told it expired')
  t.equal(await closed, 'transport close')
  t.same(ended, [{ sessionId, reason: 'expired' }], 'onSessionEnd: expired')

  // Removed from the store before its expiry (an admin tool): destroyed.
  const other = await login(server.url)
  const otherId = (await me(server.url, other)).sessionId
  const otherSocket = await connect(t, server.url, { cookie: other })
  const otherTold = once(otherSocket, 'session:end', 2000)
  store.data.delete(otherId)
  t.same(await otherTold, { reason: 'destroyed' }, 'told it was destroyed')
  t.same(ended.slice(1), [{ sessionId: otherId, reason: 'destroyed' }], 'onSessionEnd: destroyed')
})

t.test('with passport, a change of the session over HTTP deserializes the socket\'s user again', async (t) => {
  const accounts = new Map([['u1', { id: 'u1', name: 'Ada' }], ['u2', { id: 'u2', name: 'Bob' }]])
  const passport = new fastifyPassport.Authenticator()
  passport.registerUserSerializer(async (user: { id: string }) => user.id)
  passport.registerUserDeserializer(async (id: string) => accounts.get(id) ?? null)
  const server = await startServer(t, {
    passport,
    validateInterval: 0,
    authorize: (_session, socket) => socket.request.user !== undefined
  }, {
    before: async (app) => {
      await app.register(passport.initialize())
      await app.register(passport.secureSession())
    },
    after: (app) => {
      app.post<{ Params: { id: string } }>('/login-as/:id', async (request) => {
        await request.logIn(accounts.get(request.params.id))
        return { ok: true }
      })
      // The session's stored user changed without a new login (an administrator's switch, a removed user).
      app.post<{ Params: { id: string } }>('/set-user/:id', async (request) => {
        request.session.set(passport.key as never, (request.params.id === 'none' ? undefined : request.params.id) as never)
        return { ok: true }
      })
    }
  })
  server.app.io.on('connection', (socket: SessionSocket) => {
    socket.on('whoami', (ack: (name: string | null) => void) => ack((socket.request.user as { name?: string } | undefined)?.name ?? null))
  })
  const response = await fetch(`${server.url}/login-as/u1`, { method: 'POST' })
  const cookie = response.headers.getSetCookie()[0].split(';')[0]
  const socket = await connect(t, server.url, { cookie })
  t.equal(await socket.emitWithAck('whoami'), 'Ada')
  await post(`${server.url}/set-user/u2`, cookie)
  t.equal(await askUntil(socket, 'whoami', (name) => name === 'Bob'), 'Bob', 'the socket\'s user is the session\'s new one')
  const told = once(socket, 'session:end')
  await post(`${server.url}/set-user/none`, cookie)
  t.same(await told, { reason: 'unauthorized' }, 'a session left without a user: no user, refused by authorize')
})

t.test('a socket whose handler destroyed its session is left alone when an HTTP request writes the session back', async (t) => {
  const { lines, logger } = captureLogs('warn')
  const store = new TestStore()
  let entered = (): void => {}
  const inside = new Promise<void>((resolve) => { entered = resolve })
  let proceed = (): void => {}
  const gate = new Promise<void>((resolve) => { proceed = resolve })
  const server = await startServer(t, { validateInterval: 0 }, {
    session: { store },
    fastify: { logger },
    after: (app) => {
      // A request that loaded the session before the socket destroyed it, and saves it after.
      app.post('/note-later', async (request) => {
        entered()
        await gate
        request.session.note = 'written back'
        return { ok: true }
      })
    }
  })
  for (const namespace of ['/', '/admin']) {
    server.app.io.of(namespace).on('connection', (socket: SessionSocket) => {
      socket.on('destroy', async (ack: () => void) => {
        await socket.request.session.destroy()
        ack()
      })
      socket.on('note', (ack: (note: string | null) => void) => ack(socket.request.session?.note ?? null))
    })
  }
  const cookie = await login(server.url)
  const sessionId = (await me(server.url, cookie)).sessionId
  const destroyer = await connect(t, server.url, { cookie })
  const other = await connect(t, server.url, { cookie, namespace: '/admin' })
  const request = post(`${server.url}/note-later`, cookie)
  await inside
  await destroyer.emitWithAck('destroy')
  t.notOk(store.data.has(sessionId), 'the socket\'s handler destroyed the session')
  proceed()
  await request
  t.ok(store.data.has(sessionId), 'the HTTP request wrote it back')
  t.equal(await askUntil(other, 'note', (note) => note === 'written back'), 'written back', 'the session\'s other socket got the change')
  t.equal(await destroyer.emitWithAck('note'), null, 'the socket without a session is left without one')
  t.ok(destroyer.connected && other.connected, 'both still connected')
  t.same(lines, [], 'and nothing failed')
})
