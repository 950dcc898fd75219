import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { Server } from 'socket.io'
import type { SessionServer } from '../types/index'
import { InvalidOptionError } from './errors'
import type { AllowRequest } from './handshake'
import type { ResolvedOptions } from './options'
import { closePollingAtOnce, namespacesOf, redisPublishClientOf } from './socketio-internals'

/**
 * The Socket.IO server: the one already decorated as `fastify.io` (fastify-socket.io registered
 * before this plugin), or a new one on `fastify.server` built with `serverOptions`.
 */
export function useIoServer (fastify: FastifyInstance, opts: ResolvedOptions, log: FastifyBaseLogger): SessionServer {
  if (fastify.hasDecorator('io')) {
    if (opts.serverOptions !== undefined) {
      log.warn('socket.io session: fastify.io already exists, serverOptions are ignored')
    }
    guardAdapterPublishes(fastify.io, log)
    return fastify.io
  }
  const io: SessionServer = new Server(fastify.server, opts.serverOptions)
  guardAdapterPublishes(io, log)
  fastify.decorate('io', io)
  fastify.addHook('onClose', async () => {
    await io.close() // the adapters (Fastify has closed the HTTP server by now: onClose hooks run after)
  })
  return io
}

const guardedClients = new WeakSet<object>()

/**
 * @socket.io/redis-adapter publishes (broadcasts, server-side events, the plugin's session sync) without
 * handling the promise its Redis client returns: a publish in flight when Redis dies (a crash, a
 * SIGKILL) rejects, unhandled, and Node ends the process. The adapter's publishing client, found on
 * each namespace's adapter, gets its rejections logged instead: the message is lost, as any message
 * published while Redis is away, and the server goes on.
 */
function guardAdapterPublishes (io: SessionServer, log: FastifyBaseLogger): void {
  const guard = (nsp: { adapter: unknown }): void => {
    const client = redisPublishClientOf(nsp.adapter)
    if (client === undefined || guardedClients.has(client)) return
    guardedClients.add(client)
    const methods = client as Record<string, unknown>
    for (const name of ['publish', 'sPublish', 'spublish']) {
      const publish = methods[name]
      if (typeof publish !== 'function') continue
      methods[name] = function guardedPublish (this: unknown, ...args: unknown[]): unknown {
        const result: unknown = publish.apply(this, args)
        if (typeof (result as Promise<unknown> | undefined)?.catch === 'function') {
          (result as Promise<unknown>).catch((err: unknown) => {
            log.warn({ err }, 'socket.io session: a publish to Redis failed, that message is lost')
          })
        }
        return result
      }
    }
  }
  for (const nsp of namespacesOf(io)) guard(nsp)
  io.on('new_namespace', guard)
}

/**
 * Throws at registration for a server the plugin cannot make safe: one whose transports include
 * 'webtransport' (in `serverOptions`, or on a `fastify.io` that already exists).
 */
export function refuseUnsafeServer (fastify: FastifyInstance, opts: ResolvedOptions): void {
  if (fastify.hasDecorator('io')) {
    refuseWebTransport((fastify.io as SessionServer | undefined)?.engine?.opts.transports, 'transports', 'of the existing fastify.io')
  } else {
    refuseWebTransport(opts.serverOptions?.transports, 'serverOptions.transports', '')
  }
}

/**
 * WebTransport sessions never reach engine.io's `allowRequest` and carry no HTTP request: they would
 * skip the origin check and the session. Refused at boot rather than left to engine.io's own guard.
 */
function refuseWebTransport (transports: unknown, option: string, where: string): void {
  if (Array.isArray(transports) && transports.includes('webtransport')) {
    throw new InvalidOptionError(option, `${where === '' ? '' : where + ' '}must not include 'webtransport': WebTransport sessions carry no HTTP request, so they would bypass the origin check and the session`)
  }
}

/** Runs `handshake` on every engine.io handshake, before any `allowRequest` the server already had. */
export function runOnHandshake (io: SessionServer, handshake: AllowRequest): void {
  const engineOptions = io.engine.opts
  const previous = engineOptions.allowRequest
  engineOptions.allowRequest = previous === undefined
    ? handshake
    : (req, done) => handshake(req, (err, ok) => (ok ? previous(req, done) : done(err, ok)))
}

/**
 * Closes every connection on this node in every namespace, at once: `fastify.close()` must not wait
 * for a client connected only to another namespace, nor 30 s for a polling client's next request.
 * Clients see a transport close and reconnect, to this server when it is back or to another node.
 */
export function closeConnections (io: SessionServer): void {
  io.engine.close()
}

/**
 * A server-side close of a polling connection (logout, an ended session) makes engine.io wait up to
 * 30 s for a poll to carry its close packet, with a timer that nothing clears, not even
 * `engine.close()`: it keeps a closing process alive 30 s. The client has its DISCONNECT packets by
 * then, and one that polls again is told its session is unknown and reconnects: the wait is dropped.
 */
export function closePollingPromptly (io: SessionServer): void {
  io.engine.on('connection', closePollingAtOnce)
}
