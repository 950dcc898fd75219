import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import type { Socket as ServerSocket } from 'socket.io'
import type { FastifyRequest } from 'fastify'
import { Signer } from '@fastify/cookie'
import type { FastifySessionOptions } from '@fastify/session'
import { connect, handshake, refused, sleep, transportModes } from './helpers/client'
import { captureLogs, login, me, secret, startServer } from './helpers/server'
import { TestStore } from './helpers/store'
import { VerifiedCookies } from '../lib/session-load'

/** A store whose reads answer after `delayMs`, as a networked store does: reads can overlap. */
class SlowStore extends TestStore {
  delayMs = 150
  override get (sessionId: string, callback: (err: unknown, session?: any) => void): void {
    const read = (): void => { super.get(sessionId, callback) }
    setTimeout(read, this.delayMs)
  }
}

interface Seen { sessionId: string, user: { name: string, tags?: string[] } | null }

/** The server answers 'whoami' with the socket's session. */
async function server (t: Test, store: TestStore, session: Partial<FastifySessionOptions> = {}): Promise<{ url: string, sockets: ServerSocket[] }> {
  const sockets: ServerSocket[] = []
  const s = await startServer(t, {}, { session: { store, cookie: { secure: false, maxAge: 3_600_000 }, ...session } })
  s.app.io.on('connection', (socket) => {
    sockets.push(socket)
    socket.on('whoami', (ack: (value: Seen) => void) => { ack({ sessionId: socket.request.session.sessionId, user: socket.request.session.user ?? null }) })
  })
  return { url: s.url, sockets }
}

for (const { name, transports } of transportModes) {
  t.test(`${name}: 5 concurrent handshakes with one cookie share one store read, and each socket has its own session`, async (t) => {
    const store = new SlowStore()
    const s = await server(t, store)
    const cookie = await login(s.url, 'Ada')
    store.calls.get = 0
    const sockets = await Promise.all(Array.from({ length: 5 }, async () => await connect(t, s.url, { cookie, transports })))
    t.equal(store.calls.get, 1, 'one read for the five')
    const seen = await Promise.all(sockets.map(async (socket) => await socket.emitWithAck('whoami') as Seen))
    t.same(new Set(seen.map((x) => x.user?.name)), new Set(['Ada']), 'every socket has the user')
    t.equal(new Set(seen.map((x) => x.sessionId)).size, 1, 'the same session id')
    t.equal(new Set(s.sockets.map((x) => x.request.session)).size, 5, 'five Session objects')
    t.equal(new Set(s.sockets.map((x) => x.request.session.user)).size, 5, 'no stored object shared between them')
    const [one, ...others] = s.sockets.map((x) => x.request.session)
    if (one.user !== undefined) one.user.name = 'Bob' // in place, outside any event: nothing saves or syncs it
    t.same(others.map((x) => x.user?.name), ['Ada', 'Ada', 'Ada', 'Ada'], 'a change inside one socket\'s session object is its own, as with a read each')
  })
}

t.test('handshakes one after the other read the store each: a session is never older than its handshake', async (t) => {
  const store = new SlowStore()
  const s = await server(t, store)
  const cookie = await login(s.url, 'Ada')
  store.calls.get = 0
  const first = await connect(t, s.url, { cookie })
  t.equal(((await first.emitWithAck('whoami')) as Seen).user?.name, 'Ada')
  const [id] = [...store.data.keys()]
  const data = store.read(id) as Record<string, any>
  data.user.name = 'Grace' // changed in the store after the first read completed
  store.data.set(id, JSON.stringify(data))
  const second = await connect(t, s.url, { cookie })
  t.equal(((await second.emitWithAck('whoami')) as Seen).user?.name, 'Grace', 'the second handshake reads again')
  t.equal(store.calls.get, 2, 'one read each')
})

