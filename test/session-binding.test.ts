import t from 'tap'
import type { FastifySessionObject } from '@fastify/session'
import { Adapter } from 'socket.io-adapter'
import { versionOf } from '../lib/session-binding'
import { connect, disconnectReason, sleep, transportModes } from './helpers/client'
import { watchCrashes } from './helpers/process'
import { captureLogs, login, startServer } from './helpers/server'

// lib/session-binding.ts: a request that ends on another session id than it began with ends the old id's sockets.

t.test('a request that regenerates or destroys the session by other means disconnects the old id\'s sockets', async (t) => {
  const server = await startServer(t, {}, {
    after: (app) => {
      app.post('/raw-regenerate', async (request) => {
        await request.session.regenerate()
        request.session.user = { id: 'x', name: 'X' }
        return { ok: true }
      })
      app.post('/raw-destroy', async (request) => {
        await request.session.destroy()
        return { ok: true }
      })
      app.get('/untouched', async () => ({ ok: true }))
    }
  })
  for (const route of ['/raw-regenerate', '/raw-destroy']) {
    const cookie = await login(server.url)
    const socket = await connect(t, server.url, { cookie })
    await fetch(`${server.url}/untouched`, { headers: { cookie } })
    t.ok(socket.connected, 'a request that keeps the id leaves the sockets alone')
    const reason = disconnectReason(socket)
    await fetch(`${server.url}${route}`, { method: 'POST', headers: { cookie } })
    t.equal(await reason, 'io server disconnect', route)
  }
})

t.test('an application\'s disconnect listener that throws: the failure is logged, and the session\'s other sockets are ended all the same', async (t) => {
  const { lines, logger } = captureLogs('error')
  const connectionsOpen: boolean[] = []
  const server = await startServer(t, {}, {
    fastify: { logger },
    after: (app) => {
      app.post('/raw-destroy', {
        // Runs after the plugin's own onSend, which ended the sockets: what the server holds at once,
        // whatever the clients do afterwards (socket.io-client would close its side by itself).
        onSend: (_request, _reply, payload, done) => {
          connectionsOpen.push(...[...engineSockets].map((conn) => conn.readyState === 'open'))
          done(null, payload)
        }
      }, async (request) => {
        await request.session.destroy()
        return { ok: true }
      })
    }
  })
  const engineSockets = new Set<{ readyState: string }>()
  let connections = 0
  for (const namespace of ['/', '/admin']) {
    server.app.io.of(namespace).on('connection', (socket) => {
      engineSockets.add(socket.conn)
      const first = connections++ === 0
      // A bug in the application, for the first socket only, and only when the server disconnects it.
      socket.on('disconnect', (reason) => { if (first && reason === 'server namespace disconnect') throw new Error('app bug') })
    })
  }
  const cookie = await login(server.url)
  const sockets = [await connect(t, server.url, { cookie }), await connect(t, server.url, { cookie }), await connect(t, server.url, { cookie, namespace: '/admin' })]
  const reasons = Promise.all(sockets.map(disconnectReason))
  const response = await fetch(`${server.url}/raw-destroy`, { method: 'POST', headers: { cookie } })
  t.equal(response.status, 200, 'the request itself succeeds')
  t.same(await reasons, ['io server disconnect', 'io server disconnect', 'io server disconnect'], 'every socket of the session is disconnected')
  const failure = lines.find((line) => line.msg === 'socket.io session: a disconnect listener threw')
  t.match(failure, { level: 50, err: { message: 'app bug' } }, 'the listener\'s error is logged')
  t.same(connectionsOpen, [false, false, false], 'and no engine.io connection of the ended session is left open by the server')
})

for (const { name, transports } of transportModes) {
  t.test(`${name}: an application's disconnecting listener that always throws: logged, and the connection closed all the same`, async (t) => {
    // The listener throws again when Socket.IO handles the connection's close, as on any disconnect:
    // that error is the application's own, recorded here instead of ending the test process.
    const crashes = watchCrashes(t)
    const { lines, logger } = captureLogs('error')
    const server = await startServer(t, {}, {
      fastify: { logger },
      after: (app) => {
        app.post('/raw-destroy', async (request) => {
          await request.session.destroy()
          return { ok: true }
        })
      }
    })
    server.app.io.on('connection', (socket) => {
      socket.on('disconnecting', () => { throw new Error('app bug') })
    })
    const cookie = await login(server.url)
    const socket = await connect(t, server.url, { cookie, transports })
    const reason = disconnectReason(socket)
    t.equal((await fetch(`${server.url}/raw-destroy`, { method: 'POST', headers: { cookie } })).status, 200, 'the request itself succeeds')
    t.ok(['transport close', 'transport error', 'io server disconnect'].includes(await reason), 'the client is disconnected')
    for (let i = 0; i < 40 && server.app.io.engine.clientsCount > 0; i++) await sleep(25)
    t.equal(server.app.io.engine.clientsCount, 0, 'its engine.io connection is closed')
    const failures = lines.filter((line) => line.msg === 'socket.io session: a disconnect listener threw')
    t.ok(failures.length >= 1 && failures.every((line) => (line.err as { message?: string }).message === 'app bug'), `the listener's error logged (${failures.length} times)`)
    t.ok(crashes.every((err) => (err as Error).message === 'app bug'), 'nothing else thrown')
  })
}

t.test('an adapter that fails to publish the end to other nodes: this node\'s sockets are ended, the failure logged, the request served', async (t) => {
  // An adapter for several nodes (it implements serverSideEmit) whose publish throws, as a client to a
  // message broker that is closed can.
  let broken = false
  class BrokenPublishAdapter extends Adapter {
    override serverSideEmit (): void { if (broken) throw new Error('publish failed') }
  }
  const { lines, logger } = captureLogs('error')
  const server = await startServer(t, { serverOptions: { adapter: BrokenPublishAdapter as never } }, {
    fastify: { logger },
    after: (app) => {
      app.post('/raw-destroy', async (request) => {
        await request.session.destroy()
        return { ok: true }
      })
    }
  })
  const cookie = await login(server.url)
  const socket = await connect(t, server.url, { cookie })
  broken = true
  const reason = disconnectReason(socket)
  const response = await fetch(`${server.url}/raw-destroy`, { method: 'POST', headers: { cookie } })
  t.equal(response.status, 200, 'the request itself succeeds')
  t.equal(await reason, 'io server disconnect', 'the socket on this node is ended')
  const failure = lines.find((line) => line.msg === 'socket.io session: ending the sockets of a released session failed')
  t.match(failure, { level: 50, err: { message: 'publish failed' } }, 'the failure to reach the other nodes is logged')
})

t.test('versionOf: without @fastify/session\'s hash, the fields as JSON, the cookie aside; undefined for fields JSON cannot hold', async (t) => {
  // Sessions of a @fastify/session that keeps no hash of the fields: plain objects with the same fields.
  const session = (fields: object): FastifySessionObject => ({ ...fields, cookie: { expires: new Date(Date.now() + Math.random() * 1000) } }) as unknown as FastifySessionObject
  t.equal(versionOf(session({ user: { name: 'Ada' } })), versionOf(session({ user: { name: 'Ada' } })), 'the same fields with another expiry (a rolling save): the same version')
  t.not(versionOf(session({ user: { name: 'Ada' } })), versionOf(session({ user: { name: 'Bob' } })), 'changed fields: another version')
  t.equal(versionOf(session({ big: 10n })), undefined, 'a field JSON cannot hold: no version, nothing to sync')
})
