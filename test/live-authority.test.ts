import t from 'tap'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { Test } from 'tap'
import type { Socket as ClientSocket } from 'socket.io-client'
import type { FastifySessionObject } from '@fastify/session'
import type { FastifySocketIoSessionOptions, SessionSocket } from '../types/index'
import { askUntil, connect, once, sleep, transportModes, type Transports } from './helpers/client'
import { captureLogs, login, logout, me, post, startServer, type TestServer } from './helpers/server'
import { TestStore } from './helpers/store'

const authorize = (session: FastifySessionObject): boolean => session.user !== undefined
const userRoom = (session: FastifySessionObject): string | undefined => session.user && `user:${session.user.id}`

interface Seen { user: string | null, note: string | null, rooms: string[] }

/** The application: a `whoami` event on `/` and `/admin`, and routes that change the session without the plugin's helpers. */
async function setup (t: Test, options: FastifySocketIoSessionOptions = {}, session: Record<string, unknown> = {}): Promise<TestServer & { store: TestStore }> {
  const store = new TestStore()
  const server = await startServer(t, { authorize, userRoom, validateInterval: 0, ...options }, {
    session: { store, ...session },
    after (app) {
      app.post('/demote', async (request) => { request.session.user = undefined; return { ok: true } })
      app.post<{ Body: { name: string } }>('/switch', async (request) => {
        request.session.user = { id: `id-${request.body.name}`, name: request.body.name }
        return { ok: true }
      })
      app.post('/destroy', async (request) => { await request.session.destroy(); return { ok: true } })
      app.post('/touch', async () => ({ ok: true })) // saves (rolling) without changing a field
    }
  })
  const handle = (socket: SessionSocket): void => {
    socket.on('whoami', (ack: (seen: Seen) => void) => {
      const session = socket.request.session
      ack({ user: session.user?.name ?? null, note: session.note ?? null, rooms: [...socket.rooms].filter((room) => room.startsWith('user:')) })
    })
    socket.on('note', (note: string, ack: () => void) => {
      socket.request.session.note = note
      ack()
    })
    socket.on('slow', async (ack: () => void) => {
      await sleep(50)
      ack()
    })
  }
  server.app.io.on('connection', handle)
  server.app.io.of('/admin').on('connection', handle)
  return { ...server, store }
}

/** The end event and the disconnect reason, in the order the client got them. */
function ending (socket: ClientSocket, event = 'session:end'): Promise<{ order: string[], payload: unknown, reason: string }> {
  const order: string[] = []
  let payload: unknown
  socket.on(event, (value: unknown) => { order.push('end'); payload = value })
  return once<string>(socket, 'disconnect', 3000).then((reason) => {
    order.push('disconnect')
    return { order, payload, reason }
  })
}

const sockets = async (t: Test, url: string, cookie: string, transports: Transports): Promise<ClientSocket[]> =>
  await Promise.all(['/', '/admin'].map(async (namespace) => await connect(t, url, { cookie, transports, namespace })))

