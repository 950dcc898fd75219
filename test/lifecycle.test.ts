import t from 'tap'
import type { Test } from 'tap'
import type { FastifySocketIoSessionOptions, SessionSocket } from '../types/index'
import { client, connect, once, sleep, transportModes } from './helpers/client'
import { captureLogs, login, logout, me, startServer, type TestServer } from './helpers/server'
import { TestStore } from './helpers/store'

/** The application's socket handlers: each works on `socket.request.session`, the current session. */
function serve (server: TestServer): void {
  const handle = (socket: SessionSocket): void => {
    socket.on('increment', (ack?: (count: number) => void) => {
      const session = socket.request.session
      session.count = (session.count ?? 0) + 1
      ack?.(session.count)
    })
    socket.on('increment-async', async (ack: (count: number) => void) => {
      await new Promise((resolve) => setImmediate(resolve))
      const session = socket.request.session
      session.count = (session.count ?? 0) + 1
      ack(session.count)
    })
    socket.once('increment-once', () => {
      const session = socket.request.session
      session.count = (session.count ?? 0) + 1
    })
    socket.on('read', (ack: (value: unknown) => void) => {
      ack({ count: socket.request.session.count ?? null, note: socket.request.session.note ?? null })
    })
    socket.on('note-later', async (note: string, ack: () => void) => {
      await sleep(150)
      socket.request.session.note = note
      ack()
    })
    socket.on('forget-note', (ack: () => void) => {
      delete socket.request.session.note
      ack()
    })
    socket.on('fail', () => { throw new Error('handler bug') })
  }
  server.app.io.on('connection', handle)
  server.app.io.of('/admin').on('connection', handle)
}

async function setup (t: Test, options: FastifySocketIoSessionOptions = {}, session: Record<string, unknown> = {}): Promise<TestServer & { store: TestStore }> {
  const store = new TestStore()
  const server = await startServer(t, { validateInterval: 0, ...options }, { session: { store, ...session } })
  serve(server)
  return { ...server, store }
}

const sessionIdOf = async (url: string, cookie: string): Promise<string> => (await me(url, cookie)).sessionId

for (const { name, transports } of transportModes) {
  t.test(`${name}: autoSave saves what a handler changed (sync, async, once, with an ack sent after the save)`, async (t) => {
    const server = await setup(t)
    const cookie = await login(server.url)
    const id = await sessionIdOf(server.url, cookie)
    const socket = await connect(t, server.url, { cookie, transports })

    t.equal(await socket.emitWithAck('increment'), 1)
    t.equal(server.store.read(id)?.count, 1, 'sync handler: saved before the ack arrived')
    t.equal(await socket.emitWithAck('increment-async'), 2)
    t.equal(server.store.read(id)?.count, 2, 'async handler: saved before the ack arrived')
    socket.emit('increment-once')
    socket.emit('increment-once')
    await socket.emitWithAck('read')
    t.equal(server.store.read(id)?.count, 3, 'once handler, without ack: saved, once')
    await socket.emitWithAck('forget-note')
    t.equal((await me(server.url, cookie)).count, 3, 'HTTP sees the socket\'s writes')

    const before = { ...server.store.calls }
    await socket.emitWithAck('read')
    await socket.emitWithAck('read')
    t.same(server.store.calls, before, 'unmodified: no store access at all')
  })
}

t.test('autoSave: false saves nothing', async (t) => {
  const server = await setup(t, { autoSave: false })
  const cookie = await login(server.url)
  const socket = await connect(t, server.url, { cookie })
  t.equal(await socket.emitWithAck('increment'), 1)
  await sleep(20)
  t.equal((await me(server.url, cookie)).count, null)
})