t.test('a session destroyed between two handshakes: the later one gets a fresh session, though its cookie was verified before', async (t) => {
  const store = new SlowStore()
  const s = await server(t, store)
  const cookie = await login(s.url, 'Ada')
  const first = await connect(t, s.url, { cookie })
  const before = await first.emitWithAck('whoami') as Seen
  t.equal(before.user?.name, 'Ada')
  store.data.delete(before.sessionId)
  const second = await connect(t, s.url, { cookie })
  const after = await second.emitWithAck('whoami') as Seen
  t.equal(after.user, null, 'no user')
  t.not(after.sessionId, before.sessionId, 'a new session')
})

t.test('a cookie verified before, then tampered with: a fresh session', async (t) => {
  const store = new TestStore()
  const s = await server(t, store)
  const cookie = await login(s.url, 'Ada')
  const good = await connect(t, s.url, { cookie })
  const before = await good.emitWithAck('whoami') as Seen
  const [name, value] = cookie.split('=')
  const signed = decodeURIComponent(value)
  const id = signed.slice(0, signed.lastIndexOf('.'))
  for (const forged of [`${id}.${'A'.repeat(43)}`, `${signed}x`, signed.slice(0, -1), `${id}.`]) {
    const socket = await connect(t, s.url, { cookie: `${name}=${encodeURIComponent(forged)}` })
    const seen = await socket.emitWithAck('whoami') as Seen
    t.equal(seen.user, null, `${forged.slice(id.length)}: no user`)
    t.not(seen.sessionId, before.sessionId, 'another session')
  }
})

t.test('the verified cookies are bounded, least recently used out first', async (t) => {
  const cache = new VerifiedCookies(3)
  for (const c of ['a', 'b', 'c']) cache.add(`${c}.sig`, c)
  t.equal(cache.get('a.sig')?.id, 'a', 'a used: now the most recent')
  cache.add('d.sig', 'd')
  t.equal(cache.size, 3, 'never more than max')
  t.equal(cache.get('b.sig'), undefined, 'b, the least recently used, is gone')
  t.same(['a', 'c', 'd'].map((c) => cache.get(`${c}.sig`)?.id), ['a', 'c', 'd'])
  t.equal(cache.get('a.other'), undefined, 'only the exact cookie string')
})

// Stores and configurations off the common path.

/** A SlowStore whose reads answer with what `answer` makes of the stored data (the store's own oddities). */
class OddStore extends SlowStore {
  /** What the callback threw, caught here as a promise-based store would. */
  readonly thrown: unknown[] = []
  answer: (data: Record<string, any> | null, callback: (err: unknown, session?: any) => void) => void = (data, callback) => { callback(null, data) }

  override get (sessionId: string, callback: (err: unknown, session?: any) => void): void {
    this.calls.get++
    setTimeout(() => {
      try {
        this.answer(this.read(sessionId) ?? null, callback)
      } catch (err) {
        this.thrown.push(err)
      }
    }, this.delayMs)
  }
}

t.test('a store that calls back twice: the first answer counts, the second is ignored', async (t) => {
  const store = new OddStore()
  const s = await server(t, store)
  const cookie = await login(s.url, 'Ada')
  store.answer = (data, callback) => { callback(null, data); callback(new Error('a late second answer')) }
  const socket = await connect(t, s.url, { cookie })
  t.equal(((await socket.emitWithAck('whoami')) as Seen).user?.name, 'Ada', 'the session of the first answer')
  t.same(store.thrown, [], 'nothing thrown')
  const again = await connect(t, s.url, { cookie })
  t.equal(((await again.emitWithAck('whoami')) as Seen).user?.name, 'Ada', 'the next handshake reads again')
})

