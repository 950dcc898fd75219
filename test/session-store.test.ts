import t from 'tap'
import { randomBytes } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import type { FastifySessionObject } from '@fastify/session'
import { connect, sleep } from './helpers/client'
import { serve, sessionIdOf } from './helpers/lifecycle'
import { captureLogs, login, me, startServer } from './helpers/server'
import { TestStore } from './helpers/store'
import { SessionStoreAccess } from '../lib/session-store'

// lib/session-store.ts: the @fastify/session store as the lifecycle uses it (found from a socket's
// session when needed, its failures passed on, the memory store's live sessions read as stored data).

/** A store whose writes (set) or removals (destroy) fail, as a store that lost its connection midway would. */
class PartlyFailingStore extends TestStore {
  fails: 'set' | 'destroy' | undefined

  override set (sessionId: string, session: unknown, callback: (err?: unknown) => void): void {
    if (this.fails === 'set') return callback(new Error('store write failed'))
    super.set(sessionId, session, callback)
  }

  override destroy (sessionId: string, callback: (err?: unknown) => void): void {
    if (this.fails === 'destroy') return callback(new Error('store destroy failed'))
    super.destroy(sessionId, callback)
  }
}

t.test('an idGenerator that needs a real request: the store is found from the first socket\'s session, and sockets save', async (t) => {
  // At registration the plugin looks for the store with a request that has no headers, which this
  // idGenerator refuses: the store is then taken from a connected socket's session.
  const idGenerator = (request?: FastifyRequest): string => {
    const host = request?.headers.host
    if (host === undefined) throw new Error('idGenerator: no host')
    return `${host.replace(/\W/g, '')}-${randomBytes(18).toString('base64url')}`
  }
  const { lines, logger } = captureLogs('warn')
  const store = new TestStore()
  const server = await startServer(t, { validateInterval: 0 }, { session: { store, idGenerator }, fastify: { logger } })
  serve(server)
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  t.match(id, /^127001\d+-/, 'the custom idGenerator made the session id')
  const socket = await connect(t, server.url, { cookie })
  t.equal(await socket.timeout(2000).emitWithAck('increment'), 1)
  t.equal(store.read(id)?.count, 1, 'the socket\'s change is merged into the store')
  t.equal((await me(server.url, cookie)).count, 1, 'and HTTP sees it')
  const result = await server.app.logoutSession(id)
  t.equal(result.sockets, 1, 'logoutSession has the store too')
  t.notOk(store.data.has(id))
  t.same(lines, [], 'no error: the store was found')
})

t.test('a store write that fails: the socket\'s change is not acknowledged, the error is logged, the socket goes on', async (t) => {
  const { lines, logger } = captureLogs('error')
  const store = new PartlyFailingStore()
  const server = await startServer(t, { validateInterval: 0 }, { session: { store }, fastify: { logger } })
  serve(server)
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  const socket = await connect(t, server.url, { cookie })
  store.fails = 'set'
  await t.rejects(socket.timeout(300).emitWithAck('increment'), 'no acknowledgement for a change that was not saved')
  t.equal(store.read(id)?.count, undefined, 'nothing written')
  const failed = lines.find((line) => line.msg === 'socket.io session: event handler failed')
  t.equal((failed?.err as { message?: string } | undefined)?.message, 'store write failed', 'logged with the store\'s error')
  store.fails = undefined
  t.same(await socket.timeout(2000).emitWithAck('read'), { count: 1, note: null }, 'the socket is still served')
})

t.test('a store removal that fails: logoutSession rejects with the store\'s error and the sockets stay', async (t) => {
  const store = new PartlyFailingStore()
  const server = await startServer(t, { validateInterval: 0 }, { session: { store } })
  const cookie = await login(server.url)
  const id = await sessionIdOf(server.url, cookie)
  const socket = await connect(t, server.url, { cookie })
  store.fails = 'destroy'
  await t.rejects(server.app.logoutSession(id), { message: 'store destroy failed' })
  await sleep(50)
  t.ok(socket.connected, 'nobody is ended for a logout that did not happen')
  t.ok(store.data.has(id), 'the session is still stored')
})

t.test('keep-alive with @fastify/session\'s memory store, which keeps live sessions: the stored expiry moves', async (t) => {
  // The memory store returns the Session object it was given, whose cookie is a Cookie (maxAge and
  // expiry read through its toJSON()), not the plain JSON other stores return.
  const server = await startServer(t, { validateInterval: 50 }, { session: { cookie: { secure: false, maxAge: 400 }, rolling: false } })
  const cookie = await login(server.url)
  const socket = await connect(t, server.url, { cookie })
  await sleep(1000)
  t.ok(socket.connected, 'still connected')
  t.equal((await me(server.url, cookie)).user?.name, 'Ada', 'still logged in for HTTP, 2.5 maxAge later')
  socket.disconnect()
  await sleep(600)
  t.equal((await me(server.url, cookie)).user, null, 'expired on schedule once nobody is connected')
})

t.test('without a store (a @fastify/session that keeps it elsewhere), every operation fails with a message that says so', async (t) => {
  // What the lifecycle meets when neither the registration nor a socket's session gives the store.
  const access = new SessionStoreAccess()
  t.notOk(access.attach({} as FastifySessionObject), 'a session object without the store: not found')
  t.notOk(access.ready)
  const message = 'the @fastify/session store was not found'
  await t.rejects(access.get('id'), { message })
  await t.rejects(access.merge('id', new Map([['count', 1]])), { message })
  await t.rejects(access.set('id', { cookie: {} }), { message })
  await t.rejects(access.destroy('id'), { message })
})
