import type { FastifySessionObject } from '@fastify/session'
import type { SessionRemoteSocket, SessionServer, SessionSocket } from '../types/index'
import type { ResolvedOptions } from './options'

/**
 * The rooms that tie sockets to sessions. Every socket joins, in its own namespace, its session's
 * room (and the user room, when configured); a session's sockets are then reached in every namespace
 * through the adapter, so on every node once the adapter is shared (Redis, ...).
 */
export interface SessionRooms {
  /** Joins the socket to its session's room, and to its user room if any. */
  join (socket: SessionSocket, session: FastifySessionObject): void
  /** Disconnects the session's sockets in every namespace, on every node: clients see 'io server disconnect'. */
  disconnect (sessionId: string): void
  /** The session's sockets in every namespace, on every node. */
  fetch (sessionId: string): Promise<SessionRemoteSocket[]>
}

export function createSessionRooms (io: SessionServer, opts: ResolvedOptions): SessionRooms {
  const { sessionRoom, userRoom } = opts
  const namespaces = io._nsps

  return {
    join (socket, session) {
      const room = sessionRoom(session.sessionId)
      const user = userRoom?.(session, socket)
      socket.join(user === undefined ? room : [room, user])
    },

    disconnect (sessionId) {
      const room = sessionRoom(sessionId)
      // Closing the connection also disconnects, with a DISCONNECT packet each, the client's other
      // namespaces, and leaves no engine.io connection behind whose handshake session is stale.
      for (const nsp of namespaces.values()) nsp.in(room).disconnectSockets(true)
    },

    async fetch (sessionId) {
      const room = sessionRoom(sessionId)
      const perNamespace = await Promise.all(Array.from(namespaces.values(), (nsp) => nsp.in(room).fetchSockets()))
      return perNamespace.flat()
    }
  }
}
