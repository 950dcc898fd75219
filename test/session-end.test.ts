import t from 'tap'
import { Manager } from 'socket.io-client'
import type { FastifySessionObject } from '@fastify/session'
import type { SessionSocket } from '../types/index'
import { connected, sleep } from './helpers/client'
import { captureLogs, login, post, startServer } from './helpers/server'

// lib/session-end.ts: how sockets are ended and told why. The reasons and the order of the end
// event and the disconnect are in live-authority.test.ts; an application's disconnect listener
// that throws, in session-binding.test.ts; onSessionEnd, in lifecycle.test.ts.

t.test('a socket that left while its re-authorization ran is told nothing when it is refused', async (t) => {
  const { lines, logger } = captureLogs('info')
  let refusing: Promise<void> | undefined
  let refused = (): void => {}
  // Slow, and refusing, for the /admin socket once the session has a note: a database call that takes time.
  const authorize = async (session: FastifySessionObject, socket: SessionSocket): Promise<boolean> => {
    if (socket.nsp.name !== '/admin' || session.note === undefined) return true
    refusing = new Promise((resolve) => { refused = resolve })
    await sleep(200)
    setImmediate(refused)
    return false
  }
  const server = await startServer(t, { validateInterval: 0, authorize }, { fastify: { logger } })
  server.app.io.of('/admin')
  server.app.io.on('connection', (socket: SessionSocket) => {
    socket.on('ping', (ack: (answer: string) => void) => ack('pong'))
  })
  const cookie = await login(server.url)

  // One connection, two namespaces: what the server sends to /admin is seen by the connection's manager.
  const manager = new Manager(server.url, { transports: ['websocket'], extraHeaders: { cookie }, reconnection: false })
  const main = manager.socket('/')
  const admin = manager.socket('/admin')
  t.teardown(() => { main.disconnect(); admin.disconnect() })
  await Promise.all([connected(main.connect()), connected(admin.connect())])
  const toAdmin: unknown[] = []
  manager.on('packet', (packet: { nsp: string, data?: unknown }) => { if (packet.nsp === '/admin') toAdmin.push(packet.data) })

  await post(`${server.url}/note`, cookie, { note: 'changed' }) // the sockets are authorized again
  await sleep(50)
  t.ok(refusing !== undefined, 'the /admin socket\'s re-authorization is running')
  admin.disconnect() // meanwhile, the client leaves /admin; its connection stays, for /
  await refusing
  t.equal(await main.emitWithAck('ping'), 'pong', '/ is still served (and anything sent to /admin before arrived)')
  t.same(toAdmin, [], 'the refused socket, already gone, was sent no end event')
  t.ok(lines.some((line) => line.msg === 'socket.io session: socket no longer authorized' && line.namespace === '/admin'), 'the refusal happened')
  t.ok(main.connected, 'the / socket stays connected')
})
