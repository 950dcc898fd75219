import t from 'tap'
import type { Socket } from 'socket.io-client'
import { connect, handshake, refused, transportModes } from './helpers/client'
import { captureLogs, login, me, startServer } from './helpers/server'
import { TestStore } from './helpers/store'

const setCookies = (headers: { 'set-cookie'?: string[] }): string[] => headers['set-cookie'] ?? []

for (const transport of ['polling', 'websocket'] as const) {
  t.test(`${transport}: createSession saves a fresh session and sends exactly one Set-Cookie`, async (t) => {
    const store = new TestStore()
    const server = await startServer(t, { createSession: true, validateInterval: 0 }, { session: { store } })
    const host = new URL(server.url).host

    const fresh = await handshake(server.url, transport, { host })
    const cookies = setCookies(fresh.headers)
    t.equal(cookies.length, 1, 'one Set-Cookie')
    t.match(cookies[0], /^sessionId=[^;]+; Path=\/; HttpOnly; SameSite=Lax/, '@fastify/session\'s cookie attributes')
    t.equal(store.data.size, 1, 'the session is in the store')

    const cookie = cookies[0].split(';')[0]
    const again = await handshake(server.url, transport, { host, cookie })
    t.same(setCookies(again.headers), [], 'a handshake with a valid session gets no Set-Cookie')
    t.equal(store.data.size, 1, 'and creates nothing')

    const loggedIn = await login(server.url)
    t.same(setCookies((await handshake(server.url, transport, { host, cookie: loggedIn })).headers), [], 'nor a logged-in one')
  })
}

for (const { name, transports } of transportModes) {
  t.test(`${name}: socket first, HTTP second: one session`, async (t) => {
    const server = await startServer(t, { createSession: true, validateInterval: 0 })
    server.app.io.on('connection', (socket) => {
      socket.on('whoami', (ack: (id: string) => void) => { ack(socket.request.session.sessionId) })
    })
    const host = new URL(server.url).host
    const cookie = setCookies((await handshake(server.url, 'polling', { host })).headers)[0].split(';')[0]
    const socket: Socket = await connect(t, server.url, { cookie, transports })
    const socketSessionId = await socket.emitWithAck('whoami')
    const httpSession = await me(server.url, cookie)
    t.equal(httpSession.sessionId, socketSessionId, 'HTTP sees the session the socket has')
  })
}

t.test('the cookie option overrides the cookie of sessions created during a handshake', async (t) => {
  const server = await startServer(t, { createSession: true, validateInterval: 0, cookie: { sameSite: 'strict', secure: false, maxAge: 60_000, path: '/' } })
  const cookies = setCookies((await handshake(server.url, 'websocket', { host: new URL(server.url).host })).headers)
  t.equal(cookies.length, 1)
  t.match(cookies[0], /SameSite=Strict/)
  t.match(cookies[0], /Expires=/, 'maxAge gives the cookie an expiry')
})

t.test('a Secure cookie is never sent over plain HTTP, as @fastify/session does', async (t) => {
  const server = await startServer(t, { createSession: true, validateInterval: 0 }, { session: { cookie: { secure: true } } })
  const insecure = await handshake(server.url, 'polling', { host: new URL(server.url).host })
  t.same(setCookies(insecure.headers), [])
  const trusted = await startServer(t, { createSession: true, validateInterval: 0, trustProxy: true }, { session: { cookie: { secure: true } } })
  const viaTls = await handshake(trusted.url, 'polling', { host: new URL(trusted.url).host, 'x-forwarded-proto': 'https' })
  t.match(setCookies(viaTls.headers)[0], /; Secure/, 'behind a trusted TLS proxy it is')
})

t.test('without createSession, no session is stored and no cookie is sent', async (t) => {
  const store = new TestStore()
  const server = await startServer(t, { validateInterval: 0 }, { session: { store } })
  const result = await handshake(server.url, 'polling', { host: new URL(server.url).host })
  t.same(setCookies(result.headers), [])
  t.equal(store.data.size, 0)
})

t.test('a created session the store fails to save: no cookie, SESSION_ERROR logged, on both transports; served again once the store is back', async (t) => {
  const { lines, logger } = captureLogs('info')
  const store = new TestStore()
  const server = await startServer(t, { createSession: true, validateInterval: 0 }, { session: { store }, fastify: { logger } })
  const host = new URL(server.url).host
  store.failing = true
  for (const { name, transports } of transportModes) {
    t.same(setCookies((await handshake(server.url, transports[0], { host })).headers), [], `${name}: no Set-Cookie for a session that is not stored`)
    const err = await refused(t, server.url, { transports })
    t.same(err.data, { code: 'SESSION_ERROR' }, `${name}: a readable refusal`)
  }
  t.equal(store.calls.set, 4, 'each handshake tried to save its session')
  t.equal(store.data.size, 0, 'nothing stored')
  const logged = lines.filter((line) => line.level === 50 && line.msg === 'socket.io session: the session could not be loaded or authorized')
  t.equal(logged.length, 2, 'each refusal logged at error level')
  t.match(logged[0], { err: { message: 'store unreachable' } }, 'with the store\'s error')

  store.failing = false
  const back = await handshake(server.url, 'polling', { host })
  t.equal(setCookies(back.headers).length, 1, 'the store back: the cookie is sent')
  t.ok((await connect(t, server.url)).connected, 'and sockets are admitted')
})
