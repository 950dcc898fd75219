import t from 'tap'
import type { Duplex } from 'node:stream'
import type { Socket as ServerSocket } from 'socket.io'
import fastifySession from '@fastify/session'
import { connect, handshake, once, sleep, transportModes } from './helpers/client'
import { watchCrashes } from './helpers/process'
import { countSessionLoads, login, me, secret, startServer } from './helpers/server'
import { TestStore } from './helpers/store'

// The session of every socket, as the server sees it, answered over the socket itself.
function echoSession (server: { app: { io: { on: Function, of: Function } } }): void {
  const reply = (socket: ServerSocket): void => {
    socket.on('whoami', (ack: (value: unknown) => void) => {
      const session = socket.request.session
      ack({ sessionId: session.sessionId, user: session.user ?? null, secure: session.cookie.secure })
    })
  }
  server.app.io.on('connection', reply)
  server.app.io.of('/admin').on('connection', reply)
}

for (const { name, transports } of transportModes) {
  t.test(`${name}: socket.request.session is the logged-in session, in every namespace`, async (t) => {
    const server = await startServer(t)
    echoSession(server)
    const cookie = await login(server.url, 'Ada')
    const me = await (await fetch(`${server.url}/me`, { headers: { cookie } })).json() as { sessionId: string }

    for (const namespace of ['/', '/admin']) {
      const socket = await connect(t, server.url, { cookie, transports, namespace })
      const seen = await socket.emitWithAck('whoami') as { sessionId: string, user: unknown }
      t.same(seen, { sessionId: me.sessionId, user: { id: 'id-Ada', name: 'Ada' }, secure: false }, `namespace ${namespace}`)
    }
  })

  t.test(`${name}: bad cookies give a fresh empty session, never an error`, async (t) => {
    const server = await startServer(t)
    echoSession(server)
    const good = await login(server.url, 'Ada')
    const [, signed] = good.split('=')
    const value = decodeURIComponent(signed)
    const id = value.slice(0, value.lastIndexOf('.'))
    const cases: Record<string, string | undefined> = {
      'no cookie': undefined,
      'garbage cookie': 'sessionId=%%%garbage;;',
      'tampered signature': `sessionId=${encodeURIComponent(id + '.' + 'A'.repeat(43))}`,
      'tampered id': `sessionId=${encodeURIComponent((value[0] === 'x' ? 'y' : 'x') + value.slice(1))}`,
      'unknown session id': await unknownSessionCookie(server.url)
    }
    for (const [label, cookie] of Object.entries(cases)) {
      const socket = await connect(t, server.url, { cookie, transports })
      const seen = await socket.emitWithAck('whoami') as { sessionId: string, user: unknown }
      t.equal(seen.user, null, `${label}: no user`)
      t.not(seen.sessionId, id, `${label}: a new session id`)
      t.match(seen.sessionId, /^[\w-]{10,}$/, `${label}: a real session`)
    }
  })
}

// A validly signed cookie whose session was never stored: signed by a second server with the same secret.
async function unknownSessionCookie (url: string): Promise<string> {
  const Fastify = (await import('fastify')).default
  const other = Fastify()
  await other.register((await import('@fastify/cookie')).default)
  await other.register(fastifySession, { secret, cookie: { secure: false } })
  other.get('/', async (request) => { request.session.note = 'elsewhere'; return 'ok' })
  const response = await other.inject('/')
  await other.close()
  const cookie = response.cookies.find((c) => c.name === 'sessionId')
  if (cookie === undefined || url === '') throw new Error('no cookie')
  return `sessionId=${encodeURIComponent(cookie.value)}`
}

t.test('an expired session is regenerated: a new empty session, the old one destroyed', async (t) => {
  const server = await startServer(t, {}, { session: { cookie: { secure: false, maxAge: 300 } } })
  echoSession(server)
  const cookie = await login(server.url, 'Ada')
  const before = await (await fetch(`${server.url}/me`, { headers: { cookie } })).json() as { sessionId: string }
  await new Promise((resolve) => setTimeout(resolve, 400))
  const socket = await connect(t, server.url, { cookie })
  const seen = await socket.emitWithAck('whoami') as { sessionId: string, user: unknown }
  t.equal(seen.user, null, 'the expired user is gone')
  t.not(seen.sessionId, before.sessionId, 'a new id')
})

t.test('cookieName and cookiePrefix must match @fastify/session', async (t) => {
  const server = await startServer(t, { cookieName: 'sid', cookiePrefix: 's:' }, {
    session: { cookieName: 'sid', cookiePrefix: 's:' }
  })
  echoSession(server)
  const response = await fetch(`${server.url}/login`, { method: 'POST' })
  const cookie = response.headers.getSetCookie().find((line) => line.startsWith('sid='))?.split(';')[0]
  t.match(cookie, /^sid=s(:|%3A)/, 'the cookie carries the prefix')
  const socket = await connect(t, server.url, { cookie })
  const seen = await socket.emitWithAck('whoami') as { user: unknown }
  t.same(seen.user, { id: 'id-Ada', name: 'Ada' })

  const unprefixed = cookie?.replace(/^sid=s(:|%3A)/, 'sid=')
  t.not(unprefixed, cookie)
  const withoutPrefix = await connect(t, server.url, { cookie: unprefixed })
  const anonymous = await withoutPrefix.emitWithAck('whoami') as { user: unknown }
  t.equal(anonymous.user, null, 'the same cookie without the prefix does not open the session')
})

