import t from 'tap'
import { performance } from 'node:perf_hooks'
import type { Socket as ClientSocket } from 'socket.io-client'
import type { FastifySessionObject } from '@fastify/session'
import type { SessionSocket } from '../types/index'
import { connect, once, sleep, transportModes } from './helpers/client'
import { cookieOf, login, logout, me } from './helpers/server'
import { adapterReady, skipWithoutRedis, startRedis, startRedisNode, type RedisNode } from './helpers/redis'

const userRoom = (session: FastifySessionObject): string | undefined => session.user && 'user:' + session.user.id

interface Seen { node: string, nsp: string, sessionId: string, user: unknown }

/** What each node's application code does: the same namespaces on every node, and a `whoami` event. */
function serve (node: RedisNode, name: string): void {
  const handle = (socket: SessionSocket): void => {
    socket.data.node = name
    socket.data.nsp = socket.nsp.name
    socket.on('whoami', (ack: (seen: Seen) => void) => {
      const session = socket.request.session
      ack({ node: name, nsp: socket.nsp.name, sessionId: session.sessionId, user: session.user ?? null })
    })
  }
  node.app.io.on('connection', handle)
  node.app.io.of('/chat').on('connection', handle)
  node.app.io.of(/^\/dynamic-\w+$/).on('connection', handle)
}

const sessionIdOf = async (url: string, cookie: string): Promise<string> => (await me(url, cookie)).sessionId

t.test('two nodes sharing one Redis (connect-redis store, Redis adapter)', { skip: skipWithoutRedis }, async (t) => {
  const redis = await startRedis(t)
  const a = await startRedisNode(t, redis, { userRoom })
  const b = await startRedisNode(t, redis, { userRoom })
  serve(a, 'A')
  serve(b, 'B')
  await adapterReady(a, ['/', '/chat'], 2)

  t.test('a session logged in over HTTP on A is the session of sockets on B', async (t) => {
    const cookie = await login(a.url, 'Ada')
    const sessionId = await sessionIdOf(a.url, cookie)
    for (const { name, transports } of transportModes) {
      for (const namespace of ['/', '/chat']) {
        const socket = await connect(t, b.url, { cookie, transports, namespace })
        const seen = await socket.emitWithAck('whoami') as Seen
        t.same(seen, { node: 'B', nsp: namespace, sessionId, user: { id: 'id-Ada', name: 'Ada' } }, `${name}, ${namespace}`)
      }
    }
  })

  t.test('logout on A disconnects the session\'s sockets on B in every namespace, at once', async (t) => {
    const cookie = await login(a.url, 'Ada')
    const bystanderCookie = await login(a.url, 'Bob')
    const sockets: Array<{ label: string, socket: ClientSocket }> = []
    const bystanders: ClientSocket[] = []
    for (const { name, transports } of transportModes) {
      for (const namespace of ['/', '/chat']) {
        sockets.push({ label: `${name}, ${namespace}`, socket: await connect(t, b.url, { cookie, transports, namespace }) })
        bystanders.push(await connect(t, b.url, { cookie: bystanderCookie, transports, namespace }))
      }
    }
    sockets.push({ label: 'on A itself', socket: await connect(t, a.url, { cookie }) })
    const reasons = sockets.map(({ socket }) => once<string>(socket, 'disconnect', 2000))

    const start = performance.now()
    const response = await logout(a.url, cookie)
    const seen = await Promise.all(reasons)
    const elapsed = performance.now() - start
    t.equal(response.status, 204, 'POST /logout on A')
    sockets.forEach(({ label }, i) => t.equal(seen[i], 'io server disconnect', label))
    t.ok(elapsed < 1000, `every socket disconnected in ${elapsed.toFixed(1)} ms (< 1000 ms)`)
    t.comment(`logout on A to the last disconnect on B: ${elapsed.toFixed(1)} ms`)

    await sleep(100)
    t.ok(bystanders.every((socket) => socket.connected), 'another session\'s sockets on B stay connected')
    const answer = await bystanders[0].emitWithAck('whoami') as Seen
    t.same(answer.user, { id: 'id-Bob', name: 'Bob' }, 'and still answer')
    t.same((await me(b.url, cookie)).user, null, 'B sees the session destroyed in Redis')
  })

  t.test('a user-room emit from A reaches the user\'s sockets on A and on B', async (t) => {
    const onA = await login(a.url, 'Ada')
    const onB = await login(b.url, 'Ada') // a second session of the same user, made by the other node
    const bob = await login(b.url, 'Bob')
    const targets = [
      { label: 'A, /', socket: await connect(t, a.url, { cookie: onA }) },
      { label: 'B, / (polling)', socket: await connect(t, b.url, { cookie: onB, transports: ['polling', 'websocket'] }) },
      { label: 'B, / (session made on A)', socket: await connect(t, b.url, { cookie: onA }) }
    ]
    const chat = { label: 'B, /chat', socket: await connect(t, b.url, { cookie: onB, namespace: '/chat' }) }
    const others = [await connect(t, b.url, { cookie: bob }), await connect(t, a.url, { cookie: bob, namespace: '/chat' })]
    const unexpected: unknown[] = []
    for (const socket of others) socket.on('news', (value: unknown) => unexpected.push(value))

    const received = targets.map(({ socket }) => once<string>(socket, 'news'))
    const receivedInChat = once<string>(chat.socket, 'news')
    a.app.io.to('user:id-Ada').emit('news', 'for Ada')
    a.app.io.of('/chat').to('user:id-Ada').emit('news', 'for Ada in /chat')
    const values = await Promise.all(received)
    targets.forEach(({ label }, i) => t.equal(values[i], 'for Ada', label))
    t.equal(await receivedInChat, 'for Ada in /chat', chat.label)
    await sleep(100)
    t.same(unexpected, [], 'another user\'s sockets received nothing')
  })

  t.test('fastify.sessionSockets(id) returns the session\'s sockets of both nodes in both namespaces', async (t) => {
    const cookie = await login(a.url, 'Ada')
    const sessionId = await sessionIdOf(a.url, cookie)
    const other = await login(a.url, 'Bob')
    const expected: Array<{ id: string | undefined, node: string, nsp: string }> = []
    for (const [node, url] of [['A', a.url], ['B', b.url]]) {
      for (const namespace of ['/', '/chat']) {
        const { transports } = transportModes[node === 'A' ? 1 : 0] // polling on A, websocket on B
        const socket = await connect(t, url, { cookie, namespace, transports })
        expected.push({ id: socket.id, node, nsp: namespace })
        await connect(t, url, { cookie: other, namespace })
      }
    }
    const byId = (x: { id?: string }, y: { id?: string }): number => String(x.id).localeCompare(String(y.id))
    expected.sort(byId)

    for (const [name, node] of [['A', a], ['B', b]] as const) {
      const start = performance.now()
      const remote = await node.app.sessionSockets(sessionId)
      const elapsed = performance.now() - start
      const found = remote.map((socket) => ({ id: socket.id, node: socket.data.node, nsp: socket.data.nsp })).sort(byId)
      t.same(found, expected, `from ${name}: 4 sockets, the session's only, with their ids, nodes and namespaces`)
      t.ok(remote.every((socket) => socket.rooms.has(`session:${sessionId}`)), `from ${name}: each in the session room`)
      t.comment(`sessionSockets from ${name}: ${elapsed.toFixed(1)} ms`)
    }
    t.same(await a.app.sessionSockets('no-such-session'), [], 'an unknown session has no sockets')
  })

  t.test('a login on A that regenerates the session disconnects the old id\'s sockets on B', async (t) => {
    const anonymous = cookieOf(await fetch(`${a.url}/me`))
    const socket = await connect(t, b.url, { cookie: anonymous, namespace: '/chat' })
    const reason = once<string>(socket, 'disconnect', 2000)
    const loggedIn = await login(a.url, 'Ada', anonymous)
    t.equal(await reason, 'io server disconnect')
    t.not(loggedIn, anonymous, 'a new session cookie')
  })
})

