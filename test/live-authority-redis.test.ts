import t from 'tap'
import type { Test } from 'tap'
import { performance } from 'node:perf_hooks'
import type { FastifySessionObject } from '@fastify/session'
import type { FastifySocketIoSessionOptions, SessionSocket } from '../types/index'
import { askUntil, connect, once, transportModes } from './helpers/client'
import { login, me, post } from './helpers/server'
import { adapterReady, skipWithoutRedis, startBareNode, startRedis, startRedisNode, type RedisNode, type RedisServer } from './helpers/redis'

const authorize = (session: FastifySessionObject): boolean => session.user !== undefined
const userRoom = (session: FastifySessionObject): string | undefined => session.user && `user:${session.user.id}`

interface Seen { node: string, user: string | null, note: string | null }

async function startNode (t: Test, redis: RedisServer, name: string, options: FastifySocketIoSessionOptions = {}): Promise<RedisNode> {
  const node = await startRedisNode(t, redis, { authorize, userRoom, validateInterval: 0, ...options }, {
    after (app) {
      app.post('/demote', async (request) => { request.session.user = undefined; return { ok: true } })
      // What each reply helper resolves to.
      app.post('/helper/logout', async (_request, reply) => await reply.logout())
      app.post('/helper/regenerate', async (_request, reply) => await reply.regenerateSession())
      app.post('/helper/disconnect', async (_request, reply) => await reply.disconnectSessionSockets())
    }
  })
  const handle = (socket: SessionSocket): void => {
    socket.on('whoami', (ack: (seen: Seen) => void) => {
      const session = socket.request.session
      ack({ node: name, user: session.user?.name ?? null, note: session.note ?? null })
    })
    socket.on('note', (note: string, ack: () => void) => {
      socket.request.session.note = note
      ack()
    })
  }
  node.app.io.on('connection', handle)
  node.app.io.of('/chat').on('connection', handle)
  return node
}

/** How many GET commands Redis has served: the session store's reads (the adapter sends none). */
async function redisGets (node: RedisNode): Promise<number> {
  const stats = await node.pubClient.info('commandstats')
  return Number(/cmdstat_get:calls=(\d+)/.exec(stats)?.[1] ?? 0)
}

