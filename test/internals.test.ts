import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import fastifyCookie, { Signer } from '@fastify/cookie'
import fastifySession, { type FastifySessionOptions } from '@fastify/session'
import type { IncomingMessage } from 'node:http'
import { randomUUID } from 'node:crypto'
import { Server } from 'socket.io'
import { createAdapter } from '@socket.io/redis-adapter'
import { cookieAttributesOf, cookieLayout, findSessionStore, loadedExpiry, savedVersionOf, sessionFactoryOf, sessionHashMethod, sessionSymbolLayout } from '../lib/session-internals'
import { aroundSocketCreation, carriesServerSideEvents, namespacesOf, prependMiddleware, recoveryOptions, redisPublishClientOf, sendEventPacket, withoutResponseHeaders } from '../lib/socketio-internals'
import { client, connect, connected, handshake, once } from './helpers/client'
import { createSessionLoader } from '../lib/session-load'
import { login, secret, startServer } from './helpers/server'
import { TestStore } from './helpers/store'

// What lib/session-internals.ts and lib/session-load.ts rely on in @fastify/session and
// @fastify/cookie, checked against the installed versions: each test names what a new version changed.

type AnyRecord = Record<PropertyKey, any>

/** The onMalformed callback of loaders that must never see data that is not a session. */
function noMalformed (data: unknown): void {
  throw new Error(`unexpected: the store returned no session (${typeof data})`)
}

async function sessionApp (t: Test, options: Partial<FastifySessionOptions> = {}): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret, cookie: { secure: false, maxAge: 3_600_000 }, ...options })
  app.post('/login', async (request) => {
    request.session.set('user', { id: 'u1', name: 'Ada' })
    ;(request.session as unknown as Record<string, unknown>).prefs = { tags: ['a', 'b'], since: new Date(0), nothing: null }
    request.session.set('count', 1)
    return 'ok'
  })
  await app.ready()
  return app
}

async function loginCookie (app: FastifyInstance): Promise<string> {
  const response = await app.inject({ method: 'POST', url: '/login' })
  const cookie = response.cookies.find((c) => c.name === 'sessionId')
  if (cookie === undefined) throw new Error('no session cookie')
  return cookie.value
}

function fakeRequest (protocol?: string): IncomingMessage & { session?: any, protocol?: string } {
  return { headers: {}, ...(protocol === undefined ? {} : { protocol }) } as never
}

function freshSession (app: FastifyInstance, cookieOptions = {}): AnyRecord {
  const request = fakeRequest()
  app.decryptSession('', request, cookieOptions, () => {})
  return request.session
}

/** Everything observable about a session object: its prototype, its own properties by name or by description. */
function describe (session: AnyRecord): unknown {
  const value = (v: unknown): unknown => {
    if (v instanceof Date) return { date: v.getTime() }
    if (typeof v === 'function') return 'function'
    if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
      return Object.keys(v).map((k) => [k, value((v as AnyRecord)[k])])
    }
    return v
  }
  const cookie = session.cookie as AnyRecord
  return {
    prototype: Object.getPrototypeOf(session),
    strings: Object.keys(session).map((k) => [k, k === 'cookie' ? 'cookie' : value(session[k])]),
    symbols: Object.getOwnPropertySymbols(session).map((s) => [s.description, typeof session[s] === 'object' && session[s] !== null && Object.getPrototypeOf(session[s]) !== Object.prototype ? session[s] : value(session[s])]),
    cookie: { prototype: Object.getPrototypeOf(cookie), own: Object.keys(cookie).map((k) => [k, value(cookie[k])]) }
  }
}

/** Runs `fn` with Date.now() fixed, so that two sessions built in turn get the same expiry. */
function atFixedTime<T> (fn: () => T): T {
  const now = Date.now
  const fixed = now()
  Date.now = () => fixed
  try {
    return fn()
  } finally {
    Date.now = now
  }
}

/** The session `fastify.decryptSession` builds, and the one the plugin's loader builds, from the same cookie and store. */
function bothWays (app: FastifyInstance, signed: string, cookieOptions: AnyRecord = {}, protocol?: string, load = createSessionLoader(app, cookieOptions, noMalformed)): { upstream: AnyRecord, plugin: AnyRecord, request: AnyRecord } {
  return atFixedTime(() => {
    const a = fakeRequest(protocol)
    let upstreamDone = false
    app.decryptSession(signed, a, cookieOptions, () => { upstreamDone = true })
    const b = fakeRequest(protocol)
    let pluginDone = false
    load(signed, b, () => { pluginDone = true })
    if (!upstreamDone || !pluginDone) throw new Error('the memory or test store answers synchronously')
    return { upstream: a.session, plugin: b.session, request: b }
  })
}

