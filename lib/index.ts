import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { FastifySocketIoSessionOptions } from '../types/index'
import { createAuthorization, useInEveryNamespace } from './authorization'
import { createHandshake, sendCreatedSessionCookie } from './handshake'
import { registerHelpers } from './helpers'
import { authorizeRecoveredSockets, closeConnections, closePollingPromptly, refuseUnsafeServer, runOnHandshake, useIoServer } from './io-server'
import { resolveOptions, type ResolvedOptions } from './options'
import { createLifecycle } from './lifecycle'
import { createSessionRooms } from './rooms'

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

  // Admission in every namespace: authorization, then the session's rooms and lifecycle.
  const rooms = createSessionRooms(io, opts)
  const lifecycle = createLifecycle(io, opts, log)
  useInEveryNamespace(io, createAuthorization(opts, (socket, session) => {
    rooms.join(socket, session)
    lifecycle.attach(socket)
  }, log))
  authorizeRecoveredSockets(io, log)

  // While sockets are connected their sessions stay true: reload, save, expiry sweep, keep-alive.
  fastify.addHook('onReady', (next) => { lifecycle.start(); next() })
  fastify.addHook('preClose', (next) => { lifecycle.stop(); next() })

  // Helpers for HTTP routes: logout, login, and sockets tied to the session id they opened with.
  registerHelpers(fastify, opts, rooms)

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
