import t, { type Test } from 'tap'
import { performance } from 'node:perf_hooks'
import type { IncomingMessage } from 'node:http'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import fastifyPassport from '@fastify/passport'
import { Strategy as LocalStrategy } from 'passport-local'
import type { Socket as ClientSocket } from 'socket.io-client'
import fastifySocketIoSession from '../lib/index'
import type { FastifySocketIoSessionOptions, SessionSocket } from '../types/index'
import { connect, once, refused, sleep, transportModes } from './helpers/client'
import { cookieOf, secret } from './helpers/server'

// The user Passport puts on requests, and so on sockets: typed once, through @fastify/passport.
declare module 'fastify' {
  interface PassportUser {
    id: string
    name: string
  }
}

type Authenticator = InstanceType<typeof fastifyPassport.Authenticator>

const accounts = new Map([
  ['u1', { id: 'u1', name: 'Ada', password: 'ada-secret' }],
  ['u2', { id: 'u2', name: 'Bob', password: 'bob-secret' }]
])

/** Where each deserialization ran: a Fastify request (HTTP) or a socket's raw request. */
const deserializedFor: string[] = []

/** An Authenticator as an application sets it up: passport-local, the session holding the user id only. */
function setUp (passport: Authenticator): Authenticator {
  passport.use('local', new LocalStrategy((username, password, done) => {
    const account = [...accounts.values()].find((a) => a.name === username && a.password === password)
    done(null, account === undefined ? false : { id: account.id, name: account.name })
  }))
  passport.registerUserSerializer(async (user: { id: string }) => user.id)
  passport.registerUserDeserializer(async (id: string, request: { raw?: IncomingMessage }) => {
    deserializedFor.push(request.raw === undefined ? 'socket' : 'http')
    const account = accounts.get(id)
    return account === undefined ? null : { id: account.id, name: account.name }
  })
  return passport
}

// The @fastify/passport default export (an Authenticator), as most applications use it.
setUp(fastifyPassport)

/**
 * A real server on 127.0.0.1: @fastify/session (memory store), @fastify/passport with passport-local,
 * and the plugin with `passport`. Closed by the test's teardown.
 */
async function startServer (t: Test, passport: Authenticator, plugin: FastifySocketIoSessionOptions = {}): Promise<{ app: FastifyInstance, url: string }> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret, cookie: { secure: 'auto' } })
  await app.register(passport.initialize())
  await app.register(passport.secureSession())
  await app.register(fastifySocketIoSession, { passport, ...plugin })

  app.post('/login', { preValidation: passport.authenticate('local') }, async (request) => ({ user: request.user }))
  // The logout route the README recommends: Passport's logout, then the plugin's.
  app.post('/logout', async (request, reply) => {
    await request.logout()
    await reply.logout()
    return await reply.code(204).send()
  })
  // Passport's logout alone (it regenerates the session).
  app.post('/passport-logout', async (request, reply) => {
    await request.logout()
    return await reply.code(204).send()
  })
  app.get('/me', async (request) => ({ sessionId: request.session.sessionId, user: request.user ?? null }))

  const handle = (socket: SessionSocket): void => {
    socket.on('whoami', (ack: (seen: unknown) => void) => {
      const session = socket.request.session as unknown as Record<string, unknown>
      ack({ nsp: socket.nsp.name, user: socket.request.user ?? null, stored: session[passport.key] ?? null })
    })
  }
  app.io.on('connection', handle)
  app.io.of('/chat').on('connection', handle)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return { app, url: `http://127.0.0.1:${address.port}` }
}

/** An anonymous session's cookie (@fastify/session saves uninitialized sessions by default). */
async function anonymous (url: string): Promise<string> {
  return cookieOf(await fetch(`${url}/me`))
}

