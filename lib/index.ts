import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { FastifySocketIoSessionOptions } from '../types/index'
import { createAuthorization, useInEveryNamespace } from './authorization'
import { createHandshake, sendCreatedSessionCookie } from './handshake'
import { createCluster } from './cluster'
import { decorateHelpers } from './decorators'
import { authorizeRecoveredSockets } from './connection-recovery'
import { closeConnections, closePollingPromptly, refuseUnsafeServer, runOnHandshake, useIoServer } from './io-server'
import { resolveOptions, type ResolvedOptions } from './options'
import { createLifecycle } from './lifecycle'
import { createSessionRooms } from './rooms'
import { bindSessionsToSockets } from './session-binding'
import { createSocketEnder } from './session-end'
import { findSessionStore } from './session-internals'
import { SessionStoreAccess } from './session-store'

function plugin (fastify: FastifyInstance, options: FastifySocketIoSessionOptions, done: (err?: Error) => void): void {
  let opts: ResolvedOptions
  try {
    opts = resolveOptions(options)
    refuseUnsafeServer(fastify, opts)
  } catch (err) {
    return done(err as Error)
  }
  const log = fastify.log

  // The Socket.IO server, and its connections closed first when Fastify closes.
  const io = useIoServer(fastify, opts, log)
  fastify.addHook('preClose', (next) => { closeConnections(io); next() })
  closePollingPromptly(io)

  // Handshake: origin check, then the session loaded by @fastify/session's parser.
  runOnHandshake(io, createHandshake(fastify, opts, log))
  if (opts.createSession) io.engine.on('initial_headers', sendCreatedSessionCookie)

  // Sessions' sockets: their rooms, how they are ended (the client told why), and the messages that
  // make one node's decision reach every node, acknowledged.
  const rooms = createSessionRooms(io, opts)
  const ender = createSocketEnder(rooms, opts, log)
  const cluster = createCluster(io, opts, log, {
    end: ender.endSession,
    sync: (sessionId) => lifecycle.sync(sessionId)
  })
  const store = new SessionStoreAccess(log)
  store.use(findSessionStore(fastify.decryptSession))

  // While sockets are connected their sessions stay in step with the store, and their authority with
  // their sessions: reload, save, sync, re-authorization, expiry sweep, keep-alive.
  const lifecycle = createLifecycle({ io, rooms, store, ender, cluster, log }, opts)
  fastify.addHook('onReady', (next) => { lifecycle.start(); next() })
  fastify.addHook('preClose', (next) => { lifecycle.stop(); cluster.close(); next() })

  // Admission in every namespace: authorization, then the session's rooms and lifecycle.
  useInEveryNamespace(io, createAuthorization(opts, (socket, session) => {
    rooms.join(socket, session)
    lifecycle.attach(socket)
  }, log))
  authorizeRecoveredSockets(io, opts.sessionRoom, log)

  // HTTP requests: sockets tied to the session id they opened with, changes synced, and the helpers.
  const release = bindSessionsToSockets(fastify, opts, { cluster, lifecycle, store })
  decorateHelpers(fastify, opts, { rooms, cluster, store, release })

  done()
}

const fastifySocketIoSession = fp(plugin, {
  fastify: '5.x',
  name: 'fastify-socket.io-session',
  dependencies: ['@fastify/cookie', '@fastify/session']
})

// CommonJS, as the @fastify/* plugins: require() returns the plugin, with `.default` and a named export
// pointing to it (written out so that Node's ESM loader finds the named exports too).
module.exports = fastifySocketIoSession
module.exports.default = fastifySocketIoSession
module.exports.fastifySocketIoSession = fastifySocketIoSession
// For TypeScript code inside this repository; consumers get types/index.d.ts.
export default fastifySocketIoSession
