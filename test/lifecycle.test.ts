import t, { type Test } from 'tap'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import type { FastifySessionObject } from '@fastify/session'
import { Server } from 'socket.io'
import { createCluster } from '../lib/cluster'
import { createLifecycle, type Lifecycle } from '../lib/lifecycle'
import { resolveOptions } from '../lib/options'
import { createSessionRooms } from '../lib/rooms'
import { createSocketEnder } from '../lib/session-end'
import { SessionStoreAccess } from '../lib/session-store'
import type { FastifySocketIoSessionOptions, SessionServer } from '../types/index'
import { askUntil, connect, once, sleep } from './helpers/client'
import { sessionIdOf, setup } from './helpers/lifecycle'
import { captureLogs, login, startServer, type LogLine } from './helpers/server'
import { TestStore } from './helpers/store'

// lib/lifecycle.ts as a whole: which parts run for the options given, and how a session found ended ends its sockets.
// Its parts have their own files: session-events.test.ts, session-sweep.test.ts.

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
  t.ok(lines.some((line) => line.level === 50 && line.msg === 'socket.io session: onSessionEnd threw'))
})

/** The parts wired as index.ts wires them, without @fastify/session: sessions that carry no store, none found at registration. */
async function wiredWithoutStore (t: Test, options: FastifySocketIoSessionOptions): Promise<{ url: string, lines: LogLine[], lifecycle: Lifecycle }> {
  const { lines, logger } = captureLogs('warn')
  const app = Fastify({ logger })
  const io: SessionServer = new Server(app.server)
  t.teardown(async () => { await io.close(); await app.close() })
  const opts = resolveOptions(options)
  const rooms = createSessionRooms(io, opts)
  const ender = createSocketEnder(rooms, opts, app.log)
  const store = new SessionStoreAccess(app.log)
  const cluster = createCluster(io, opts, app.log, { end: ender.endSession, sync: (sessionId) => lifecycle.sync(sessionId) })
  const lifecycle = createLifecycle({ io, rooms, store, ender, cluster, log: app.log }, opts)
  io.use((socket, next) => {
    // The session such a @fastify/session gives: its id and fields, and no store to find on it.
    const session = { sessionId: 'the-session', cookie: {}, note: 'loaded' } as unknown as FastifySessionObject
    socket.request.session = session
    rooms.join(socket, session)
    lifecycle.attach(socket)
    next()
  })
  io.on('connection', (socket) => {
    socket.on('note', (ack: (note: unknown) => void) => ack(socket.request.session.note ?? null))
    socket.on('set-note', (note: string, ack: (note: unknown) => void) => {
      (socket.request.session as unknown as { note: string }).note = note
      ack(note)
    })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, lines, lifecycle }
}

const storeMissing = 'socket.io session: the @fastify/session store could not be found yet, reload, save and sweep are off until it is'

t.test('sessions that do not carry their store (a @fastify/session that keeps it elsewhere): logged once; a sync applies the fields it is given and reads nothing', async (t) => {
  const { url, lines, lifecycle } = await wiredWithoutStore(t, { validateInterval: 0, autoSave: false })
  const sockets = [await connect(t, url), await connect(t, url)]

  const missing = lines.filter((line) => line.msg === storeMissing)
  t.equal(missing.length, 1, 'logged once, for the first socket')
  t.equal(missing[0]?.level, 50, 'at error level')

  lifecycle.sync('the-session') // another node saved a change: with no store, there is nothing to read it from
  await sleep(50)
  t.same(lines.filter((line) => line.level >= 40).map((line) => line.msg), [missing[0].msg], 'no failed read, nothing else logged')
  lifecycle.sync('the-session', { note: 'saved over HTTP' }) // this node saved it: the fields are given
  for (const socket of sockets) t.equal(await askUntil(socket, 'note', (note) => note === 'saved over HTTP'), 'saved over HTTP')
  t.ok(sockets.every((socket) => socket.connected), 'and the sockets stay connected')
})

t.test('without the store, reload and save are off as logged: events that change the session run and are acknowledged, nothing fails', async (t) => {
  const { url, lines } = await wiredWithoutStore(t, { validateInterval: 0, reloadOnEvent: true })
  const socket = await connect(t, url)
  t.equal(await socket.timeout(2000).emitWithAck('set-note', 'from the socket'), 'from the socket', 'the change is acknowledged')
  t.equal(await socket.timeout(2000).emitWithAck('note'), 'from the socket', 'and kept in the socket\'s session')
  t.same(lines.filter((line) => line.level >= 40).map((line) => line.msg), [storeMissing], 'only the missing store is logged')
})
