import t, { type Test } from 'tap'
import { createServer, connect as tcpConnect, type Socket as TcpSocket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { RedisStore } from 'connect-redis'
import { createAdapter } from '@socket.io/redis-streams-adapter'
import { io as ioClient, type Socket as ClientSocket } from 'socket.io-client'
import type { FastifySessionObject } from '@fastify/session'
import type { SessionSocket } from '../types/index'
import { connect, once, refused, sleep } from './helpers/client'
import { captureLogs, login, logout, me, startServer, type TestServer } from './helpers/server'
import { adapterClientOptions, closeClient, redisClient, skipWithoutRedis, startRedis, storeClientOptions, type RedisServer } from './helpers/redis'

// Connection state recovery on two nodes with @socket.io/redis-streams-adapter, the adapter that
// implements recovery across nodes: a socket whose transport drops is restored on the other node with
// its id, rooms and missed messages, from the session (pid, rooms, data) that the first node saved in
// Redis and the messages of the Redis stream. The plugin makes Socket.IO run the namespace middlewares
// for restored sockets (skipMiddlewares: false), so the session is loaded and authorized again: while it
// is valid the socket keeps its session and rooms; once it was logged out, or its authority removed,
// during the gap, the socket is refused and nothing of its old state reaches it.

const userRoom = (session: FastifySessionObject): string | undefined => session.user && 'user:' + session.user.id
const authorize = (session: FastifySessionObject): boolean => session.user !== undefined

interface StreamsNode extends TestServer { name: string }

/**
 * A node with sessions in Redis (connect-redis) and the Redis streams adapter with connection state
 * recovery. Every socket joins the application's room `lobby`.
 */
async function startStreamsNode (t: Test, redis: RedisServer, name: string): Promise<StreamsNode> {
  const errors: Error[] = []
  const storeClient = await redisClient(redis.url, storeClientOptions, errors)
  const adapterClient = await redisClient(redis.url, adapterClientOptions, errors)
  const server = await startServer(t, {
    authorize,
    userRoom,
    validateInterval: 0,
    serverOptions: {
      adapter: createAdapter(adapterClient),
      connectionStateRecovery: { maxDisconnectionDuration: 30_000 }
    }
  }, {
    session: { store: new RedisStore({ client: storeClient }) },
    before: (app) => {
      app.addHook('onClose', async () => { await Promise.all([storeClient, adapterClient].map(closeClient)) })
    },
    after: (app) => {
      // Authority removed without a logout: the session stays, its user goes.
      app.post('/demote', async (request) => {
        request.session.user = undefined
        return { ok: true }
      })
    }
  })
  server.app.io.on('connection', (socket: SessionSocket) => {
    socket.join('lobby')
    socket.on('whoami', (ack: (seen: unknown) => void) => {
      ack({ node: name, user: socket.request.session.user ?? null })
    })
  })
  return { ...server, name }
}

/**
 * A TCP load balancer stand-in on 127.0.0.1: it forwards every connection to the current target
 * node, refuses connections while there is none, and can drop every open connection (the client's
 * transport then closes, as when a node or a network path fails).
 */
async function startBalancer (t: Test): Promise<{ url: string, target: (node: TestServer | undefined) => void, dropAll: () => void }> {
  let target: number | undefined
  const open = new Set<TcpSocket>()
  const server = createServer((incoming) => {
    if (target === undefined) { incoming.destroy(); return }
    const outgoing = tcpConnect(target, '127.0.0.1')
    for (const [from, to] of [[incoming, outgoing], [outgoing, incoming]]) {
      open.add(from)
      from.on('error', () => {})
      from.on('close', () => { open.delete(from); to.destroy() })
      from.pipe(to)
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const dropAll = (): void => { for (const socket of open) socket.destroy() }
  t.teardown(async () => {
    dropAll()
    await new Promise((resolve) => server.close(resolve))
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    target: (node) => { target = node === undefined ? undefined : Number(new URL(node.url).port) },
    dropAll
  }
}

interface Seen { events: Array<[string, ...unknown[]]>, refusals: Array<{ code?: string }>, connects: number }

/** A browser-like client through the balancer: reconnects on its own, retries every 100 ms. */
function recoveringClient (t: Test, url: string, cookie: string): { socket: ClientSocket, seen: Seen, setCookie: (cookie: string) => void } {
  const headers = { cookie }
  const socket = ioClient(url, {
    forceNew: true,
    transports: ['websocket'],
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 100,
    extraHeaders: headers
  })
  t.teardown(() => { socket.disconnect() })
  const seen: Seen = { events: [], refusals: [], connects: 0 }
  // Every packet the client receives, whatever its socket's state: what reached the client at all.
  socket.io.on('packet', (packet: { type: number, data?: unknown }) => {
    if (packet.type === 2 && Array.isArray(packet.data)) seen.events.push(packet.data as [string, ...unknown[]])
  })
  socket.on('connect', () => { seen.connects++ })
  socket.on('connect_error', (err: Error & { data?: { code?: string } }) => { seen.refusals.push({ code: err.data?.code }) })
  return { socket, seen, setCookie: (value) => { headers.cookie = value } }
}

/** Waits until `check()` holds, every 20 ms, at most `ms`. */
async function until (check: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`)
    await sleep(20)
  }
}

const texts = (seen: Seen): unknown[] => seen.events.filter(([event]) => event === 'news').map(([, text]) => text)

t.test('connection state recovery on two nodes (Redis streams adapter)', { skip: skipWithoutRedis }, async (t) => {
  const redis = await startRedis(t)

  /**
   * Two nodes and a balancer on A; Ada's socket connected through it, with a recovery offset (a
   * broadcast received); then the transport drops and the balancer refuses connections: the gap.
   */
  async function dropped (t: Test): Promise<{ a: StreamsNode, b: StreamsNode, balancer: Awaited<ReturnType<typeof startBalancer>>, cookie: string, sessionId: string, id: string } & ReturnType<typeof recoveringClient>> {
    const a = await startStreamsNode(t, redis, 'A')
    const b = await startStreamsNode(t, redis, 'B')
    const balancer = await startBalancer(t)
    balancer.target(a)
    const cookie = await login(a.url, 'Ada')
    const { sessionId } = await me(a.url, cookie)
    const client = recoveringClient(t, balancer.url, cookie)
    await once(client.socket, 'connect')
    const id = client.socket.id as string
    // B reads the stream: a broadcast from B reaches the socket on A (and gives the client its offset).
    const deadline = Date.now() + 3000
    while (!texts(client.seen).includes('ready')) {
      if (Date.now() > deadline) throw new Error('the adapters did not reach each other within 3 s')
      b.app.io.to('lobby').emit('news', 'ready')
      await sleep(50)
    }
    t.equal(client.socket.recovered, false, 'a first connection is not a recovery')

    const [onA] = await a.app.io.fetchSockets()
    t.same([...onA.rooms].sort(), [id, 'lobby', `session:${sessionId}`, 'user:id-Ada'].sort(), 'on A: its own, the application\'s, the session\'s and the user\'s rooms')
    const closedOnA = new Promise<string>((resolve) => {
      a.app.io.sockets.sockets.get(id)?.once('disconnect', resolve)
    })
    balancer.target(undefined)
    balancer.dropAll()
    t.equal(await closedOnA, 'transport close', 'A saw the transport close (a recoverable disconnection)')
    t.equal(await once(client.socket, 'disconnect'), 'transport close', 'the client too')
    return { a, b, balancer, cookie, sessionId, id, ...client }
  }

  t.test('a valid session: restored on the other node with its id, session, rooms and missed messages', async (t) => {
    const { a, b, balancer, sessionId, id, socket, seen } = await dropped(t)
    a.app.io.to('user:id-Ada').emit('news', 'missed, to the user')
    a.app.io.to('lobby').emit('news', 'missed, to the lobby')
    await sleep(100)
    balancer.target(b)
    await until(() => seen.connects === 2)
    t.equal(socket.recovered, true, 'recovered')
    t.equal(socket.id, id, 'same socket id')
    await until(() => texts(seen).length >= 3)
    t.same(texts(seen), ['ready', 'missed, to the user', 'missed, to the lobby'], 'the messages missed during the gap, in order')
    t.same(await socket.emitWithAck('whoami'), { node: 'B', user: { id: 'id-Ada', name: 'Ada' } }, 'B answers, with the session')
    const onB = b.app.io.sockets.sockets.get(id)
    t.same([...(onB?.rooms ?? [])].sort(), [id, 'lobby', `session:${sessionId}`, 'user:id-Ada'].sort(), 'on B: the same rooms')
    a.app.io.to('user:id-Ada').emit('news', 'after, from A')
    await until(() => texts(seen).includes('after, from A'))
    t.pass('a user-room emit from A reaches it on B')
  })

  for (const { label, gap } of [
    { label: 'logged out', gap: async (url: string, cookie: string) => await logout(url, cookie) },
    { label: 'its user removed (session.user = undefined)', gap: async (url: string, cookie: string) => await fetch(`${url}/demote`, { method: 'POST', headers: { cookie } }) }
  ]) {
    t.test(`a session ${label} during the gap: refused on the other node, nothing of its old state restored`, async (t) => {
      const { a, b, balancer, cookie, sessionId, id, socket, seen } = await dropped(t)
      t.equal((await gap(a.url, cookie)).status < 300, true, `${label} over HTTP on A`)
      a.app.io.to('user:id-Ada').emit('news', 'missed, to the user')
      a.app.io.to('lobby').emit('news', 'missed, to the lobby')
      await sleep(100)
      balancer.target(b)
      await until(() => seen.refusals.some(({ code }) => code !== undefined)) // before: the balancer's refusals
      t.same(seen.refusals.filter(({ code }) => code !== undefined), [{ code: 'SESSION_UNAUTHORIZED' }], 'connect_error SESSION_UNAUTHORIZED, once')
      await sleep(200)
      t.equal(seen.connects, 1, 'never connected again')
      t.equal(socket.connected, false)
      t.same(texts(seen), ['ready'], 'no message of the gap reached the client, not even as a packet before the refusal')
      t.notOk(b.app.io.sockets.sockets.has(id), 'B has no socket with the old id')
      t.same(await b.app.io.in('user:id-Ada').fetchSockets(), [], 'nobody in the user room')
      t.same(await b.app.io.in(`session:${sessionId}`).fetchSockets(), [], 'nobody in the session room')
      t.notOk(b.app.io.of('/').adapter.rooms.has('user:id-Ada'), 'the old rooms are not held on B')
    })
  }

  t.test('another user logged in in the same browser during the gap: the socket gets none of the previous user\'s rooms or messages', async (t) => {
    const { a, b, balancer, cookie, sessionId, id, socket, seen, setCookie } = await dropped(t)
    await logout(a.url, cookie)
    const grace = await login(a.url, 'Grace')
    setCookie(grace) // the browser's cookie jar now holds Grace's session
    a.app.io.to('user:id-Ada').emit('news', 'missed, to Ada')
    await sleep(100)
    balancer.target(b)
    await until(() => seen.connects === 2)
    t.same(await socket.emitWithAck('whoami'), { node: 'B', user: { id: 'id-Grace', name: 'Grace' } }, 'connected on B as Grace')
    const onB = b.app.io.sockets.sockets.get(socket.id as string)
    t.notOk(onB?.rooms.has('user:id-Ada'), 'not in Ada\'s user room')
    t.notOk(onB?.rooms.has(`session:${sessionId}`), 'not in Ada\'s session room')
    t.ok(onB?.rooms.has('user:id-Grace'), 'in Grace\'s user room')
    await sleep(100)
    t.notOk(texts(seen).includes('missed, to Ada'), 'Ada\'s missed message did not reach Grace')
    a.app.io.to('user:id-Ada').emit('news', 'later, to Ada')
    await sleep(200)
    t.notOk(texts(seen).includes('later, to Ada'), 'nor does a later one')
    t.comment(`socket id ${socket.id === id ? 'kept' : 'changed'}, recovered: ${String(socket.recovered)}`)
  })
})

t.test('one node, Socket.IO\'s in-memory adapter: a socket whose session lost its user during the gap gets none of the messages it missed', async (t) => {
  const server = await startServer(t, { authorize, userRoom, validateInterval: 0, serverOptions: { connectionStateRecovery: {} } }, {
    after: (app) => {
      app.post('/demote', async (request) => {
        request.session.user = undefined
        return { ok: true }
      })
    }
  })
  const balancer = await startBalancer(t)
  balancer.target(server)
  const cookie = await login(server.url, 'Ada')
  const { socket, seen } = recoveringClient(t, balancer.url, cookie)
  await once(socket, 'connect')
  server.app.io.to('user:id-Ada').emit('news', 'ready') // the client's recovery offset
  await until(() => texts(seen).includes('ready'))
  balancer.target(undefined)
  balancer.dropAll()
  await once(socket, 'disconnect')
  await fetch(`${server.url}/demote`, { method: 'POST', headers: { cookie } })
  server.app.io.to('user:id-Ada').emit('news', 'missed, to the user')
  balancer.target(server)
  await until(() => seen.refusals.some(({ code }) => code !== undefined))
  t.same(seen.refusals.filter(({ code }) => code !== undefined), [{ code: 'SESSION_UNAUTHORIZED' }], 'refused')
  await sleep(100)
  t.same(texts(seen), ['ready'], 'the missed message never reached the client')
  t.equal(seen.connects, 1)
})

t.test('one node: a socket back after its recovery state expired is a fresh socket, admitted by its session, in its rooms, with none of the missed messages', async (t) => {
  const { lines, logger } = captureLogs('info')
  const server = await startServer(t, { authorize, userRoom, validateInterval: 0, serverOptions: { connectionStateRecovery: { maxDisconnectionDuration: 100 } } }, { fastify: { logger } })
  const balancer = await startBalancer(t)
  balancer.target(server)
  const cookie = await login(server.url, 'Ada')
  const { sessionId } = await me(server.url, cookie)
  const { socket, seen } = recoveringClient(t, balancer.url, cookie)
  await once(socket, 'connect')
  const id = socket.id as string
  server.app.io.to('user:id-Ada').emit('news', 'ready') // the client's recovery offset
  await until(() => texts(seen).includes('ready'))
  balancer.target(undefined)
  balancer.dropAll()
  await once(socket, 'disconnect')
  server.app.io.to('user:id-Ada').emit('news', 'missed, to the user')
  await sleep(300) // longer than maxDisconnectionDuration: the state is gone
  balancer.target(server)
  await until(() => seen.connects === 2)
  t.equal(socket.recovered, false, 'not recovered')
  t.not(socket.id, id, 'a new socket id')
  const onServer = server.app.io.sockets.sockets.get(socket.id as string)
  t.same([...(onServer?.rooms ?? [])].sort(), [socket.id, `session:${sessionId}`, 'user:id-Ada'].sort(), 'in its own, its session\'s and its user\'s rooms')
  t.same(seen.refusals.filter(({ code }) => code !== undefined), [], 'never refused by the server (the balancer\'s refusals during the gap aside)')
  await sleep(100)
  t.same(texts(seen), ['ready'], 'the missed message is not delivered')
  t.notOk(lines.some((line) => /connection state not restored/.test(line.msg)), 'nothing restored, nothing to refuse')
})

t.test('a namespace without Namespace#_createSocket (another Socket.IO version): a warning naming it; its sockets are still authorized', async (t) => {
  const { lines, logger } = captureLogs('info')
  const server = await startServer(t, { authorize, validateInterval: 0, serverOptions: { connectionStateRecovery: {} } }, { fastify: { logger } })
  type Shadowed = { _createSocket?: unknown }
  let legacy: Shadowed | undefined
  const restore = (): void => { if (legacy !== undefined) delete legacy._createSocket }
  t.teardown(restore)
  // Before the plugin's own listener: the namespace has no _createSocket when the plugin guards it.
  server.app.io.prependListener('new_namespace', (nsp) => {
    if (nsp.name !== '/legacy') return
    legacy = nsp as unknown as Shadowed
    legacy._createSocket = undefined
  })
  server.app.io.of('/legacy')
  server.app.io.of('/current')
  const warnings = lines.filter((line) => line.level === 40)
  t.same(warnings.map(({ msg, namespace }) => ({ msg, namespace })), [
    { msg: 'socket.io session: this Socket.IO version cannot be guarded, connection state recovery restores state before authorization', namespace: '/legacy' }
  ], 'one warning, for that namespace only')

  restore() // Socket.IO's own method again, unwrapped: the namespace can create sockets
  const cookie = await login(server.url, 'Ada')
  t.ok((await connect(t, server.url, { cookie, namespace: '/legacy' })).connected, 'a logged-in socket connects')
  t.equal((await refused(t, server.url, { namespace: '/legacy' })).data?.code, 'SESSION_UNAUTHORIZED', 'an anonymous one is still refused')
})
