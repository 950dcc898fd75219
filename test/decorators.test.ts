import t from 'tap'
import type { Test } from 'tap'
import type { Socket } from 'socket.io-client'
import { connect, disconnectReason, refused, transportModes, type Transports } from './helpers/client'
import { login, logout, me, startServer, type TestServer } from './helpers/server'

// lib/decorators.ts: reply.logout, reply.regenerateSession, reply.disconnectSessionSockets, fastify.disconnectSession.

const loggedIn = { authorize: (session: { user?: unknown }) => session.user !== undefined }

async function openEverywhere (t: Test, server: TestServer, cookie: string, transports: Transports): Promise<Socket[]> {
  server.app.io.of('/admin')
  return [
    await connect(t, server.url, { cookie, transports }),
    await connect(t, server.url, { cookie, transports }),
    await connect(t, server.url, { cookie, transports, namespace: '/admin' })
  ]
}

for (const { name, transports } of transportModes) {
  t.test(`${name}: reply.logout() destroys the session, clears the cookie and disconnects every socket of the session`, async (t) => {
    const server = await startServer(t, loggedIn)
    const cookie = await login(server.url, 'Ada')
    const other = await login(server.url, 'Bob')
    const sockets = await openEverywhere(t, server, cookie, transports)
    const bystander = await connect(t, server.url, { cookie: other, transports, namespace: '/admin' })
    const { sessionId } = await me(server.url, cookie)

    const reasons = Promise.all(sockets.map(disconnectReason))
    const started = Date.now()
    const response = await logout(server.url, cookie)
    t.equal(response.status, 204)
    t.same(await reasons, ['io server disconnect', 'io server disconnect', 'io server disconnect'], 'every namespace')
    t.ok(Date.now() - started < 1000, 'within a second')

    const cleared = response.headers.getSetCookie().find((line) => line.startsWith('sessionId='))
    t.match(cleared, /^sessionId=;.*Expires=Thu, 01 Jan 1970/i, 'the cookie is cleared')
    t.match(cleared, /Path=\//, 'on the session cookie\'s path')

    t.equal((await me(server.url, cookie)).user, null, 'the session is gone from the store')
    t.not((await me(server.url, cookie)).sessionId, sessionId)
    const err = await refused(t, server.url, { cookie, transports })
    t.equal(err.data?.code, 'SESSION_UNAUTHORIZED', 'the old cookie no longer opens a socket')
    t.ok(bystander.connected, 'another session\'s socket stays')
  })
}

t.test('reply.regenerateSession() (login) disconnects the sockets of the previous id and keeps asked fields', async (t) => {
  const server = await startServer(t, {}, {
    after: (app) => {
      app.post('/relogin', async (request, reply) => {
        request.session.note = 'kept'
        request.session.count = 7
        await reply.regenerateSession(['note'])
        return { ok: true }
      })
    }
  })
  const cookie = await login(server.url, 'Ada')
  const before = await me(server.url, cookie)
  const socket = await connect(t, server.url, { cookie })
  const reason = disconnectReason(socket)
  const response = await fetch(`${server.url}/relogin`, { method: 'POST', headers: { cookie } })
  t.equal(await reason, 'io server disconnect')
  const fresh = response.headers.getSetCookie()[0].split(';')[0]
  const after = await me(server.url, fresh)
  t.not(after.sessionId, before.sessionId, 'a new session id (no fixation)')
  t.equal(after.note, 'kept')
  t.equal(after.count, null)
  t.equal((await me(server.url, cookie)).user, null, 'the old id is gone from the store')
  t.ok((await connect(t, server.url, { cookie: fresh })).connected, 'the new cookie connects')
})

t.test('reply.disconnectSessionSockets() disconnects the sockets and keeps the session', async (t) => {
  const server = await startServer(t, loggedIn)
  const cookie = await login(server.url)
  const socket = await connect(t, server.url, { cookie })
  const reason = disconnectReason(socket)
  await fetch(`${server.url}/kick`, { method: 'POST', headers: { cookie } })
  t.equal(await reason, 'io server disconnect')
  t.equal((await me(server.url, cookie)).user?.name, 'Ada', 'the session stays')
  t.ok((await connect(t, server.url, { cookie })).connected, 'and opens sockets again')
})

t.test('fastify.disconnectSession(id) disconnects that session only', async (t) => {
  const server = await startServer(t)
  const ada = await login(server.url, 'Ada')
  const bob = await login(server.url, 'Bob')
  const adaSocket = await connect(t, server.url, { cookie: ada })
  const bobSocket = await connect(t, server.url, { cookie: bob })
  const reason = disconnectReason(adaSocket)
  await server.app.disconnectSession((await me(server.url, ada)).sessionId)
  t.equal(await reason, 'io server disconnect')
  t.ok(bobSocket.connected)
})

t.test('reply.logout() and reply.disconnectSessionSockets() on a request without a session (outside the cookie path, @fastify/session gives an empty object) end nothing', async (t) => {
  const server = await startServer(t, {}, {
    session: { cookie: { secure: 'auto', path: '/app' } },
    after: (app) => {
      app.post('/outside/logout', async (request, reply) => ({ sessionId: request.session.sessionId ?? null, result: await reply.logout() }))
      app.post('/outside/disconnect', async (request, reply) => ({ sessionId: request.session.sessionId ?? null, result: await reply.disconnectSessionSockets() }))
    }
  })
  const nothing = { sockets: 0, nodes: 1, unacknowledged: 0 }
  for (const route of ['/outside/logout', '/outside/disconnect']) {
    const response = await fetch(`${server.url}${route}`, { method: 'POST' })
    t.equal(response.status, 200, route)
    t.same(await response.json(), { sessionId: null, result: nothing }, `${route}: no session, nothing ended`)
    t.equal(response.headers.getSetCookie().length, 0, `${route}: no cookie set or cleared`)
  }
})

t.test('fastify.logoutSession() before the store is known (an idGenerator that needs a real request) fails with FST_SIO_SESSION_NO_STORE; once a request brought it, it works', async (t) => {
  let ids = 0
  // Reads the request's socket, which a request built outside Fastify's hooks lacks: the store is not found at registration.
  const idGenerator = (request: { socket: { remotePort?: number } }): string => `${request.socket.remotePort ?? 0}-${ids++}-${Math.random().toString(36).slice(2)}`
  const server = await startServer(t, {}, { session: { idGenerator: idGenerator as never } })
  await t.rejects(server.app.logoutSession('a-session-id'), { code: 'FST_SIO_SESSION_NO_STORE', message: /store could not be found/ }, 'before any request or socket')
  const cookie = await login(server.url)
  const { sessionId } = await me(server.url, cookie)
  t.same(await server.app.logoutSession(sessionId), { sockets: 0, nodes: 1, unacknowledged: 0 }, 'after an HTTP request, with no socket ever connected')
  t.equal((await me(server.url, cookie)).user, null, 'the session is destroyed: the store came with the request')
  const again = await login(server.url)
  const socket = await connect(t, server.url, { cookie: again })
  const reason = disconnectReason(socket)
  t.same(await server.app.logoutSession((await me(server.url, again)).sessionId), { sockets: 1, nodes: 1, unacknowledged: 0 })
  t.equal(await reason, 'io server disconnect')
})