t.test('@fastify/session: a session keeps the private symbols session-internals reads, in this order', async (t) => {
  const app = await sessionApp(t)
  const session = freshSession(app)
  t.same(Object.getOwnPropertySymbols(session).map((s) => s.description), sessionSymbolLayout, 'symbol descriptions of a new Session (lib/session.js)')
  t.same(Object.keys(session), ['cookie'], 'a new Session has one string-keyed property, its cookie')
  const proto = Object.getPrototypeOf(session)
  t.ok(Object.getOwnPropertySymbols(proto).some((s) => s.description === sessionHashMethod && typeof proto[s] === 'function'), 'Session.prototype has its [hash]() method')
  t.type(proto.regenerate, 'function', 'Session.prototype.regenerate')
  const restored = bothWays(app, await loginCookie(app)).upstream
  t.same(Object.keys(restored.cookie), cookieLayout, 'the keys of a restored Cookie (lib/cookie.js)')
  t.ok(sessionFactoryOf(session as never, () => true), 'session-internals recognizes this layout')
})

t.test('@fastify/cookie: a cookie that verifies with the first secret is exactly sign(id); with an older one, renew', async (t) => {
  const signer = new Signer(['new secret with at least 32 characters', 'old secret with at least 32 characters'])
  const old = new Signer('old secret with at least 32 characters')
  for (const id of ['abc', 'a.b.c', 'Zx-_9'.repeat(7), 'é€']) {
    const cookie = signer.sign(id)
    t.same(signer.unsign(cookie), { valid: true, renew: false, value: id }, `${id}: verified, not renewed`)
    t.equal(signer.sign(id), cookie, `${id}: signing again gives the same cookie`)
    t.same(signer.unsign(old.sign(id)), { valid: true, renew: true, value: id }, `${id}: an older secret verifies, with renew`)
    t.equal(signer.unsign(cookie.slice(0, -1) + (cookie.endsWith('A') ? 'B' : 'A')).valid, false, `${id}: a changed signature does not verify`)
  }
  const app = await sessionApp(t)
  const session = freshSession(app)
  const signerOf = Object.getOwnPropertySymbols(session).find((s) => s.description === 'cookieSignerKey')
  t.ok(signerOf !== undefined && session[signerOf] instanceof Signer, '@fastify/session signs with @fastify/cookie\'s Signer (a secret option), which the cache of verified cookies requires')
})

const configurations: Array<{ name: string, session?: Partial<FastifySessionOptions>, cookieOptions?: AnyRecord, protocol?: string, json?: boolean }> = [
  { name: 'memory store, maxAge' },
  { name: 'JSON store, maxAge', json: true },
  { name: 'JSON store, browser-session cookie (no maxAge)', json: true, session: { cookie: { secure: false } } },
  { name: 'memory store, absolute expires', session: { cookie: { secure: false, expires: new Date(Date.now() + 3_600_000) } } },
  { name: 'JSON store, absolute expires', json: true, session: { cookie: { secure: false, expires: new Date(Date.now() + 3_600_000) } } },
  { name: 'secure auto over https', session: { cookie: { secure: 'auto', maxAge: 60_000 } }, protocol: 'https' },
  { name: 'secure auto over http, JSON store', json: true, session: { cookie: { secure: 'auto', maxAge: 60_000 } } },
  { name: 'every cookie attribute, plugin cookie options', json: true, session: { cookie: { secure: false, maxAge: 60_000, sameSite: 'strict', domain: 'example.com', path: '/', httpOnly: false, partitioned: true } }, cookieOptions: { sameSite: 'lax', priority: 'high' } },
  { name: 'rolling off, saveUninitialized off', json: true, session: { rolling: false, saveUninitialized: false } }
]