t.test('no clobbering: a socket\'s save keeps the fields an HTTP request wrote meanwhile', async (t) => {
  const server = await setup(t, { syncSessions: false }) // with sync, the socket would see the write at once
  const cookie = await login(server.url)
  const socket = await connect(t, server.url, { cookie })
  // HTTP writes `note` after the socket loaded its (now stale) copy of the session.
  await fetch(`${server.url}/note`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: JSON.stringify({ note: 'from HTTP' }) })
  t.same(await socket.emitWithAck('read'), { count: null, note: null }, 'without reloadOnEvent the socket has its copy')
  await socket.emitWithAck('increment')
  const stored = await me(server.url, cookie)
  t.equal(stored.note, 'from HTTP', 'the HTTP write survives')
  t.equal(stored.count, 1, 'the socket write too')
  t.equal(stored.user?.name, 'Ada')
})

t.test('a deleted field is deleted in the store, and only that one', async (t) => {
  const server = await setup(t)
  const cookie = await login(server.url)
  await fetch(`${server.url}/note`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: JSON.stringify({ note: 'x' }) })
  const socket = await connect(t, server.url, { cookie })
  await socket.emitWithAck('forget-note')
  const stored = await me(server.url, cookie)
  t.equal(stored.note, null)
  t.equal(stored.user?.name, 'Ada')
})

t.test('reloadOnEvent: each event sees what HTTP requests wrote', async (t) => {
  const server = await setup(t, { reloadOnEvent: true })
  const cookie = await login(server.url)
  const socket = await connect(t, server.url, { cookie, namespace: '/admin' })
  const before = server.app.io.of('/admin').sockets.values().next().value?.request.session
  await fetch(`${server.url}/note`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: JSON.stringify({ note: 'fresh' }) })
  t.same(await socket.emitWithAck('read'), { count: null, note: 'fresh' })
  const after = server.app.io.of('/admin').sockets.values().next().value?.request.session
  t.not(after, before, 'socket.request.session is a new object: captured references go stale')
})

t.test('no lost updates: 10 sockets x 100 increments of one session leave count 1000', async (t) => {
  const server = await setup(t, { reloadOnEvent: true })
  const cookie = await login(server.url)
  const sockets = await Promise.all(Array.from({ length: 10 }, async (_, i) =>
    await connect(t, server.url, { cookie, namespace: i % 2 === 0 ? '/' : '/admin' })))
  await Promise.all(sockets.map(async (socket) => {
    const acks: Array<Promise<unknown>> = []
    for (let i = 0; i < 100; i++) acks.push(socket.emitWithAck(i % 2 === 0 ? 'increment' : 'increment-async'))
    await Promise.all(acks)
  }))
  t.equal((await me(server.url, cookie)).count, 1000)
})

t.test('no resurrection: a session destroyed elsewhere is never written back by a socket', async (t) => {
  const ended: Array<[string, string]> = []
  const server = await setup(t, { onSessionEnd: (id, reason) => { ended.push([id, reason]) } })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  const socket = await connect(t, server.url, { cookie })
  const closed = once(socket, 'disconnect')
  server.store.data.delete(id) // another node, or an admin tool, destroyed it
  socket.emit('increment')
  t.equal(await closed, 'transport close', 'the socket is closed so that it handshakes again')
  t.notOk(server.store.data.has(id), 'not written back')
  t.same(ended, [[id, 'destroyed']], 'onSessionEnd, once')
})

t.test('no resurrection: an HTTP logout racing a socket that saves', async (t) => {
  const server = await setup(t)
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  const socket = await connect(t, server.url, { cookie })
  socket.emit('note-later', 'written after logout', () => {})
  await sleep(20) // the handler is waiting inside
  t.equal((await logout(server.url, cookie)).status, 204)
  await sleep(300) // the handler has completed, and tried to save
  t.notOk(server.store.data.has(id), 'the logged-out session stays destroyed')
})

t.test('a handler that throws is logged, saves nothing, and the socket keeps working', async (t) => {
  const { lines, logger } = captureLogs('error')
  const store = new TestStore()
  const server = await startServer(t, { validateInterval: 0 }, { session: { store }, fastify: { logger } })
  serve(server)
  const cookie = await login(server.url)
  const socket = await connect(t, server.url, { cookie })
  socket.emit('fail')
  t.equal(await socket.emitWithAck('increment'), 1, 'still served')
  t.ok(lines.some((line) => line.level === 50 && line.msg === 'socket.io event handler failed'))
})