t.test('a store that answers ENOENT for an unknown session (as file stores do): a fresh session, as @fastify/session gives', async (t) => {
  const store = new OddStore()
  const s = await server(t, store)
  const cookie = await login(s.url, 'Ada')
  store.answer = (_data, callback) => { callback(Object.assign(new Error('no such file'), { code: 'ENOENT' })) }
  store.calls.get = 0
  const sockets = await Promise.all([1, 2].map(async () => await connect(t, s.url, { cookie })))
  for (const socket of sockets) t.equal(((await socket.emitWithAck('whoami')) as Seen).user, null, 'connected, with no user')
  t.equal(store.calls.get, 1, 'one read for both handshakes')
  const none = await connect(t, s.url)
  t.equal(((await none.emitWithAck('whoami')) as Seen).user, null, 'without a cookie: a fresh session')
  t.equal(store.calls.get, 1, 'and no read')
})

t.test('stored data no Session can be built from: those handshakes get SESSION_ERROR, concurrent ones included; other sessions are served', async (t) => {
  const deep = '['.repeat(20_000) + ']'.repeat(20_000)
  const cases: Array<[string, (data: Record<string, any>) => Record<string, any>]> = [
    ['a cookie whose toJSON() throws (a store of class instances)', (data) => ({ ...data, cookie: { toJSON () { throw new Error('cannot serialize') } } })],
    ['a field nested too deep to hash', (data) => ({ ...data, tree: JSON.parse(deep) })]
  ]
  for (const [name, odd] of cases) {
    const store = new OddStore()
    const s = await server(t, store)
    const cookie = await login(s.url, 'Ada')
    const other = await login(s.url, 'Grace')
    const oddId = decodeURIComponent(cookie.split('=')[1]).split('.')[0]
    store.answer = (data, callback) => { callback(null, data !== null && data.user?.name === 'Ada' ? odd(data) : data) }
    const errors = await Promise.all([1, 2].map(async () => await refused(t, s.url, { cookie })))
    t.same(errors.map((e) => e.data?.code), ['SESSION_ERROR', 'SESSION_ERROR'], `${name}: both refused with SESSION_ERROR`)
    t.same(store.thrown, [], `${name}: nothing thrown at the store`)
    t.ok(store.data.has(oddId), `${name}: the stored session is left as it is`)
    const socket = await connect(t, s.url, { cookie: other })
    t.equal(((await socket.emitWithAck('whoami')) as Seen).user?.name, 'Grace', `${name}: another session is served`)
  }
})

t.test('an allowRequest of the application that throws for some of the handshakes sharing a read: the others get their sessions, and the store\'s callback throws the first error, as with a read each', async (t) => {
  const store = new OddStore()
  const sockets: ServerSocket[] = []
  const s = await startServer(t, {
    serverOptions: {
      allowRequest: (req, done) => {
        if (req.headers['x-fail'] !== undefined) throw new Error(`application bug ${String(req.headers['x-fail'])}`)
        done(null, true)
      }
    }
  }, { session: { store, cookie: { secure: false, maxAge: 3_600_000 } } })
  s.app.io.on('connection', (socket) => {
    sockets.push(socket)
    socket.on('whoami', (ack: (value: Seen) => void) => { ack({ sessionId: socket.request.session.sessionId, user: socket.request.session.user ?? null }) })
  })
  const cookie = await login(s.url, 'Ada')
  store.calls.get = 0
  // Raw polling handshakes for the two that fail: engine.io never answers them (as without this
  // plugin when allowRequest throws), and they give up after 1 s. (Not websocket ones: an upgrade
  // left unanswered that way keeps fastify.close() from resolving, with Socket.IO alone too.)
  const unanswered = async (n: string): Promise<unknown> => await handshake(s.url, 'polling', { cookie, 'x-fail': n }, '', 1000).catch((err: Error) => err.message)
  const failing = [unanswered('1')]
  const good = connect(t, s.url, { cookie })
  failing.push(unanswered('2'))
  const socket = await good
  t.equal(((await socket.emitWithAck('whoami')) as Seen).user?.name, 'Ada', 'the handshake in between got its session')
  t.equal(store.calls.get, 1, 'one read for the three')
  t.equal(store.thrown.length, 1, 'one error thrown at the store')
  t.match(store.thrown[0], { message: /^application bug [12]$/ }, 'the first of the errors')
  t.same(await Promise.all(failing), ['no answer to the polling handshake within 1000 ms', 'no answer to the polling handshake within 1000 ms'], 'the two others are not answered')
})

