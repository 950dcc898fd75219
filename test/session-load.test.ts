import t, { type Test } from 'tap'
import type { Socket as ServerSocket } from 'socket.io'
import { connect, transportModes } from './helpers/client'
import { login, startServer } from './helpers/server'
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
async function server (t: Test, store: TestStore): Promise<{ url: string, sockets: ServerSocket[] }> {
  const sockets: ServerSocket[] = []
  const s = await startServer(t, {}, { session: { store, cookie: { secure: false, maxAge: 3_600_000 } } })
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