for (const { name, transports } of transportModes) {
  t.test(`${name}: an HTTP change that keeps authority reaches socket.request.session at once, in every namespace`, async (t) => {
    const server = await setup(t)
    const cookie = await login(server.url, 'Ada')
    const open = await sockets(t, server.url, cookie, transports)
    await post(`${server.url}/note`, cookie, { note: 'from HTTP' })
    for (const socket of open) {
      t.same(await askUntil<Seen>(socket, 'whoami', (seen) => seen.note === 'from HTTP'), { user: 'Ada', note: 'from HTTP', rooms: ['user:id-Ada'] })
    }
  })

  t.test(`${name}: an HTTP change that removes authority ends the session's sockets with 'unauthorized'`, async (t) => {
    const server = await setup(t)
    const cookie = await login(server.url, 'Ada')
    const other = await connect(t, server.url, { cookie: await login(server.url, 'Bob'), transports })
    const open = await sockets(t, server.url, cookie, transports)
    const ends = open.map((socket) => ending(socket))
    await post(`${server.url}/demote`, cookie)
    for (const end of await Promise.all(ends)) {
      t.same(end, { order: ['end', 'disconnect'], payload: { reason: 'unauthorized' }, reason: 'io server disconnect' }, 'told why, then disconnected')
    }
    t.ok(other.connected, 'another session\'s socket stays')
  })

  t.test(`${name}: a user switch moves the socket to the new user room`, async (t) => {
    const server = await setup(t)
    const cookie = await login(server.url, 'Ada')
    const [socket] = await sockets(t, server.url, cookie, transports)
    await post(`${server.url}/switch`, cookie, { name: 'Bob' })
    t.same(await askUntil<Seen>(socket, 'whoami', (seen) => seen.user === 'Bob'), { user: 'Bob', note: null, rooms: ['user:id-Bob'] })
    const received = once(socket, 'hello', 1000)
    server.app.io.to('user:id-Ada').emit('hello', 'to Ada')
    server.app.io.to('user:id-Bob').emit('hello', 'to Bob')
    t.equal(await received, 'to Bob', 'the new user room reaches it, the old one no longer does')
  })
}

t.test('sync reads nothing on the node that saved, and skips saves that only move the expiry', async (t) => {
  const server = await setup(t)
  const cookie = await login(server.url, 'Ada')
  const open = [...await sockets(t, server.url, cookie, ['websocket']), ...await sockets(t, server.url, cookie, ['websocket'])]
  const reads = server.store.calls.get
  await post(`${server.url}/note`, cookie, { note: 'n1' })
  for (const socket of open) t.equal((await askUntil<Seen>(socket, 'whoami', (seen) => seen.note === 'n1')).note, 'n1')
  t.equal(server.store.calls.get - reads, 1, 'one read: the HTTP request\'s own load; the four sockets got what it saved')
  const sets = server.store.calls.set
  await post(`${server.url}/touch`, cookie)
  t.equal(server.store.calls.set - sets, 1, 'the rolling save happened')
  t.same(await open[0].emitWithAck('whoami'), { user: 'Ada', note: 'n1', rooms: ['user:id-Ada'] }, 'and changed nothing on the sockets')
})

t.test('a socket\'s autoSave reaches the session\'s other sockets', async (t) => {
  const server = await setup(t)
  const cookie = await login(server.url, 'Ada')
  const [first, second] = await sockets(t, server.url, cookie, ['websocket'])
  await first.emitWithAck('note', 'from a socket')
  t.equal((await askUntil<Seen>(second, 'whoami', (seen) => seen.note === 'from a socket')).note, 'from a socket')
  t.equal((await me(server.url, cookie)).note, 'from a socket', 'and the store')
})

t.test('syncSessions: false keeps 0.1\'s behaviour: sockets keep their copy until they reload', async (t) => {
  const server = await setup(t, { syncSessions: false })
  const cookie = await login(server.url, 'Ada')
  const [socket] = await sockets(t, server.url, cookie, ['websocket'])
  await post(`${server.url}/demote`, cookie)
  await sleep(100)
  t.same(await socket.emitWithAck('whoami'), { user: 'Ada', note: null, rooms: ['user:id-Ada'] }, 'still connected, still Ada')
})

t.test('an authorize that throws during re-authorization is logged and leaves the socket as it is', async (t) => {
  const { lines, logger } = captureLogs('info')
  let fail = false
  const server = await startServer(t, {
    validateInterval: 0,
    authorize: (session) => {
      if (fail) throw new Error('database blip')
      return session.user !== undefined
    }
  }, { fastify: { logger } })
  server.app.io.on('connection', (socket) => {
    socket.on('whoami', (ack: (name: string | null) => void) => ack(socket.request.session.note ?? null))
  })
  const cookie = await login(server.url, 'Ada')
  const socket = await connect(t, server.url, { cookie })
  fail = true
  await post(`${server.url}/note`, cookie, { note: 'changed' })
  t.equal(await askUntil(socket, 'whoami', (note) => note === 'changed'), 'changed', 'the change reached the socket')
  t.ok(socket.connected, 'still connected')
  const failure = lines.find((line) => line.msg === 'socket.io session: re-authorization failed')
  t.ok(failure !== undefined && failure.level === 50, 'logged at error level')
  t.notMatch(JSON.stringify(lines), cookie.split('=')[1].split('.')[0], 'no session id in the logs')
})