t.test('concurrent handshakes on a store that returns structured data: each socket\'s copy is what a read of its own would give', async (t) => {
  const store = new OddStore()
  const s = await server(t, store)
  const cookie = await login(s.url, 'Ada')
  const extra = (): Record<string, any> => {
    const shared = { n: 1 }
    const loop: Record<string, any> = { name: 'loop' }
    loop.self = loop
    const bare = Object.assign(Object.create(null), { x: 1 })
    return { tags: ['a', 'b'], since: new Date(0), shared, again: shared, loop, bare, map: new Map([['k', 1]]), nested: JSON.parse('{"__proto__":{"polluted":true},"ok":1}') }
  }
  store.answer = (data, callback) => { callback(null, data === null ? null : { ...data, ...extra() }) }
  await Promise.all([1, 2, 3].map(async () => await connect(t, s.url, { cookie })))
  t.equal(store.calls.get, 1, 'one read for the three')
  const sessions = s.sockets.map((socket) => socket.request.session as unknown as Record<string, any>)
  for (const [i, x] of sessions.entries()) {
    t.same(x.tags, ['a', 'b'], `${i}: an array`)
    t.ok(x.since instanceof Date && x.since.getTime() === 0, `${i}: a Date`)
    t.equal(x.shared, x.again, `${i}: a shared reference stays shared`)
    t.equal(x.loop.self, x.loop, `${i}: a cycle stays a cycle`)
    t.equal(Object.getPrototypeOf(x.bare), null, `${i}: an object without prototype stays so`)
    t.equal(x.bare.x, 1)
    t.ok(x.map instanceof Map, `${i}: a class instance`)
    t.ok(Object.hasOwn(x.nested, '__proto__') && Object.getPrototypeOf(x.nested) === Object.prototype, `${i}: an own __proto__ key stays a key`)
    t.same(Object.getOwnPropertyDescriptor(x.nested, '__proto__')?.value, { polluted: true })
  }
  t.equal(new Set(sessions.map((x) => x.tags)).size, 3, 'arrays copied for each')
  t.equal(new Set(sessions.map((x) => x.since)).size, 3, 'Dates copied for each')
  t.equal(new Set(sessions.map((x) => x.loop)).size, 3, 'objects copied for each')
  t.equal(new Set(sessions.map((x) => x.bare)).size, 3, 'objects without prototype copied for each')
  t.equal(new Set(sessions.map((x) => x.map)).size, 1, 'a class instance shared, as the doc says')
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'nothing polluted')
})

t.test('a signer of one\'s own, or an idGenerator that needs a Fastify request: sockets get their sessions through decryptSession', async (t) => {
  const inner = new Signer(secret)
  const configurations: Array<[string, Partial<FastifySessionOptions>]> = [
    ['secret: { sign, unsign }', { secret: { sign: (value: string) => inner.sign(value), unsign: (value: string) => inner.unsign(value) } }],
    ['idGenerator reading request.log', { idGenerator: (request) => { (request as FastifyRequest).log.trace('new session id'); return randomUUID() } }]
  ]
  for (const [name, options] of configurations) {
    const s = await startServer(t, {}, { session: { store: new TestStore(), cookie: { secure: false }, ...options } })
    s.app.io.on('connection', (socket) => { socket.on('whoami', (ack: (value: unknown) => void) => { ack(socket.request.session.user?.name ?? null) }) })
    const cookie = await login(s.url, 'Ada')
    for (const { transports } of transportModes) {
      const socket = await connect(t, s.url, { cookie, transports })
      t.equal(await socket.emitWithAck('whoami'), 'Ada', `${name}, ${transports.join('+')}: the session`)
    }
  }
})