for (const config of configurations) {
  t.test(`a restored session is built property for property as @fastify/session builds it: ${config.name}`, async (t) => {
    const store = config.json === true ? new TestStore() : undefined
    const app = await sessionApp(t, { ...config.session, ...(store === undefined ? {} : { store }) })
    const signed = await loginCookie(app)
    const { upstream, plugin, request } = bothWays(app, signed, config.cookieOptions, config.protocol)
    t.equal(upstream.user?.name, 'Ada', 'the stored session')
    t.same(describe(plugin), describe(upstream), 'the same prototype, properties, symbols (cookie options included, in order) and cookie')
    t.ok(plugin instanceof upstream.constructor, 'instanceof Session')
    t.equal(plugin.isModified(), false, 'not modified')
    plugin.user.name = 'Bob'
    upstream.user.name = 'Bob'
    t.equal(plugin.isModified(), upstream.isModified(), 'a change is seen as @fastify/session sees it')

    // What @fastify/session does with it afterwards works the same.
    await plugin.save()
    t.equal(plugin.isSaved(), true, 'save()')
    await plugin.reload()
    t.equal(request.session.user.name, 'Bob', 'reload() reads what save() wrote')
    await request.session.regenerate()
    t.not(request.session.sessionId, upstream.sessionId, 'regenerate() gives a new id')
    if (store !== undefined) t.ok(store.read(request.session.sessionId), 'the regenerated session was saved')
  })
}

t.test('cookie options changed at restart: the stored cookie wins, as in @fastify/session', async (t) => {
  for (const [stored, now] of [[{ maxAge: 3_600_000 }, { maxAge: 60_000 }], [{ maxAge: 60_000 }, {}], [{}, { maxAge: 60_000, sameSite: 'lax' }], [{ expires: new Date(Date.now() + 60_000) }, { maxAge: 60_000 }]] as const) {
    const store = new TestStore()
    const before = await sessionApp(t, { store, cookie: { secure: false, ...stored } })
    const signed = await loginCookie(before)
    const after = await sessionApp(t, { store, cookie: { secure: false, ...now } })
    const { upstream, plugin } = bothWays(after, signed)
    t.same(describe(plugin), describe(upstream), `stored with ${JSON.stringify(stored)}, loaded with ${JSON.stringify(now)}`)
  }
})

t.test('secrets rotated at restart: a cookie of the older secret is verified every time and signed again, as @fastify/session does', async (t) => {
  const store = new TestStore()
  const before = await sessionApp(t, { store, secret: 'old secret with at least 32 characters' })
  const signed = await loginCookie(before)
  const after = await sessionApp(t, { store, secret: ['new secret with at least 32 characters', 'old secret with at least 32 characters'] })
  const { upstream, plugin } = bothWays(after, signed)
  t.same(describe(plugin), describe(upstream))
  t.not(plugin.encryptedSessionId, signed, 'signed again with the new secret')
  const dropped = await sessionApp(t, { store, secret: 'new secret with at least 32 characters' })
  const fresh = bothWays(dropped, signed)
  t.equal(fresh.plugin.user, undefined, 'a cookie of a secret no longer configured gives a fresh session')
  t.not(fresh.plugin.sessionId, upstream.sessionId)
})

t.test('@fastify/session never changes a session\'s cookie options in place (sessions may share equal ones)', async (t) => {
  const app = await sessionApp(t, { store: new TestStore() })
  const signed = await loginCookie(app)
  const { plugin } = bothWays(app, signed)
  const key = Object.getOwnPropertySymbols(plugin).find((s) => s.description === 'cookieOpts') as symbol
  const options = plugin[key]
  const copy = JSON.stringify(options)
  plugin.options({ maxAge: 5000 })
  plugin.touch()
  await plugin.save()
  await plugin.reload()
  t.equal(JSON.stringify(options), copy, 'options(), touch(), save(), reload() left the object as it was')
})

t.test('an expired session is regenerated, as @fastify/session does', async (t) => {
  const store = new TestStore()
  const app = await sessionApp(t, { store, cookie: { secure: false, maxAge: 50 } })
  const signed = await loginCookie(app)
  const id = signed.slice(0, signed.lastIndexOf('.'))
  await new Promise((resolve) => setTimeout(resolve, 80))
  const request = fakeRequest()
  await new Promise<void>((resolve, reject) => createSessionLoader(app, {}, noMalformed)(signed, request, (err) => { err == null ? resolve() : reject(err) }))
  t.equal(request.session.user, undefined, 'an empty session')
  t.not(request.session.sessionId, id, 'a new id')
  t.equal(store.read(id), undefined, 'the expired session was destroyed')
})