t.test('a dynamic namespace child that only B has: the logout on A reaches it at once', { skip: skipWithoutRedis }, async (t) => {
  // A dynamic namespace's child exists only where a client connected to it, so A cannot name it: each
  // node ends the session's sockets in all of its own namespaces when A tells it to.
  const redis = await startRedis(t)
  const a = await startRedisNode(t, redis, { userRoom, validateInterval: 0 })
  const b = await startRedisNode(t, redis, { userRoom, validateInterval: 0 }) // no sweep: B acts on A's message
  serve(a, 'A')
  serve(b, 'B')
  await adapterReady(a, ['/'], 2)
  const cookie = await login(a.url, 'Ada')
  const socket = await connect(t, b.url, { cookie, namespace: '/dynamic-room1' })
  t.same((await socket.emitWithAck('whoami') as Seen).user, { id: 'id-Ada', name: 'Ada' }, 'connected on B')
  t.notOk(a.app.io._nsps.has('/dynamic-room1'), 'A has no such namespace: no client connected to it there')
  const ended = once<{ reason: string }>(socket, 'session:end', 2000)
  const reason = once<string>(socket, 'disconnect', 2000)
  await logout(a.url, cookie)
  t.same(await ended, { reason: 'logout' }, 'told why')
  t.equal(await reason, 'io server disconnect', 'ended by B at A\'s request')
})

t.test('a session one node\'s sweep finds gone is ended on every node at once', { skip: skipWithoutRedis }, async (t) => {
  const redis = await startRedis(t)
  const ended: string[] = []
  const a = await startRedisNode(t, redis, { validateInterval: 50, onSessionEnd: (_id, reason) => { ended.push(`A:${reason}`) } })
  const b = await startRedisNode(t, redis, { validateInterval: 0, onSessionEnd: (_id, reason) => { ended.push(`B:${reason}`) } }) // B does not sweep
  serve(a, 'A')
  serve(b, 'B')
  await adapterReady(a, ['/'], 2)
  const cookie = await login(a.url, 'Ada')
  const sessionId = await sessionIdOf(a.url, cookie)
  const sockets = { A: await connect(t, a.url, { cookie, namespace: '/chat' }), B: await connect(t, b.url, { cookie, namespace: '/chat' }) }
  const reasons = Promise.all([once<string>(sockets.A, 'disconnect', 2000), once<string>(sockets.B, 'disconnect', 2000)])
  const told = Promise.all([once(sockets.A, 'session:end', 2000), once(sockets.B, 'session:end', 2000)])

  await a.pubClient.del(`sess:${sessionId}`) // the session vanishes from Redis, without any logout
  t.same(await reasons, ['transport close', 'transport close'], 'A\'s sweep closes the sockets on A and on B, which may reconnect and be handshaken again')
  t.same(await told, [{ reason: 'destroyed' }, { reason: 'destroyed' }], 'both told why')
  await sleep(200) // four more sweeps on A
  t.same(ended.sort(), ['A:destroyed', 'B:destroyed'], 'onSessionEnd on each node, once')
})
