import t from 'tap'
import fastifySocketIo from 'fastify-socket.io'
import { connect, once, sleep, transportModes } from './helpers/client'
import { watchCrashes } from './helpers/process'
import { skipWithoutRedis, startRedis, startRedisNode } from './helpers/redis'
import { captureLogs, login, startServer } from './helpers/server'

for (const mode of ['own server', 'fastify-socket.io'] as const) {
  for (const { name, transports } of transportModes) {
    t.test(`${mode}, ${name}: fastify.close() closes every namespace at once`, async (t) => {
      const server = await startServer(t, {}, mode === 'fastify-socket.io' ? { before: async (app) => { await app.register(fastifySocketIo) } } : {})
      server.app.io.of('/admin')
      const cookie = await login(server.url)
      const onlyAdmin = await connect(t, server.url, { cookie, transports, namespace: '/admin' })
      const main = await connect(t, server.url, { cookie, transports })
      const closed = Promise.all([once(onlyAdmin, 'disconnect'), once(main, 'disconnect')])
      const started = Date.now()
      await server.app.close()
      const elapsed = Date.now() - started
      t.ok(elapsed < 1000, `closed in ${elapsed} ms`)
      const reasons = await closed
      // A transport close, or for a polling client caught between two polls a transport error: either way
      // not 'io server disconnect', so the client reconnects, to this server when it is back or to another node.
      if (mode === 'own server') t.ok(reasons.every((reason) => reason === 'transport close' || reason === 'transport error'), `clients may reconnect elsewhere: ${reasons.join(', ')}`)
      else t.equal(reasons.length, 2, `both disconnected (fastify-socket.io's own preClose runs first: ${reasons.join(', ')})`)
      t.equal(server.app.io.engine.clientsCount, 0, 'no engine.io connection left')
    })
  }
}

t.test('with fastify-socket.io registered first, its server is used and sessions work on it', async (t) => {
  const server = await startServer(t, { authorize: (session) => session.user !== undefined }, {
    before: async (app) => { await app.register(fastifySocketIo, { path: '/realtime' }) }
  })
  t.equal(server.app.io.path(), '/realtime', 'fastify.io is the one fastify-socket.io created')
  const cookie = await login(server.url)
  const { io } = await import('socket.io-client')
  for (const { transports } of transportModes) {
    const socket = io(server.url, { path: '/realtime', transports, forceNew: true, reconnection: false, extraHeaders: { cookie } })
    t.teardown(() => { socket.disconnect() })
    await once(socket, 'connect')
    const refused = io(server.url, { path: '/realtime', transports, forceNew: true, reconnection: false })
    t.teardown(() => { refused.disconnect() })
    t.equal((await once<{ data: { code: string } }>(refused, 'connect_error')).data.code, 'SESSION_UNAUTHORIZED')
  }
})

t.test('serverOptions configure the server the plugin creates', async (t) => {
  const server = await startServer(t, { serverOptions: { path: '/rt', connectTimeout: 1234 } })
  t.equal(server.app.io.path(), '/rt')
  const { io } = await import('socket.io-client')
  const socket = io(server.url, { path: '/rt', transports: ['websocket'], forceNew: true, reconnection: false })
  t.teardown(() => { socket.disconnect() })
  await once(socket, 'connect')
  t.ok(socket.connected, 'clients connect on that path')
})

t.test('serverOptions given while fastify.io already exists: a warning, and the existing server is used', async (t) => {
  const { lines, logger } = captureLogs('warn')
  const server = await startServer(t, { serverOptions: { path: '/ignored' } }, {
    fastify: { logger },
    before: async (app) => { await app.register(fastifySocketIo) }
  })
  t.equal(server.app.io.path(), '/socket.io')
  t.ok(lines.some((line) => line.level === 40 && line.msg.includes('serverOptions are ignored')))
})

t.test('a publish that the Redis adapter\'s client rejects (the client closed) is logged, not an unhandled rejection', { skip: skipWithoutRedis }, async (t) => {
  const crashes = watchCrashes(t)
  const redis = await startRedis(t)
  const { lines, logger } = captureLogs('warn')
  const node = await startRedisNode(t, redis, {}, { fastify: { logger } })
  node.pubClient.destroy() // closed for good: every publish now rejects at once
  node.app.io.emit('hello') // a broadcast, which the adapter publishes without handling the promise
  const message = 'socket.io session: a publish to Redis failed, that message is lost'
  for (let i = 0; i < 40 && !lines.some((line) => line.msg === message); i++) await sleep(25)
  t.match(lines.find((line) => line.msg === message), { level: 40, err: { message: /closed/i } }, 'logged at warn with the client\'s error')
  t.same(crashes, [], 'nothing reached unhandledRejection')
})