t.test('the change-detection hash is @fastify/session\'s, load after load of a cookie, whatever changed in between (property-based)', async (t) => {
  const fc = await import('fast-check')
  const store = new TestStore()
  const app = await sessionApp(t, { store })
  const signed = await loginCookie(app)
  const id = signed.slice(0, signed.lastIndexOf('.'))
  const load = createSessionLoader(app, {}, noMalformed)
  const fieldValue = fc.oneof(fc.jsonValue(), fc.date({ noInvalidDate: true }), fc.constant(undefined), fc.array(fc.string()))
  const fields = fc.dictionary(fc.string().filter((k) => !['cookie', 'sessionId', 'encryptedSessionId', '__proto__'].includes(k)), fieldValue, { maxKeys: 5 })
  let runs = 0
  await fc.assert(fc.asyncProperty(fc.array(fields, { minLength: 1, maxLength: 4 }), async (versions) => {
    for (const version of [...versions, versions[0]]) {
      const stored = store.read(id) as AnyRecord
      store.data.set(id, JSON.stringify({ cookie: stored.cookie, ...version }))
      const { upstream, plugin } = bothWays(app, signed, {}, undefined, load)
      const key = Object.getOwnPropertySymbols(upstream).find((s) => s.description === 'persistedHash') as symbol
      if (plugin[key] !== upstream[key] || plugin.isModified() || upstream.isModified()) return false
    }
    runs++
    return true
  }), { numRuns: 150 })
  t.equal(runs, 150, 'every sequence of stored versions gave the hash @fastify/session computes')
})

// What lib/session-internals.ts (live authority) and lib/socketio-internals.ts rely on.

t.test('@fastify/session: the persisted hash changes with a saved change of fields, not with a rolling save', async (t) => {
  const app = await sessionApp(t)
  const session = freshSession(app)
  const before = savedVersionOf(session as never)
  t.type(before, 'string', 'the \'persistedHash\' symbol holds a string (savedVersionOf)')
  session.cookie.expires = new Date(Date.now() + 1000)
  await session.save()
  t.equal(savedVersionOf(session as never), before, 'a save that only moves the expiry keeps it')
  session.set('note', 'changed')
  t.equal(savedVersionOf(session as never), before, 'an unsaved change keeps it')
  await session.save()
  t.not(savedVersionOf(session as never), before, 'a saved change of a field renews it')
})

t.test('@fastify/session: decryptSession of a cookie that does not verify gives at once a session that carries the store', async (t) => {
  const store = new TestStore()
  const app = await sessionApp(t, { store })
  t.equal(findSessionStore(app.decryptSession), store, 'findSessionStore finds the configured store, without a request')
  t.equal(store.calls.get, 0, 'without reading it')
})

t.test('Socket.IO: _nsps holds every namespace (dynamic children too), _fns the middlewares, and the adapters\' serverSideEmit', async (t) => {
  const io = new Server() // attached to no HTTP server: nothing to close
  io.of(/^\/dyn-\w+$/)
  const child = (io.of(/^\/dyn-\w+$/) as unknown as { createChild (name: string): unknown }).createChild('/dyn-a')
  t.ok([...namespacesOf(io)].includes(child as never), 'a dynamic namespace\'s child is in Server#_nsps')
  const order: string[] = []
  io.use((_socket, next) => { order.push('theirs'); next() })
  prependMiddleware(io.of('/'), (_socket: unknown, next: () => void) => { order.push('ours'); next() })
  t.ok(Array.isArray((io.of('/') as unknown as { _fns?: unknown })._fns), 'Namespace#_fns is an array')
  t.equal(((io.of('/') as unknown as { _fns: unknown[] })._fns).length, 2, 'prependMiddleware put it there')
  t.notOk(carriesServerSideEvents(io.of('/').adapter), 'the in-memory adapter carries no server-side events')
  const pub = { publish: () => {}, on: () => {}, duplicate: () => pub, psubscribe: () => {}, subscribe: () => {}, pSubscribe: () => {} }
  const redisAdapter = createAdapter(pub as never, pub as never)(io.of('/'))
  t.ok(carriesServerSideEvents(redisAdapter), 'the Redis adapter does')
})

t.test('prependMiddleware without Namespace#_fns (a Socket.IO that renamed it) falls back to use(): the middleware still runs, after the others', async (t) => {
  const used: unknown[] = []
  const namespace = { use (fn: unknown) { used.push(fn) } }
  const middleware = (): void => {}
  prependMiddleware(namespace, middleware)
  t.same(used, [middleware])
})

