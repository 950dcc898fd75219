import t from 'tap'
import { connect, once, sleep, transportModes } from './helpers/client'
import { serve, sessionIdOf, setup } from './helpers/lifecycle'
import { captureLogs, login, logout, me, post, startServer } from './helpers/server'
import { TestStore } from './helpers/store'

// lib/session-events.ts: each incoming event is wrapped with reload (reloadOnEvent) and save (autoSave).

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
  t.ok(lines.some((line) => line.level === 50 && line.msg === 'socket.io session: event handler failed'))
})

t.test('a fresh session (no cookie) modified by a socket is saved as a new session', async (t) => {
  const server = await setup(t)
  const socket = await connect(t, server.url)
  t.equal(await socket.emitWithAck('increment'), 1)
  t.equal(server.store.data.size, 1, 'stored')
  t.equal(await socket.emitWithAck('increment'), 2)
  t.equal([...server.store.data.values()].map((json) => JSON.parse(json).count)[0], 2, 'then merged into')
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

t.test('reloadOnEvent without autoSave: each event sees what HTTP wrote, and a handler\'s change is not saved', async (t) => {
  const server = await setup(t, { reloadOnEvent: true, autoSave: false })
  const cookie = await login(server.url)
  const socket = await connect(t, server.url, { cookie })
  await post(`${server.url}/note`, cookie, { note: 'fresh' })
  t.same(await socket.emitWithAck('read'), { count: null, note: 'fresh' }, 'reloaded')
  t.equal(await socket.emitWithAck('increment'), 1, 'the handler ran')
  t.equal((await me(server.url, cookie)).count, null, 'nothing saved')
  t.same(await socket.emitWithAck('read'), { count: null, note: 'fresh' }, 'the next event reloads what the store holds')
})

t.test('a handler that destroys the session: nothing is written back, its ack arrives, and later events still run', async (t) => {
  const { lines, logger } = captureLogs('warn')
  const store = new TestStore()
  const server = await startServer(t, { validateInterval: 0 }, { session: { store }, fastify: { logger } })
  server.app.io.on('connection', (socket) => {
    socket.on('leave', async (ack: (done: string) => void) => {
      socket.request.session.count = 1 // a change, then the session is gone: nothing to save
      await socket.request.session.destroy()
      ack('destroyed')
    })
    socket.on('ping', (ack: (answer: unknown) => void) => { ack({ session: socket.request.session ?? null }) })
  })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  const socket = await connect(t, server.url, { cookie })
  t.equal(await socket.timeout(2000).emitWithAck('leave'), 'destroyed', 'acknowledged')
  t.notOk(store.data.has(id), 'destroyed in the store, not written back')
  t.same(await socket.timeout(2000).emitWithAck('ping'), { session: null }, 'a later event runs, without a session to manage')
  t.same(lines, [], 'nothing logged')
})

t.test('an ack the handler sends after it returned reaches the client', async (t) => {
  const server = await setup(t)
  server.app.io.on('connection', (socket) => {
    socket.on('later', (ack: (answer: number) => void) => {
      socket.request.session.count = 7
      setTimeout(() => { ack(socket.request.session.count ?? 0) }, 50)
    })
  })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  const socket = await connect(t, server.url, { cookie })
  t.equal(await socket.timeout(2000).emitWithAck('later'), 7)
  t.equal(server.store.read(id)?.count, 7, 'saved when the handler returned')
})

t.test('an overloaded socket with two listeners of the event is ended once, with one warning', async (t) => {
  const { lines, logger } = captureLogs('warn')
  // One may wait: the first event's first listener runs, its second waits; the second event overloads
  // the socket at its first listener, and finds it ended at its second.
  const server = await startServer(t, { validateInterval: 0, maxPendingEvents: 1 }, { fastify: { logger } })
  server.app.io.on('connection', (socket) => {
    socket.on('slow', async () => { await sleep(100) })
    socket.on('slow', async () => { await sleep(100) })
  })
  const socket = await connect(t, server.url, { cookie: await login(server.url) })
  const end = once<{ reason: string }>(socket, 'session:end')
  const closed = once(socket, 'disconnect')
  for (let i = 0; i < 3; i++) socket.emit('slow')
  t.same(await end, { reason: 'overloaded' })
  t.equal(await closed, 'io server disconnect')
  await sleep(50)
  t.same(lines.filter((line) => line.msg === 'socket.io session: too many events waiting, socket disconnected').length, 1, 'one warning')
})

t.test('the socket\'s own life events are not queued: disconnect and disconnecting listeners (on and once) run', async (t) => {
  // Queued like a message, a 'disconnect' listener would find its socket disconnected and be dropped.
  const server = await setup(t)
  const heard: string[] = []
  server.app.io.on('connection', (socket) => {
    socket.once('disconnecting', (reason: string) => { heard.push(`disconnecting: ${reason}`) })
    socket.on('disconnect', (reason: string) => { heard.push(`disconnect: ${reason}`) })
  })
  const socket = await connect(t, server.url, { cookie: await login(server.url) })
  await socket.emitWithAck('increment') // the session is busy with events as usual
  socket.disconnect()
  for (let i = 0; i < 100 && heard.length < 2; i++) await sleep(20)
  t.same(heard, ['disconnecting: client namespace disconnect', 'disconnect: client namespace disconnect'])
})