t.test('the end event comes before the disconnect, for each reason', async (t) => {
  const server = await setup(t, { validateInterval: 50 }, { cookie: { secure: false, maxAge: 400 }, rolling: false })
  const ids = new Map<string, string>()
  const cases: Array<[string, (cookie: string) => Promise<unknown>]> = [
    ['logout', async (cookie) => await logout(server.url, cookie)],
    ['regenerated', async (cookie) => await login(server.url, 'Bob', cookie)],
    ['destroyed', async (cookie) => await post(`${server.url}/destroy`, cookie)],
    ['disconnected', async (cookie) => await post(`${server.url}/kick`, cookie)],
    ['banned', async (cookie) => await server.app.disconnectSession(ids.get(cookie) ?? '', 'banned')],
    ['unauthorized', async (cookie) => await post(`${server.url}/demote`, cookie)],
    ['expired', async () => {}] // the sweep finds it expired: nobody keeps it alive (keepAlive: false below)
  ]
  for (const [reason, act] of cases) {
    const cookie = await login(server.url, 'Ada')
    ids.set(cookie, (await me(server.url, cookie)).sessionId)
    const socket = await connect(t, server.url, { cookie })
    const end = ending(socket)
    if (reason === 'expired') server.store.data.set(ids.get(cookie) ?? '', JSON.stringify({ ...server.store.read(ids.get(cookie) ?? ''), cookie: { expires: new Date(Date.now() - 1000).toISOString(), originalMaxAge: 400 } }))
    await act(cookie)
    const { order, payload, reason: disconnect } = await end
    t.same(order, ['end', 'disconnect'], `${reason}: the end event first`)
    t.same(payload, { reason }, `${reason}: with its reason`)
    t.equal(disconnect, reason === 'expired' ? 'transport close' : 'io server disconnect', `${reason}: ${disconnect}`)
  }
})

t.test('endEvent: a custom name, or false for none', async (t) => {
  for (const endEvent of ['bye', false] as const) {
    const server = await setup(t, { endEvent })
    const cookie = await login(server.url, 'Ada')
    const socket = await connect(t, server.url, { cookie })
    const events: string[] = []
    socket.onAny((event: string) => events.push(event))
    const reason = once(socket, 'disconnect', 2000)
    await logout(server.url, cookie)
    t.equal(await reason, 'io server disconnect')
    t.same(events, endEvent === false ? [] : ['bye'], `endEvent ${String(endEvent)}`)
  }
})

t.test('fastify.logoutSession() ends a session destroyed in the store by other means, and what the helpers resolve to', async (t) => {
  const server = await setup(t)
  const cookie = await login(server.url, 'Ada')
  const sessionId = (await me(server.url, cookie)).sessionId
  const open = [...await sockets(t, server.url, cookie, ['websocket']), ...await sockets(t, server.url, cookie, ['polling', 'websocket'])]
  const ends = open.map((socket) => ending(socket))
  server.store.data.delete(sessionId) // an admin tool removed it
  t.same(await server.app.logoutSession(sessionId), { sockets: 4, nodes: 1, unacknowledged: 0 }, 'four sockets, one node')
  for (const end of await Promise.all(ends)) t.same(end.payload, { reason: 'logout' })
  t.same(await server.app.logoutSession(sessionId), { sockets: 0, nodes: 1, unacknowledged: 0 }, 'nothing left to end')

  const other = await login(server.url, 'Bob')
  const otherId = (await me(server.url, other)).sessionId
  await sockets(t, server.url, other, ['websocket'])
  t.same(await server.app.disconnectSession(otherId), { sockets: 2, nodes: 1, unacknowledged: 0 }, 'disconnectSession')
  t.ok(server.store.data.has(otherId), 'which leaves the session as it is')
  await t.rejects(server.app.disconnectSession(42 as unknown as string), { code: 'FST_SIO_SESSION_INVALID_ARGUMENT' })
  await t.rejects(server.app.disconnectSession(otherId, ''), { code: 'FST_SIO_SESSION_INVALID_ARGUMENT' })
  await t.rejects(server.app.logoutSession(''), { code: 'FST_SIO_SESSION_INVALID_ARGUMENT' })
})