t.test('Socket.IO and engine.io: recovery options, the polling close timeout and the websocket handshake\'s response headers are where the plugin looks', async (t) => {
  const recovering = new Server({ connectionStateRecovery: { skipMiddlewares: true } })
  t.same(recoveryOptions(recovering), { maxDisconnectionDuration: 120000, skipMiddlewares: true }, 'Server#opts.connectionStateRecovery holds the options')
  t.equal(recoveryOptions(new Server()), undefined, 'and nothing without recovery')

  const app = Fastify()
  t.teardown(() => app.close())
  const io = new Server(app.server)
  t.teardown(() => { io.engine.close() })
  const seen: { closeTimeout?: unknown, responseHeaders?: boolean } = {}
  io.engine.on('connection', (conn: { transport: { name: string, closeTimeout?: unknown } }) => {
    if (conn.transport.name === 'polling') seen.closeTimeout = conn.transport.closeTimeout
  })
  io.engine.opts.allowRequest = (req, done) => {
    if (req.headers.upgrade !== undefined) seen.responseHeaders = Object.getOwnPropertySymbols(req).some((s) => s.description === 'responseHeaders')
    done(null, true)
  }
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  await handshake(url, 'polling', {})
  await handshake(url, 'websocket', {})
  t.type(seen.closeTimeout, 'number', 'a polling transport has a numeric closeTimeout (closePollingAtOnce)')
  t.equal(seen.responseHeaders, true, 'a websocket handshake request carries the responseHeaders symbol (withoutResponseHeaders)')
})

t.test('@fastify/session: a Cookie\'s toJSON() gives the attributes it sets the cookie with, and originalExpires the expiry it was loaded with', async (t) => {
  const store = new TestStore()
  const app = await sessionApp(t, { store, cookie: { secure: false, maxAge: 3_600_000, sameSite: 'strict' } })
  const signed = await loginCookie(app)
  const { upstream } = bothWays(app, signed)
  t.type(Object.getPrototypeOf(upstream.cookie).toJSON, 'function', 'the Cookie class has toJSON')
  const attributes = cookieAttributesOf(upstream as never)
  t.match(attributes, { sameSite: 'strict', path: '/', httpOnly: true, secure: false, originalMaxAge: 3_600_000 }, 'cookieAttributesOf: the cookie\'s attributes')
  t.type(attributes.expires, Date, 'with its expiry')
  const id = signed.slice(0, signed.lastIndexOf('.'))
  const stored = new Date((store.read(id) as { cookie: { expires: string } }).cookie.expires).getTime()
  upstream.touch()
  t.equal(loadedExpiry(upstream as never), stored, 'loadedExpiry: originalExpires is the stored expiry, a touch() does not move it')
  t.equal(loadedExpiry(freshSession(app) as never), undefined, 'a fresh session has none')
})

t.test('Socket.IO: Namespace#_createSocket creates each socket, Socket#packet sends a packet as is; the Redis adapter keeps its pubClient', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  const io = new Server(app.server)
  t.teardown(() => { io.close() })
  const created: unknown[] = []
  t.equal(aroundSocketCreation(io.of('/'), (client) => { created.push(client.request.headers['x-test']) }, () => { created.push('after') }), true, 'aroundSocketCreation wraps Namespace#_createSocket')
  io.on('connection', (socket) => { sendEventPacket(socket, ['hello', 1, { two: 2 }]) })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const socket = client(t, url, { headers: { 'x-test': 'seen' } })
  const hello = once<unknown[]>({ once: (event, fn) => socket.once(event, (...args: unknown[]) => { fn(args) }) }, 'hello')
  await connected(socket)
  t.same(created, ['seen', 'after'], 'before() and after() ran once each, before() with the engine.io client and its request, and the socket connected')
  t.same(await hello, [1, { two: 2 }], 'sendEventPacket: the client gets the event and its arguments')
  t.equal(aroundSocketCreation({} as never, () => {}, () => {}), false, 'without _createSocket, nothing is wrapped')

  const pub = { publish: () => {}, on: () => {}, duplicate: () => pub, psubscribe: () => {}, subscribe: () => {}, pSubscribe: () => {} }
  const redisAdapter = createAdapter(pub as never, pub as never)(io.of('/'))
  t.equal(redisPublishClientOf(redisAdapter), pub, '@socket.io/redis-adapter: pubClient is the client it publishes with')
  t.equal(redisPublishClientOf(io.of('/').adapter), undefined, 'the in-memory adapter has none')
})