/** A Passport login over HTTP (passport-local), from the given session if any; returns the new cookie. */
async function login (url: string, username: string, cookie?: string): Promise<string> {
  const password = username === 'Ada' ? 'ada-secret' : 'bob-secret'
  const response = await fetch(`${url}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(cookie === undefined ? {} : { cookie }) },
    body: JSON.stringify({ username, password })
  })
  if (response.status !== 200) throw new Error(`login answered ${response.status}`)
  return cookieOf(response)
}

async function me (url: string, cookie: string): Promise<{ sessionId: string, user: unknown }> {
  return await (await fetch(`${url}/me`, { headers: { cookie } })).json() as { sessionId: string, user: unknown }
}

const ada = { id: 'u1', name: 'Ada' }

t.test('socket.request.user is the user Passport deserializes, in every namespace, on both transports', async (t) => {
  const server = await startServer(t, fastifyPassport)
  const cookie = await login(server.url, 'Ada')
  for (const { name, transports } of transportModes) {
    for (const namespace of ['/', '/chat']) {
      deserializedFor.length = 0
      const socket = await connect(t, server.url, { cookie, transports, namespace })
      const seen = await socket.emitWithAck('whoami')
      t.same(seen, { nsp: namespace, user: ada, stored: 'u1' }, `${name}, ${namespace}: the session holds the id, the socket has the user`)
      t.same(deserializedFor, ['socket'], `${name}, ${namespace}: through registerUserDeserializer, given the socket's request`)
    }
  }
  const socket = await connect(t, server.url, { cookie: await anonymous(server.url) })
  t.same(await socket.emitWithAck('whoami'), { nsp: '/', user: null, stored: null }, 'an anonymous session: no request.user')
})

t.test('userRoom can use socket.request.user', async (t) => {
  const server = await startServer(t, fastifyPassport, {
    userRoom: (_session, socket) => socket.request.user && 'user:' + socket.request.user.id
  })
  const first = await login(server.url, 'Ada')
  const second = await login(server.url, 'Ada') // another session (another browser) of the same user
  const targets = [
    { label: 'first session, /', socket: await connect(t, server.url, { cookie: first }) },
    { label: 'second session, / (polling)', socket: await connect(t, server.url, { cookie: second, transports: ['polling', 'websocket'] }) }
  ]
  const others = [await connect(t, server.url, { cookie: await login(server.url, 'Bob') }), await connect(t, server.url, { cookie: await anonymous(server.url) })]
  const unexpected: unknown[] = []
  for (const socket of others) socket.on('news', (value: unknown) => unexpected.push(value))

  const received = targets.map(({ socket }) => once<string>(socket, 'news'))
  server.app.io.to('user:u1').emit('news', 'for Ada')
  const values = await Promise.all(received)
  targets.forEach(({ label }, i) => t.equal(values[i], 'for Ada', label))
  await sleep(100)
  t.same(unexpected, [], 'Bob\'s and an anonymous socket received nothing')
  t.same((await server.app.io.in('user:u2').fetchSockets()).length, 1, 'Bob\'s socket is in his own room')
})

t.test('a Passport login (which regenerates the session) disconnects the sockets of the previous session', async (t) => {
  const server = await startServer(t, fastifyPassport)
  const before = await anonymous(server.url)
  const previousId = (await me(server.url, before)).sessionId
  const sockets: Array<{ label: string, socket: ClientSocket }> = []
  for (const { name, transports } of transportModes) {
    for (const namespace of ['/', '/chat']) {
      const socket = await connect(t, server.url, { cookie: before, transports, namespace })
      t.same((await socket.emitWithAck('whoami') as { user: unknown }).user, null, `${name}, ${namespace}: anonymous`)
      sockets.push({ label: `${name}, ${namespace}`, socket })
    }
  }
  const reasons = sockets.map(({ socket }) => once<string>(socket, 'disconnect', 2000))
  const told = sockets.map(({ socket }) => once(socket, 'session:end', 2000))
  const after = await login(server.url, 'Ada', before)
  const seen = await Promise.all(reasons)
  sockets.forEach(({ label }, i) => t.equal(seen[i], 'io server disconnect', `${label}: disconnected`))
  t.same(await Promise.all(told), sockets.map(() => ({ reason: 'regenerated' })), 'each told: regenerated')
  t.not((await me(server.url, after)).sessionId, previousId, 'the login gave a new session id')

  const socket = await connect(t, server.url, { cookie: after })
  t.same((await socket.emitWithAck('whoami') as { user: unknown }).user, ada, 'a socket opened with the new cookie has the user')
})