t.test('two nodes on Redis: live authority', { skip: skipWithoutRedis }, async (t) => {
  const redis = await startRedis(t)
  const a = await startNode(t, redis, 'A')
  const b = await startNode(t, redis, 'B')
  await adapterReady(a, ['/', '/chat'], 2)

  for (const { name, transports } of transportModes) {
    t.test(`${name}: an HTTP change on A that keeps authority reaches the sockets on A and B, with one read on B`, async (t) => {
      const cookie = await login(a.url, 'Ada')
      const open = [
        await connect(t, a.url, { cookie, transports }),
        await connect(t, b.url, { cookie, transports }),
        await connect(t, b.url, { cookie, transports, namespace: '/chat' })
      ]
      const reads = await redisGets(a)
      await post(`${a.url}/note`, cookie, { note: `from HTTP, ${name}` })
      for (const socket of open) {
        t.equal((await askUntil<Seen>(socket, 'whoami', (seen) => seen.note === `from HTTP, ${name}`)).note, `from HTTP, ${name}`)
      }
      t.equal(await redisGets(a) - reads, 2, 'the request\'s own load on A, and one reload on B for its two sockets')
    })

    t.test(`${name}: an HTTP change on A that removes authority ends the sockets on both nodes within a second`, async (t) => {
      const cookie = await login(a.url, 'Ada')
      const open = [
        await connect(t, a.url, { cookie, transports }),
        await connect(t, b.url, { cookie, transports }),
        await connect(t, b.url, { cookie, transports, namespace: '/chat' })
      ]
      const ends = open.map((socket) => Promise.all([once(socket, 'session:end', 1000), once(socket, 'disconnect', 1000)]))
      const start = performance.now()
      await post(`${a.url}/demote`, cookie)
      for (const end of await Promise.all(ends)) t.same(end, [{ reason: 'unauthorized' }, 'io server disconnect'])
      t.ok(performance.now() - start < 1000, 'within a second')
    })
  }

  t.test('a socket\'s autoSave on A reaches the session\'s socket on B', async (t) => {
    const cookie = await login(a.url, 'Ada')
    const onA = await connect(t, a.url, { cookie })
    const onB = await connect(t, b.url, { cookie, namespace: '/chat' })
    await onA.emitWithAck('note', 'from a socket on A')
    t.equal((await askUntil<Seen>(onB, 'whoami', (seen) => seen.note === 'from a socket on A')).note, 'from a socket on A')
  })

  t.test('a save that finds the session gone from the store ends its sockets on every node at once', async (t) => {
    const cookie = await login(a.url, 'Ada')
    const sessionId = (await me(a.url, cookie)).sessionId
    const onA = await connect(t, a.url, { cookie })
    const onB = await connect(t, b.url, { cookie, namespace: '/chat' })
    const ends = [onA, onB].map((socket) => Promise.all([once(socket, 'session:end', 2000), once(socket, 'disconnect', 2000)]))
    await a.pubClient.del(`sess:${sessionId}`) // an admin tool removed it; no sweep runs (validateInterval: 0)
    onA.emit('note', 'after the destroy', () => {})
    t.same(await Promise.all(ends), [[{ reason: 'destroyed' }, 'transport close'], [{ reason: 'destroyed' }, 'transport close']])
    t.equal(await a.pubClient.exists(`sess:${sessionId}`), 0, 'not written back')
  })

  t.test('the helpers resolve once both nodes acknowledged, with the sockets of both', async (t) => {
    const cookie = await login(a.url, 'Ada')
    const sessionId = (await me(a.url, cookie)).sessionId
    await connect(t, a.url, { cookie })
    await connect(t, b.url, { cookie })
    await connect(t, b.url, { cookie, namespace: '/chat' })
    t.same(await a.app.disconnectSession(sessionId, 'maintenance'), { sockets: 3, nodes: 2, unacknowledged: 0 }, 'disconnectSession')

    const onB = await connect(t, b.url, { cookie })
    const told = once(onB, 'session:end', 2000)
    await a.pubClient.del(`sess:${sessionId}`) // destroyed in the store directly (an admin tool)
    t.same(await a.app.logoutSession(sessionId), { sockets: 1, nodes: 2, unacknowledged: 0 }, 'logoutSession after a direct destroy')
    t.same(await told, { reason: 'logout' })

    const c = await startNode(t, redis, 'C')
    await adapterReady(a, ['/', '/chat'], 3)
    for (const helper of ['logout', 'regenerate', 'disconnect']) {
      const cookie = await login(a.url, 'Ada')
      await connect(t, b.url, { cookie })
      await connect(t, c.url, { cookie, namespace: '/chat' })
      await connect(t, c.url, { cookie, transports: ['polling', 'websocket'] })
      const response = await fetch(`${a.url}/helper/${helper}`, { method: 'POST', headers: { cookie } })
      t.same(await response.json(), { sockets: 3, nodes: 3, unacknowledged: 0 }, `reply.${helper}...() on A, sockets on B and C`)
    }
  })
})

t.test('a node on the same adapter without the plugin counts as unacknowledged, and nothing hangs', { skip: skipWithoutRedis }, async (t) => {
  const redis = await startRedis(t)
  const a = await startNode(t, redis, 'A', { ackTimeout: 300 })
  const b = await startNode(t, redis, 'B', { ackTimeout: 300 })
  await startBareNode(t, redis) // a third node: bare Socket.IO on the same Redis adapter
  await adapterReady(a, ['/'], 3)

  const cookie = await login(a.url, 'Ada')
  const sessionId = (await me(a.url, cookie)).sessionId
  await connect(t, a.url, { cookie })
  await connect(t, b.url, { cookie })
  const start = performance.now()
  const result = await a.app.disconnectSession(sessionId)
  const elapsed = performance.now() - start
  t.same(result, { sockets: 2, nodes: 2, unacknowledged: 1 }, 'A and B answered, the bare node did not')
  t.ok(elapsed >= 250 && elapsed < 2000, `resolved after ackTimeout (${Math.round(elapsed)} ms)`)
})