// What session-load's fast path does in the configurations @fastify/session allows beyond the usual ones.

/** The own keys (symbols included) and values of an object, and whether its prototype is Object.prototype. */
function exactly (object: AnyRecord): unknown {
  return { plain: Object.getPrototypeOf(object) === Object.prototype, keys: Reflect.ownKeys(object).map((k) => [String(k), object[k]]) }
}

function cookieOptsOf (session: AnyRecord): AnyRecord {
  return session[Object.getOwnPropertySymbols(session).find((s) => s.description === 'cookieOpts') as symbol]
}

/** Sets the session the store holds for the cookie's id to what `change` makes of it. */
function rewrite (store: TestStore, signed: string, change: (data: AnyRecord) => AnyRecord | string): void {
  const id = signed.slice(0, signed.lastIndexOf('.'))
  const data = change(store.read(id) as AnyRecord)
  store.data.set(id, typeof data === 'string' ? data : JSON.stringify(data))
}

/** An idGenerator that takes the id a test puts on the request, so that two regenerated sessions can be compared. */
const idGenerator = (request?: unknown): string => (request as { nextId?: string } | undefined)?.nextId ?? randomUUID()

/** bothWays, for a session that is regenerated (expired): both get the same new id. */
function bothWaysRegenerated (app: FastifyInstance, store: TestStore, signed: string, cookieOptions: AnyRecord = {}): { upstream: AnyRecord, plugin: AnyRecord } {
  return atFixedTime(() => {
    const nextId = randomUUID()
    const before = new Map(store.data)
    const a = Object.assign(fakeRequest(), { nextId })
    app.decryptSession(signed, a, cookieOptions, () => {})
    for (const [id, json] of before) store.data.set(id, json) // the expired session again, destroyed by the first regenerate()
    const b = Object.assign(fakeRequest(), { nextId })
    createSessionLoader(app, cookieOptions, noMalformed)(signed, b, () => {})
    return { upstream: a.session, plugin: b.session }
  })
}

t.test('cookie options with a symbol key, or a stored cookie with an own __proto__ key: built as @fastify/session builds them', async (t) => {
  const note = Symbol('note')
  const cases: Array<{ name: string, cookie: AnyRecord, stored?: (cookie: AnyRecord) => AnyRecord, expire?: boolean }> = [
    { name: 'a symbol-keyed cookie option, maxAge', cookie: { secure: false, maxAge: 60_000, [note]: 'kept' } },
    { name: 'a symbol-keyed cookie option, absolute expires', cookie: { secure: false, expires: new Date(Date.now() + 60_000), [note]: 'kept' } },
    { name: 'a stored cookie with an own "__proto__" key (JSON)', cookie: { secure: false, maxAge: 60_000 }, stored: (c) => JSON.parse(JSON.stringify(c).replace('{', '{"__proto__":{"polluted":true},')) },
    { name: 'a symbol-keyed option, an expired absolute expires (regenerated)', cookie: { secure: false, expires: new Date(Date.now() + 60_000), [note]: 'kept' }, stored: (c) => ({ ...c, expires: new Date(Date.now() - 1000) }), expire: true },
    { name: 'an expired absolute expires (regenerated)', cookie: { secure: false, expires: new Date(Date.now() + 60_000) }, stored: (c) => ({ ...c, expires: new Date(Date.now() - 1000) }), expire: true },
    { name: 'a stored cookie whose toJSON() gives nothing (a store of class instances)', cookie: { secure: false, maxAge: 60_000 }, stored: () => ({ toJSON: () => undefined }) }
  ]
  for (const c of cases) {
    const store = new TestStore()
    const app = await sessionApp(t, { store, idGenerator, cookie: c.cookie as never })
    const signed = await loginCookie(app)
    if (c.stored !== undefined) {
      const change = c.stored
      if (c.name.includes('toJSON')) {
        // What a store returns as is, not JSON.
        const get = store.get.bind(store)
        store.get = (id, callback) => get(id, (err, data) => callback(err, data == null ? data : { ...data, cookie: change(data.cookie) }))
      } else {
        rewrite(store, signed, (data) => ({ ...data, cookie: change(data.cookie) }))
      }
    }
    const { upstream, plugin } = c.expire === true ? bothWaysRegenerated(app, store, signed) : bothWays(app, signed)
    t.same(describe(plugin), describe(upstream), `${c.name}: the same session`)
    t.same(exactly(cookieOptsOf(plugin)), exactly(cookieOptsOf(upstream)), `${c.name}: the same cookie options, symbols and own __proto__ included`)
    if (c.expire === true) t.not(plugin.sessionId, signed.slice(0, signed.lastIndexOf('.')), 'regenerated')
    else t.equal(plugin.user?.name, 'Ada', 'the stored session')
    t.same(Object.getPrototypeOf({}), Object.prototype, 'nothing polluted')
  }
})