t.test('a fresh session (no cookie) modified by a socket is saved as a new session', async (t) => {
  const server = await setup(t)
  const socket = await connect(t, server.url)
  t.equal(await socket.emitWithAck('increment'), 1)
  t.equal(server.store.data.size, 1, 'stored')
  t.equal(await socket.emitWithAck('increment'), 2)
  t.equal([...server.store.data.values()].map((json) => JSON.parse(json).count)[0], 2, 'then merged into')
})

t.test('sweep: a session destroyed while connected ends its sockets in every namespace', async (t) => {
  const ended: Array<[string, string]> = []
  const server = await setup(t, { validateInterval: 30, onSessionEnd: (id, reason) => { ended.push([id, reason]) } })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  const sockets = [await connect(t, server.url, { cookie }), await connect(t, server.url, { cookie, namespace: '/admin' })]
  const bystander = await connect(t, server.url, { cookie: await login(server.url, 'Bob') })
  const reasons = Promise.all(sockets.map(async (socket) => await once(socket, 'disconnect')))
  server.store.data.delete(id)
  t.same(await reasons, ['transport close', 'transport close'])
  t.same(ended, [[id, 'destroyed']], 'onSessionEnd once for the session')
  t.ok(bystander.connected)
})

for (const { name, transports } of transportModes) {
  t.test(`${name}: sweep: an expired session ends its sockets, which reconnect and are refused`, async (t) => {
    const ended: Array<[string, string]> = []
    const server = await setup(t, {
      validateInterval: 40,
      keepAlive: false,
      authorize: (session) => session.user !== undefined,
      onSessionEnd: (id, reason) => { ended.push([id, reason]) }
    }, { cookie: { secure: false, maxAge: 300 } })
    const cookie = await login(server.url)
    const id = await sessionIdOf(server.url, cookie)
    const socket = client(t, server.url, { cookie, transports, reconnection: true })
    await once(socket, 'connect')
    t.equal(await once(socket, 'disconnect', 2000), 'transport close', 'closed when the session expired')
    const err = await once<{ data?: { code?: string } }>(socket, 'connect_error', 3000)
    t.equal(err.data?.code, 'SESSION_UNAUTHORIZED', 'the reconnection is refused')
    t.same(ended, [[id, 'expired']])
    t.notOk(server.store.data.has(id), 'the expired session is gone from the store')
  })
}

t.test('keepAlive: a connected socket keeps its session alive past maxAge; a disconnected one expires', async (t) => {
  const server = await setup(t, { validateInterval: 50 }, { cookie: { secure: false, maxAge: 400 }, rolling: false })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  const socket = await connect(t, server.url, { cookie })
  await sleep(1000)
  t.ok(socket.connected, 'still connected')
  t.ok(new Date(server.store.read(id)?.cookie.expires).getTime() > Date.now(), 'the stored expiry moved')
  const sessionNow = await me(server.url, cookie)
  t.equal(sessionNow.user?.name, 'Ada', 'still logged in for HTTP, 2.5 maxAge later')
  socket.disconnect()
  await sleep(600)
  t.equal((await me(server.url, cookie)).user, null, 'expired on schedule once nobody is connected')
})

t.test('keepAlive never overwrites newer data', async (t) => {
  const server = await setup(t, { validateInterval: 30 }, { cookie: { secure: false, maxAge: 300 }, rolling: false })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  await connect(t, server.url, { cookie })
  for (let i = 0; i < 5; i++) {
    await fetch(`${server.url}/note`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: JSON.stringify({ note: `v${i}` }) })
    await sleep(40)
    t.equal(server.store.read(id)?.note, `v${i}`)
  }
})

