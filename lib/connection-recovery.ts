import type { FastifyBaseLogger } from 'fastify'
import type { SessionServer } from '../types/index'
import { aroundSocketCreation, namespacesOf, recoveryOptions, sendEventPacket, type EngineClient, type Namespace } from './socketio-internals'

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
    log.info('socket.io session: connection state recovery now runs middlewares, so restored sockets are authorized')
  }
  const guard = (nsp: Namespace): void => { guardRestoredState(nsp, sessionRoom, log) }
  for (const nsp of namespacesOf(io)) guard(nsp)
  io.on('new_namespace', guard)
}

/** What connection state recovery restores (socket.io-adapter's `Session`). */
interface RestoredState { sid: string, rooms: string[], missedPackets: unknown[][] }

type Restore = (pid: string, offset: string) => Promise<RestoredState | null | undefined> | RestoredState | null | undefined

/** An adapter as connection state recovery uses it: it restores a socket's state (socket.io-adapter's public `restoreSession`). */
interface RecoveringAdapter { restoreSession: Restore }

function guardRestoredState (nsp: Namespace, sessionRoom: (sessionId: string) => string, log: FastifyBaseLogger): void {
  const guarded = new WeakSet<object>()
  /** The missed packets of restored sockets, per connection and socket id, until the socket is admitted. */
  const held = new WeakMap<EngineClient, Map<string, unknown[][]>>()
  let creatingFor: EngineClient | undefined

  function check (state: RestoredState | null | undefined, client: EngineClient | undefined): RestoredState | undefined {
    if (state == null) return undefined
    const sessionId = client?.request.session?.sessionId
    if (sessionId === undefined || !state.rooms.includes(sessionRoom(sessionId))) {
      // Another session (or none) on this connection: a fresh socket, which its own session authorizes.
      log.info({ namespace: nsp.name }, 'socket.io session: connection state not restored, it belongs to another session')
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

  function guardAdapter (adapter: RecoveringAdapter): void {
    if (guarded.has(adapter)) return
    guarded.add(adapter)
    const restore = adapter.restoreSession
    adapter.restoreSession = function restoreSession (pid, offset) {
      const client = creatingFor // set only while the socket's creation runs its synchronous part
      return Promise.resolve(restore.call(this, pid, offset)).then((state) => check(state, client))
    }
  }

  const wrapped = aroundSocketCreation(nsp, (client) => {
    guardAdapter(nsp.adapter as unknown as RecoveringAdapter)
    creatingFor = client
  }, () => { creatingFor = undefined })
  if (!wrapped) {
    log.warn({ namespace: nsp.name }, 'socket.io session: this Socket.IO version cannot be guarded, connection state recovery restores state before authorization')
    return
  }

  // Admitted by every middleware: the missed packets now, before the application's own handlers run.
  nsp.prependListener('connect', (socket) => {
    const perSocket = held.get(socket.client)
    const packets = perSocket?.get(socket.id)
    if (packets === undefined) return
    perSocket?.delete(socket.id)
    for (const data of packets) sendEventPacket(socket, data)
  })
}