t.test('a stored cookie that changes between loads of the same cookie: each load\'s session is @fastify/session\'s', async (t) => {
  const store = new TestStore()
  const app = await sessionApp(t, { store })
  const signed = await loginCookie(app)
  const load = createSessionLoader(app, {}, noMalformed)
  const later = new Date(Date.now() + 7_200_000).toISOString()
  const versions: Array<[string, (cookie: AnyRecord) => AnyRecord]> = [
    ['as stored', (c) => c],
    ['the same again (options shared)', (c) => c],
    ['a later expiry (a rolling save)', (c) => ({ ...c, expires: later })],
    ['a key more', (c) => ({ ...c, expires: later, partitioned: true })],
    ['a key fewer', (c) => { const { domain: _domain, ...rest } = c; return { ...rest, expires: later } }],
    ['keys in another order', (c) => Object.fromEntries(Object.entries({ ...c, expires: later }).reverse())]
  ]
  const original = (store.read(signed.slice(0, signed.lastIndexOf('.'))) as AnyRecord).cookie
  for (const [name, change] of versions) {
    rewrite(store, signed, (data) => ({ ...data, cookie: change(original) }))
    const { upstream, plugin } = bothWays(app, signed, {}, undefined, load)
    t.same(describe(plugin), describe(upstream), name)
  }
})

t.test('fields JSON cannot key (a BigInt in a memory-store session) or too long to key: the hash is still @fastify/session\'s, load after load', async (t) => {
  for (const [name, json, set] of [
    ['a BigInt (memory store)', false, (s: AnyRecord) => { s.counter = 10n }],
    ['a cycle (memory store)', false, (s: AnyRecord) => { const o: AnyRecord = {}; o.self = o; s.graph = o }],
    ['3 KB of fields (JSON store)', true, (s: AnyRecord) => ({ ...s, notes: 'x'.repeat(3000) })]
  ] as const) {
    const store = json ? new TestStore() : undefined
    const app = await sessionApp(t, store === undefined ? {} : { store })
    const signed = await loginCookie(app)
    const id = signed.slice(0, signed.lastIndexOf('.'))
    // What a route set and saved: the memory store keeps the live session, the JSON store its JSON.
    if (store === undefined) findSessionStore(app.decryptSession)?.get(id, (_err, live) => { set(live as AnyRecord) })
    else rewrite(store, signed, (data) => set(data) as AnyRecord)
    const load = createSessionLoader(app, {}, noMalformed)
    const key = (s: AnyRecord): unknown => s[Object.getOwnPropertySymbols(s).find((k) => k.description === 'persistedHash') as symbol]
    for (const round of ['first load', 'second load', 'after a change']) {
      if (round === 'after a change' && store !== undefined) rewrite(store, signed, (data) => ({ ...data, notes: 'y'.repeat(3000) }))
      const { upstream, plugin } = bothWays(app, signed, {}, undefined, load)
      t.equal(key(plugin), key(upstream), `${name}, ${round}: the same hash`)
      t.equal(plugin.isModified(), false, `${name}, ${round}: not modified`)
    }
  }
})

t.test('a signer of one\'s own (secret: { sign, unsign }): every load goes through decryptSession, with the same sessions', async (t) => {
  const inner = new Signer(secret)
  const custom = { sign: (value: string) => inner.sign(value), unsign: (value: string) => inner.unsign(value) }
  const store = new TestStore()
  const app = await sessionApp(t, { store, secret: custom })
  const signed = await loginCookie(app)
  const { upstream, plugin } = bothWays(app, signed)
  t.equal(plugin.user?.name, 'Ada', 'the stored session')
  t.same(describe(plugin), describe(upstream), 'the same session')
  t.not(cookieOptsOf(plugin), undefined, 'with its cookie options')
  const tampered = bothWays(app, signed.slice(0, -2))
  t.equal(tampered.plugin.user, undefined, 'a tampered cookie: a fresh session')
  store.failing = true
  const failure = await new Promise((resolve) => createSessionLoader(app, {}, noMalformed)(signed, fakeRequest(), resolve))
  t.match(failure, { message: 'store unreachable' }, 'a store failure is passed on')
})