t.test('a Passport logout with reply.logout() disconnects every socket of the session', async (t) => {
  const server = await startServer(t, fastifyPassport)
  const cookie = await login(server.url, 'Ada')
  const otherSession = await login(server.url, 'Ada')
  const sockets: Array<{ label: string, socket: ClientSocket }> = []
  for (const { name, transports } of transportModes) {
    for (const namespace of ['/', '/chat']) {
      sockets.push({ label: `${name}, ${namespace}`, socket: await connect(t, server.url, { cookie, transports, namespace }) })
    }
  }
  const bystander = await connect(t, server.url, { cookie: otherSession })
  const reasons = sockets.map(({ socket }) => once<string>(socket, 'disconnect', 1000).catch(() => 'still connected after 1 s'))
  const told = sockets.map(({ socket }) => once(socket, 'session:end', 1000).catch(() => null))

  const start = performance.now()
  const response = await fetch(`${server.url}/logout`, { method: 'POST', headers: { cookie } })
  const seen = await Promise.all(reasons)
  const elapsed = performance.now() - start
  t.equal(response.status, 204, 'POST /logout: request.logout() then reply.logout()')
  t.match(response.headers.getSetCookie().join('\n'), /sessionId=;/, 'the cookie is cleared')
  t.same((await me(server.url, cookie)).user, null, 'the old cookie has no user any more')
  sockets.forEach(({ label }, i) => t.equal(seen[i], 'io server disconnect', `${label}: disconnected`))
  if (seen.every((reason) => reason === 'io server disconnect')) t.comment(`logout to the last disconnect: ${elapsed.toFixed(1)} ms`)
  else t.comment('the session\'s sockets were still connected 1 s after the logout')
  t.same(await Promise.all(told), sockets.map(() => ({ reason: 'logout' })), 'each told: logout')
  t.ok(bystander.connected, 'another session of the same user stays connected')
})

t.test('Passport\'s logout alone (it regenerates the session) disconnects the sockets of the session', async (t) => {
  const server = await startServer(t, fastifyPassport)
  const cookie = await login(server.url, 'Ada')
  const sockets = [await connect(t, server.url, { cookie }), await connect(t, server.url, { cookie, namespace: '/chat', transports: ['polling', 'websocket'] })]
  const reasons = sockets.map((socket) => once<string>(socket, 'disconnect', 2000))
  const told = sockets.map((socket) => once(socket, 'session:end', 2000))
  const response = await fetch(`${server.url}/passport-logout`, { method: 'POST', headers: { cookie } })
  t.equal(response.status, 204)
  t.same(await Promise.all(told), [{ reason: 'regenerated' }, { reason: 'regenerated' }], 'both told: regenerated')
  t.same(await Promise.all(reasons), ['io server disconnect', 'io server disconnect'], 'both disconnected')
})

t.test('authorize can require a Passport user: anonymous sockets get SESSION_UNAUTHORIZED', async (t) => {
  // A separate Authenticator instance, as an application with several would pass.
  const passport = setUp(new fastifyPassport.Authenticator())
  const server = await startServer(t, passport, {
    authorize: (_session, socket) => socket.request.user !== undefined
  })
  const cookie = await login(server.url, 'Ada')
  for (const { name, transports } of transportModes) {
    for (const namespace of ['/', '/chat']) {
      const noCookie = await refused(t, server.url, { transports, namespace })
      t.equal(noCookie.data?.code, 'SESSION_UNAUTHORIZED', `${name}, ${namespace}: no cookie`)
      const anonymousSession = await refused(t, server.url, { cookie: await anonymous(server.url), transports, namespace })
      t.equal(anonymousSession.data?.code, 'SESSION_UNAUTHORIZED', `${name}, ${namespace}: a session without a user`)
      const socket = await connect(t, server.url, { cookie, transports, namespace })
      t.same((await socket.emitWithAck('whoami') as { user: unknown }).user, ada, `${name}, ${namespace}: a logged-in user connects`)
    }
  }

  // A user that no longer exists: the deserializer finds nobody (null), so there is no request.user.
  const bob = await login(server.url, 'Bob')
  const account = accounts.get('u2')
  accounts.delete('u2')
  t.teardown(() => { if (account !== undefined) accounts.set('u2', account) })
  const deleted = await refused(t, server.url, { cookie: bob })
  t.equal(deleted.data?.code, 'SESSION_UNAUTHORIZED', 'a deleted user is refused')
})
