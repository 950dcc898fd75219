import type { FastifySessionObject } from '@fastify/session'
import type { SessionRemoteSocket, SessionServer, SessionSocket } from '../types/index'
import type { ResolvedOptions } from './options'
import { namespacesOf } from './socketio-internals'

const kUserRoom = Symbol('fastify-socket.io-session.userRoom')

interface RoomedSocket extends SessionSocket {
  [kUserRoom]?: string
}

/**
 * The rooms that tie sockets to sessions. Every socket joins, in its own namespace, its session's
 * room (and the user room, when configured); a session's sockets are then reached in every namespace
 * through the adapter, so on every node once the adapter is shared (Redis, ...).
 */
export interface SessionRooms {
  /** Joins the socket to its session's room, and to its user room if any. */
  join (socket: SessionSocket, session: FastifySessionObject): void
  /** Moves the socket to the user room its session gives now, if that changed. */
  rejoinUserRoom (socket: SessionSocket): void
  /** The session's connected sockets on this node, in every namespace. */
  localSockets (sessionId: string): SessionSocket[]
  /** Whether this node holds a socket of the session. */
  hasLocalSockets (sessionId: string): boolean
  /** Emits to the session's sockets on this node, in every namespace: each packet encoded once per namespace. */
  emitLocal (sessionId: string, event: string, payload: unknown): void
  /** The session's sockets in every namespace, on every node. */
  fetch (sessionId: string): Promise<SessionRemoteSocket[]>
}

export function createSessionRooms (io: SessionServer, opts: ResolvedOptions): SessionRooms {
  const { sessionRoom, userRoom } = opts

  return {
    join (socket, session) {
      const room = sessionRoom(session.sessionId)
      const user = userRoom?.(session, socket)
      if (user !== undefined) (socket as RoomedSocket)[kUserRoom] = user
      socket.join(user === undefined ? room : [room, user])
    },

    rejoinUserRoom (socket) {
      if (userRoom === undefined) return
      const roomed = socket as RoomedSocket
      const before = roomed[kUserRoom]
      const now = userRoom(socket.request.session, socket)
      if (now === before) return
      if (before !== undefined) socket.leave(before)
      roomed[kUserRoom] = now
      if (now !== undefined) socket.join(now)
    },

    localSockets (sessionId) {
      const room = sessionRoom(sessionId)
      const sockets: SessionSocket[] = []
      for (const nsp of namespacesOf(io)) {
        const members = nsp.adapter.rooms.get(room)
        if (members === undefined) continue
        for (const socketId of members) {
          const socket = nsp.sockets.get(socketId)
          if (socket !== undefined) sockets.push(socket)
        }
      }
      return sockets
    },

    hasLocalSockets (sessionId) {
      const room = sessionRoom(sessionId)
      for (const nsp of namespacesOf(io)) {
        if (nsp.adapter.rooms.has(room)) return true
      }
      return false
    },

    emitLocal (sessionId, event, payload) {
      const room = sessionRoom(sessionId)
      for (const nsp of namespacesOf(io)) {
        if (nsp.adapter.rooms.has(room)) nsp.local.to(room).emit(event, payload)
      }
    },

    async fetch (sessionId) {
      const room = sessionRoom(sessionId)
      const perNamespace = await Promise.all(Array.from(namespacesOf(io), (nsp) => nsp.in(room).fetchSockets()))
      return perNamespace.flat()
    }
  }
}