t.test('a socket with too many events waiting is ended as overloaded; others are served', async (t) => {
  const { lines, logger } = captureLogs('warn')
  const server = await startServer(t, { validateInterval: 0, maxPendingEvents: 4 }, { fastify: { logger } })
  server.app.io.on('connection', (socket) => {
    socket.on('slow', async (ack: () => void) => { await sleep(100); ack() })
    socket.on('ping', (ack: () => void) => ack())
  })
  const cookie = await login(server.url, 'Ada')
  const flooder = await connect(t, server.url, { cookie })
  const bystander = await connect(t, server.url, { cookie: await login(server.url, 'Bob') })
  const end = ending(flooder)
  for (let i = 0; i < 20; i++) flooder.emit('slow', () => {})
  await bystander.timeout(1000).emitWithAck('ping')
  t.pass('another session is served meanwhile')
  const { payload, reason } = await end
  t.same(payload, { reason: 'overloaded' })
  t.equal(reason, 'io server disconnect')
  const warning = lines.find((line) => line.msg === 'socket.io session: too many events waiting, socket disconnected')
  t.ok(warning !== undefined && warning.namespace === '/' && typeof warning.socketId === 'string', 'a warning with namespace and socket id')
  t.notMatch(JSON.stringify(lines), cookie.split('=')[1].split('.')[0], 'never the session id')
})

t.test('without sync, the sweep and reloadOnEvent read fresh data, and authorize runs again on it', async (t) => {
  for (const [label, options, trigger] of [
    ['the sweep', { syncSessions: false, validateInterval: 50 }, async () => {}],
    ['reloadOnEvent', { syncSessions: false, reloadOnEvent: true }, async (socket: ClientSocket) => { socket.emit('whoami', () => t.fail('the event of an unauthorized socket is dropped')) }]
  ] as const) {
    const server = await setup(t, options)
    const cookie = await login(server.url, 'Ada')
    const socket = await connect(t, server.url, { cookie })
    const end = ending(socket)
    await post(`${server.url}/demote`, cookie)
    await trigger(socket)
    t.same(await end, { order: ['end', 'disconnect'], payload: { reason: 'unauthorized' }, reason: 'io server disconnect' }, label)
  }
})

t.test('10,000 events sent at once by one client: at most maxPendingEvents wait, and memory stays bounded', async (t) => {
  const server = await startServer(t, { validateInterval: 0 })
  let ran = 0
  server.app.io.on('connection', (socket) => {
    socket.on('slow', async () => { ran++; await sleep(20) })
  })
  const flooder = await connect(t, server.url, { cookie: await login(server.url, 'Ada') })
  const before = heapAfterGc()
  const end = once<{ reason: string }>(flooder, 'session:end', 5000)
  for (let i = 0; i < 10_000; i++) flooder.emit('slow')
  t.same(await end, { reason: 'overloaded' })
  await sleep(200)
  t.ok(ran <= 129, `${ran} handlers ran: the one running and at most 128 waiting`)
  const grown = heapAfterGc() - before
  t.comment(`server heap after GC grew by ${(grown / 1024).toFixed(0)} KB`)
  t.ok(grown < 8 * 1024 * 1024, 'the heap did not grow with the events sent')
})

/** The heap in use after a full garbage collection (gc made available for this test process). */
function heapAfterGc (): number {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  gc()
  return process.memoryUsage().heapUsed
}