t.test('an idGenerator that needs a Fastify request: no store found at boot, and sessions load through decryptSession', async (t) => {
  const store = new TestStore()
  const app = await sessionApp(t, { store, idGenerator: (request) => { (request as FastifyRequest).log.trace('new session id'); return randomUUID() } })
  t.equal(findSessionStore(app.decryptSession), undefined, 'findSessionStore: none (the lifecycle takes it from the first socket\'s session)')
  const signed = await loginCookie(app)
  const { upstream, plugin } = bothWays(app, signed)
  t.equal(plugin.user?.name, 'Ada', 'the stored session')
  t.same(describe(plugin), describe(upstream), 'the same session')
})

t.test('@fastify/cookie: the Signer checks against the very secrets array it was given, and signs with its first secret at construction', async (t) => {
  const secrets = ['old secret with at least 32 characters']
  const signer = new Signer(secrets)
  const cookie = signer.sign('id')
  secrets.unshift('new secret with at least 32 characters')
  t.same(signer.unsign(cookie), { valid: true, renew: true, value: 'id' }, 'unsign reads the array as it is now')
  t.equal(signer.sign('id'), cookie, 'sign keeps the key it was built with')
  secrets.pop()
  t.equal(signer.unsign(cookie).valid, false, 'a secret taken out of the array no longer verifies')
})

t.test('secrets rotated in place (as @fastify/session\'s README suggests): the loader verifies as @fastify/session does', async (t) => {
  const oldSecret = 'old secret with at least 32 characters'
  const newSecret = 'new secret with at least 32 characters'
  const secrets = [oldSecret]
  const store = new TestStore()
  const app = await sessionApp(t, { store, secret: secrets })
  const signed = await loginCookie(app)
  const id = signed.slice(0, signed.lastIndexOf('.'))
  const load = createSessionLoader(app, {}, noMalformed)
  const loadBoth = (cookie: string): { upstream: AnyRecord, plugin: AnyRecord } => atFixedTime(() => {
    const a = fakeRequest()
    app.decryptSession(cookie, a, {}, () => {})
    const b = fakeRequest()
    load(cookie, b, () => {})
    return { upstream: a.session, plugin: b.session }
  })
  t.equal(loadBoth(signed).plugin.user?.name, 'Ada', 'verified (and remembered)')
  secrets.unshift(newSecret)
  const byNewNode = new Signer(newSecret).sign(id) // what a node started after the change sends
  for (const cookie of [byNewNode, byNewNode, signed]) {
    const { upstream, plugin } = loadBoth(cookie)
    t.same(describe(plugin), describe(upstream), 'a new first secret that is not the signing key: the same session (signed with the signing key)')
  }
  secrets.pop() // the old secret retired
  const { upstream, plugin } = loadBoth(signed)
  t.equal(upstream.user, undefined, '@fastify/session: the old secret\'s cookie gives a fresh session')
  t.equal(plugin.user, undefined, 'the loader too, though it verified that cookie before')
  t.not(plugin.sessionId, id)
})

t.test('engine.io: a polling handshake that carries an Upgrade header has no response headers to keep aside', async (t) => {
  const request = { headers: { upgrade: 'websocket' } } as unknown as IncomingMessage
  const done = (): void => {}
  t.equal(withoutResponseHeaders(request, done), done, 'the callback as it is')
  const s = await startServer(t, {}, { session: { cookie: { secure: false } } })
  s.app.io.on('connection', (socket) => { socket.on('whoami', (ack: (name: unknown) => void) => { ack(socket.request.session.user?.name ?? null) }) })
  const cookie = await login(s.url, 'Ada')
  const polled = await handshake(s.url, 'polling', { cookie, upgrade: 'websocket' })
  t.equal(polled.status, 200, 'the polling handshake is served')
  const socket = await connect(t, s.url, { cookie, transports: ['polling', 'websocket'], headers: { upgrade: 'h2c' } })
  t.equal(await socket.emitWithAck('whoami'), 'Ada', 'with its session')
})
