import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { FastifySessionObject } from '@fastify/session'
import { Server } from 'socket.io'
import type { SessionServer } from '../types/index'
import { InvalidOptionError } from './errors'
import type { AllowRequest } from './handshake'
import type { ResolvedOptions } from './options'
import { namespacesOf } from './socketio-internals'

/** How each server this plugin set up names a session's room: what restored sockets are checked against. */
const sessionRoomOf = new WeakMap<SessionServer, (sessionId: string) => string>()

/**
 * The Socket.IO server: the one already decorated as `fastify.io` (fastify-socket.io registered
 * before this plugin), or a new one on `fastify.server` built with `serverOptions`.
 */
export function useIoServer (fastify: FastifyInstance, opts: ResolvedOptions, log: FastifyBaseLogger): SessionServer {
  if (fastify.hasDecorator('io')) {
    if (opts.serverOptions !== undefined) {
      log.warn('fastify-socket.io-session: fastify.io already exists, so serverOptions are ignored')
    }
    sessionRoomOf.set(fastify.io, opts.sessionRoom)
    guardAdapterPublishes(fastify.io, log)
    return fastify.io
  }
  const io: SessionServer = new Server(fastify.server, opts.serverOptions)
  sessionRoomOf.set(io, opts.sessionRoom)
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
    const client = (nsp.adapter as { pubClient?: unknown } | undefined)?.pubClient
    if (typeof client !== 'object' || client === null || guardedClients.has(client)) return
    guardedClients.add(client)
    const methods = client as Record<string, unknown>
    for (const name of ['publish', 'sPublish', 'spublish']) {
      const publish = methods[name]
      if (typeof publish !== 'function') continue
      methods[name] = function guardedPublish (this: unknown, ...args: unknown[]): unknown {
        const result: unknown = publish.apply(this, args)
        if (typeof (result as Promise<unknown> | undefined)?.catch === 'function') {
          (result as Promise<unknown>).catch((err: unknown) => {
            log.warn({ err }, 'socket.io adapter: a publish to Redis failed (Redis unreachable); that message is lost')
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
 * Connection state recovery skips middlewares by default, which would let a restored socket in
 * without authorization: the plugin makes Socket.IO run them for restored sockets too. And Socket.IO
 * hands a restored socket its old state before any middleware runs: it joins the old rooms and sends
 * the missed messages at once, so a socket then refused has had them, and one whose connection now
 * carries another session (a logout and another login in the same browser during the gap) would keep
 * the previous session's rooms. So the plugin restores the state only into the session it belonged
 * to, and holds the missed messages back until every middleware has admitted the socket.
 */
export function authorizeRecoveredSockets (io: SessionServer, log: FastifyBaseLogger): void {
  const recovery = (io as unknown as { opts: { connectionStateRecovery?: { skipMiddlewares?: boolean } } }).opts.connectionStateRecovery
  if (recovery === undefined) return
  if (recovery.skipMiddlewares === true) {
    recovery.skipMiddlewares = false
    log.info('fastify-socket.io-session: connection state recovery now runs middlewares, so restored sockets are authorized')
  }
  const sessionRoom = sessionRoomOf.get(io) ?? ((sessionId: string) => `session:${sessionId}`)
  const guard = (nsp: RecoveringNamespace): void => { guardRestoredState(nsp, sessionRoom, log) }
  for (const nsp of namespacesOf(io)) guard(nsp as unknown as RecoveringNamespace)
  io.on('new_namespace', (nsp) => { guard(nsp as unknown as RecoveringNamespace) })
}

/** What connection state recovery restores (socket.io-adapter's `Session`). */
interface RestoredState { sid: string, rooms: string[], missedPackets: unknown[][] }

/** The engine.io connection a socket is created on (Socket.IO's `Client`): its request carries the session. */
interface EngineClient { request: { session?: FastifySessionObject | null } }

type Restore = (pid: string, offset: string) => Promise<RestoredState | null | undefined> | RestoredState | null | undefined

/**
 * The Socket.IO internals this relies on (socket.io 4.6 to 4.8): `Namespace#_createSocket(client, auth)`,
 * which calls `adapter.restoreSession(pid, offset)` synchronously before it builds the Socket from the
 * state it resolves to; and `Socket#packet(packet)`, with which that Socket sends the missed packets.
 */
interface RecoveringNamespace {
  name: string
  adapter: { restoreSession: Restore }
  _createSocket: (this: RecoveringNamespace, client: EngineClient, auth: unknown) => Promise<unknown>
  prependListener (event: 'connect', listener: (socket: RestoredSocket) => void): unknown
}
interface RestoredSocket { id: string, client: EngineClient, packet (packet: { type: number, data: unknown[] }): void }

const EVENT = 2 // socket.io-parser's PacketType.EVENT

function guardRestoredState (nsp: RecoveringNamespace, sessionRoom: (sessionId: string) => string, log: FastifyBaseLogger): void {
  const createSocket = nsp._createSocket
  if (typeof createSocket !== 'function') {
    log.warn({ namespace: nsp.name }, 'fastify-socket.io-session: this Socket.IO version cannot be guarded: connection state recovery restores state before authorization')
    return
  }
  const guarded = new WeakSet<object>()
  /** The missed packets of restored sockets, per connection and socket id, until the socket is admitted. */
  const held = new WeakMap<EngineClient, Map<string, unknown[][]>>()
  let creatingFor: EngineClient | undefined

  function check (state: RestoredState | null | undefined, client: EngineClient | undefined): RestoredState | undefined {
    if (state == null) return undefined
    const sessionId = client?.request.session?.sessionId
    if (sessionId === undefined || !state.rooms.includes(sessionRoom(sessionId))) {
      // Another session (or none) on this connection: a fresh socket, which its own session authorizes.
      log.info({ namespace: nsp.name }, 'socket.io connection state not restored: it belongs to another session than the connection\'s')
      return undefined
    }
    if (state.missedPackets.length > 0 && client !== undefined) {
      const perSocket = held.get(client) ?? new Map<string, unknown[][]>()
      held.set(client, perSocket)
      perSocket.set(state.sid, state.missedPackets)
      state.missedPackets = []
    }
    return state
  }

  function guardAdapter (adapter: RecoveringNamespace['adapter']): void {
    if (guarded.has(adapter)) return
    guarded.add(adapter)
    const restore = adapter.restoreSession
    adapter.restoreSession = function restoreSession (pid, offset) {
      const client = creatingFor // set only while _createSocket runs its synchronous part
      return Promise.resolve(restore.call(this, pid, offset)).then((state) => check(state, client))
    }
  }

  nsp._createSocket = function (client, auth) {
    guardAdapter(this.adapter)
    creatingFor = client
    try {
      return createSocket.call(this, client, auth)
    } finally {
      creatingFor = undefined
    }
  }

  // Admitted by every middleware: the missed packets now, before the application's own handlers run.
  nsp.prependListener('connect', (socket) => {
    const perSocket = held.get(socket.client)
    const packets = perSocket?.get(socket.id)
    if (packets === undefined) return
    perSocket?.delete(socket.id)
    for (const data of packets) socket.packet({ type: EVENT, data })
  })
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
  io.engine.on('connection', (conn: { transport: { name: string, closeTimeout?: number } }) => {
    if (conn.transport.name === 'polling') conn.transport.closeTimeout = 0
  })
}