t.test('sweep: one store read per distinct session per interval, not one per socket', async (t) => {
  const server = await setup(t, { validateInterval: 300, keepAlive: false })
  const ada = await login(server.url, 'Ada')
  const bob = await login(server.url, 'Bob')
  for (let i = 0; i < 4; i++) await connect(t, server.url, { cookie: ada, namespace: i % 2 === 0 ? '/' : '/admin' })
  for (let i = 0; i < 3; i++) await connect(t, server.url, { cookie: bob })
  await connect(t, server.url) // a fresh, unsaved session: nothing to check
  // Measure one whole interval, between two sweeps (connecting may take longer than one on a busy machine).
  const start = server.store.calls.get
  for (let i = 0; i < 100 && server.store.calls.get === start; i++) await sleep(10)
  await sleep(100)
  const reads = server.store.calls.get
  await sleep(300)
  t.equal(server.store.calls.get - reads, 2, 'two sessions, two reads')
})

t.test('sweep: an unreachable store disconnects nobody, and the next interval works again', async (t) => {
  const { lines, logger } = captureLogs('warn')
  const store = new TestStore()
  const server = await startServer(t, { validateInterval: 30 }, { session: { store }, fastify: { logger } })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  const socket = await connect(t, server.url, { cookie })
  store.failing = true
  await sleep(150)
  t.ok(socket.connected, 'nobody disconnected while the store is down')
  t.ok(lines.some((line) => line.level === 40 && line.msg.includes('the store failed')), 'logged')
  store.failing = false
  const closed = once(socket, 'disconnect')
  store.data.delete(id)
  t.equal(await closed, 'transport close', 'once back, the sweep works again')
})

t.test('keepAlive renews a session once it has used half its maxAge, not at every check', async (t) => {
  const server = await setup(t, { validateInterval: 30 }, { cookie: { secure: false, maxAge: 60_000 } })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  await connect(t, server.url, { cookie })
  const writes = server.store.calls.set
  const expires = server.store.read(id)?.cookie.expires
  await sleep(200)
  t.equal(server.store.calls.set, writes, 'a fresh session is not rewritten')
  t.equal(server.store.read(id)?.cookie.expires, expires)
})

t.test('validateInterval: 0 disables the sweep and keep-alive', async (t) => {
  const server = await setup(t, { validateInterval: 0 })
  const cookie = await login(server.url)
  const socket = await connect(t, server.url, { cookie })
  const reads = server.store.calls.get
  server.store.data.clear()
  await sleep(100)
  t.ok(socket.connected)
  t.equal(server.store.calls.get, reads)
})

t.test('reloadOnEvent: an event on a destroyed or expired session is dropped and the session\'s sockets closed', async (t) => {
  const ended: Array<[string, string]> = []
  const server = await setup(t, { reloadOnEvent: true, keepAlive: false, onSessionEnd: (id, reason) => { ended.push([id, reason]) } }, { cookie: { secure: false, maxAge: 200 }, rolling: false })

  const destroyed = await login(server.url, 'Ada')
  const destroyedId = await sessionIdOf(server.url, destroyed)
  const a = await connect(t, server.url, { cookie: destroyed })
  const closedA = once(a, 'disconnect')
  server.store.data.delete(destroyedId)
  a.emit('increment')
  t.equal(await closedA, 'transport close')
  t.notOk(server.store.data.has(destroyedId), 'nothing written')

  const expiring = await login(server.url, 'Bob')
  const expiringId = await sessionIdOf(server.url, expiring)
  const b = await connect(t, server.url, { cookie: expiring })
  await sleep(250)
  const closedB = once(b, 'disconnect')
  b.emit('increment')
  t.equal(await closedB, 'transport close')
  t.same(ended, [[destroyedId, 'destroyed'], [expiringId, 'expired']])
})

t.test('an onSessionEnd that throws is logged; the sockets are closed all the same', async (t) => {
  const { lines, logger } = captureLogs('error')
  const store = new TestStore()
  const server = await startServer(t, { validateInterval: 30, onSessionEnd: () => { throw new Error('app bug') } }, {
    session: { store }, fastify: { logger }
  })
  const cookie = await login(server.url)
  const socket = await connect(t, server.url, { cookie })
  const closed = once(socket, 'disconnect')
  store.data.delete(await sessionIdOf(server.url, cookie))
  t.equal(await closed, 'transport close')
  t.ok(lines.some((line) => line.level === 50 && line.msg === 'onSessionEnd threw'))
})