t.test('cookie.secure auto: Secure behind a trusted proxy that says https, not otherwise', async (t) => {
  const trusted = await startServer(t, { trustProxy: '127.0.0.1' }, { fastify: { trustProxy: '127.0.0.1' } })
  echoSession(trusted)
  const viaProxy = await connect(t, trusted.url, { headers: { 'x-forwarded-proto': 'https' } })
  t.same((await viaProxy.emitWithAck('whoami') as { secure: boolean }).secure, true, 'trusted X-Forwarded-Proto: https')
  const direct = await connect(t, trusted.url)
  t.same((await direct.emitWithAck('whoami') as { secure: boolean }).secure, false, 'no header: http')

  const untrusted = await startServer(t)
  echoSession(untrusted)
  const spoofed = await connect(t, untrusted.url, { headers: { 'x-forwarded-proto': 'https' } })
  t.same((await spoofed.emitWithAck('whoami') as { secure: boolean }).secure, false, 'an untrusted header is ignored')
})

t.test('the session is loaded once per connection, on the handshake only, not on each poll', async (t) => {
  let loads = { count: 0 }
  const server = await startServer(t, {}, { before: (app) => { loads = countSessionLoads(app) } })
  echoSession(server)
  const cookie = await login(server.url)
  const socket = await connect(t, server.url, { cookie, transports: ['polling', 'websocket'] })
  await socket.emitWithAck('whoami')
  if (socket.io.engine.transport.name !== 'websocket') await once(socket.io.engine, 'upgrade')
  await socket.emitWithAck('whoami')
  await connect(t, server.url, { cookie, transports: ['polling', 'websocket'], namespace: '/admin' })
  t.equal(loads.count, 2, 'one load per connection: the second is a new Manager')
})

t.test('an allowRequest of serverOptions that throws: its error goes up as it would without the plugin, once, and it ran once', async (t) => {
  const crashes = watchCrashes(t)
  const thrown = new Error('the application\'s allowRequest threw')
  const unanswered: Duplex[] = [] // engine.io leaves a handshake whose allowRequest threw unanswered: the test closes them
  t.teardown(() => { for (const connection of unanswered) connection.destroy() })
  let calls = 0
  const server = await startServer(t, {
    serverOptions: {
      allowRequest: (req, done) => {
        calls++
        if (req.headers['x-throw'] === undefined) return done(null, true)
        unanswered.push(req.socket)
        throw thrown
      }
    }
  })
  const host = new URL(server.url).host
  for (const transport of ['polling', 'websocket'] as const) {
    calls = 0
    crashes.length = 0
    // No cookie: the fresh session is loaded synchronously, so the throw comes back through the session load.
    const answer = handshake(server.url, transport, { host, 'x-throw': '1' }).catch((err: Error) => err)
    for (let i = 0; i < 100 && crashes.length === 0; i++) await sleep(20)
    t.same(crashes, [thrown], `${transport}: its error, uncaught as engine.io leaves it, once`)
    t.equal(calls, 1, `${transport}: the application's allowRequest ran once, not again as if the session load had failed`)
    unanswered.pop()?.destroy()
    t.match(await answer, { code: 'ECONNRESET' }, `${transport}: no answer until the connection is closed`)
  }
  crashes.length = 0
  t.ok((await connect(t, server.url)).connected, 'the server keeps serving')
  t.same(crashes, [])
})

t.test('a cookie of an older secret (rotated at restart): its session counts as the stored one, so the sweep ends it once it is gone from the store', async (t) => {
  const store = new TestStore() // JSON, as Redis or PostgreSQL: the restored session is signed again with the new secret
  const before = await startServer(t, {}, { session: { store, secret: 'old secret with at least 32 characters' } })
  const cookie = await login(before.url)
  const { sessionId } = await me(before.url, cookie)
  const after = await startServer(t, { validateInterval: 50 }, { session: { store, secret: ['new secret with at least 32 characters', 'old secret with at least 32 characters'] } })
  echoSession(after)
  const socket = await connect(t, after.url, { cookie })
  t.match(await socket.emitWithAck('whoami'), { sessionId, user: { name: 'Ada' } }, 'the stored session, through the older secret')
  const ended = once<{ reason: string }>(socket, 'session:end')
  store.data.delete(sessionId) // gone from the store (another service, an admin tool)
  t.same(await ended, { reason: 'destroyed' }, 'the sweep checks it, as any stored session')
})
