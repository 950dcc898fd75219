import t from 'tap'
import { connect, once, sleep } from './helpers/client'
import { sessionIdOf, setup } from './helpers/lifecycle'
import { captureLogs, login, startServer } from './helpers/server'
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