t.test('a signer that takes even the empty cookie to the store: the loader\'s first look at a fresh session never lands on the handshake\'s request', async (t) => {
  const inner = new Signer(secret)
  // unsign('') gives an id, so the fresh session the loader builds once to learn @fastify/session's
  // layout reads the store; that read answers last, after the handshake has its real session.
  const signer = { sign: (value: string) => inner.sign(value), unsign: (value: string) => value === '' ? { valid: true, renew: false, value: 'nobody' } : inner.unsign(value) }
  class LateStore extends TestStore {
    override get (sessionId: string, callback: (err: unknown, session?: any) => void): void {
      setTimeout(() => { super.get(sessionId, callback) }, sessionId === 'nobody' ? 150 : 10)
    }
  }
  const s = await startServer(t, {}, { session: { store: new LateStore(), cookie: { secure: false }, secret: signer } })
  s.app.io.on('connection', (socket) => { socket.on('whoami', (ack: (value: unknown) => void) => { ack(socket.request.session.user?.name ?? null) }) })
  const cookie = await login(s.url, 'Ada')
  const socket = await connect(t, s.url, { cookie })
  t.equal(await socket.emitWithAck('whoami'), 'Ada', 'the socket\'s session')
  await sleep(250) // the look's late read has answered
  t.equal(await socket.emitWithAck('whoami'), 'Ada', 'still the socket\'s session')
})

t.test('a secret retired by changing the array given to @fastify/session: a socket with a cookie of that secret, verified before, gets a fresh session, as HTTP does', async (t) => {
  const secrets = ['old secret with at least 32 characters']
  const s = await server(t, new TestStore(), { secret: secrets })
  const cookie = await login(s.url, 'Ada')
  const before = await connect(t, s.url, { cookie })
  t.equal(((await before.emitWithAck('whoami')) as Seen).user?.name, 'Ada', 'verified (and remembered)')
  secrets.unshift('new secret with at least 32 characters')
  const during = await connect(t, s.url, { cookie })
  t.equal(((await during.emitWithAck('whoami')) as Seen).user?.name, 'Ada', 'while the old secret is still in the array')
  secrets.pop()
  t.equal((await me(s.url, cookie)).user, null, 'HTTP: the old secret\'s cookie no longer opens the session')
  const after = await connect(t, s.url, { cookie })
  t.equal(((await after.emitWithAck('whoami')) as Seen).user, null, 'the socket: neither')
})

t.test('a store whose get() throws at once or fails, or that answers what is no session: SESSION_ERROR, or a fresh session and a warning; the next handshake reads again', async (t) => {
  const store = new OddStore()
  const logs = captureLogs('warn')
  const s = await startServer(t, {}, { fastify: { logger: logs.logger }, session: { store, cookie: { secure: false, maxAge: 3_600_000 } } })
  s.app.io.on('connection', (socket) => { socket.on('whoami', (ack: (value: unknown) => void) => { ack(socket.request.session.user?.name ?? null) }) })
  const cookie = await login(s.url, 'Ada')
  const answer = store.answer
  const get = store.get.bind(store)
  store.get = () => { throw new Error('store bug') }
  t.equal((await refused(t, s.url, { cookie })).data?.code, 'SESSION_ERROR', 'a get() that throws: SESSION_ERROR')
  store.get = get
  store.answer = (_data, callback) => { callback(new Error('store unreachable')) }
  t.equal((await refused(t, s.url, { cookie })).data?.code, 'SESSION_ERROR', 'a get() that fails: SESSION_ERROR')
  store.answer = (_data, callback) => { callback(null, 'not a session') }
  const fresh = await connect(t, s.url, { cookie })
  t.equal(await fresh.emitWithAck('whoami'), null, 'data that is no session: a fresh session')
  t.ok(logs.lines.some((line) => line.level === 40 && line.type === 'string' && /not a session/.test(line.msg)), 'and a warning with its type')
  store.answer = answer
  const socket = await connect(t, s.url, { cookie })
  t.equal(await socket.emitWithAck('whoami'), 'Ada', 'the store fixed: the session')
})
