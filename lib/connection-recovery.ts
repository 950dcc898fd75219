import type { FastifyBaseLogger } from 'fastify'
import type { FastifySessionObject } from '@fastify/session'
import type { SessionServer } from '../types/index'
import { namespacesOf, recoveryOptions } from './socketio-internals'

/**
 * Connection state recovery skips middlewares by default, which would let a restored socket in
 * without authorization: the plugin makes Socket.IO run them for restored sockets too. And Socket.IO
 * hands a restored socket its old state before any middleware runs: it joins the old rooms and sends
 * the missed messages at once, so a socket then refused has had them, and one whose connection now
 * carries another session (a logout and another login in the same browser during the gap) would keep
 * the previous session's rooms. So the plugin restores the state only into the session it belonged
 * to, and holds the missed messages back until every middleware has admitted the socket.
 */
export function authorizeRecoveredSockets (io: SessionServer, sessionRoom: (sessionId: string) => string, log: FastifyBaseLogger): void {
  const recovery = recoveryOptions(io)
  if (recovery === undefined) return
  if (recovery.skipMiddlewares === true) {
    recovery.skipMiddlewares = false
    log.info('fastify-socket.io-session: connection state recovery now runs middlewares, so restored sockets are authorized')
  }
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
