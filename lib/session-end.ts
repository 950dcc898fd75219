import type { FastifyBaseLogger } from 'fastify'
import type { SessionEndReason, SessionSocket, SocketEndReason } from '../types/index'
import type { ResolvedOptions } from './options'
import type { SessionRooms } from './rooms'

/**
 * How sockets are ended. 'disconnect': the client sees 'io server disconnect' and does not reconnect
 * by itself (logout, login, an explicit disconnect, a refused re-authorization). 'close': the
 * transport is closed, the client sees 'transport close' and reconnects, and its new handshake goes
 * through the session parser and `authorize` again (a session found destroyed or expired).
 */
export type EndKind = 'disconnect' | 'close'

export interface SocketEnder {
  /** Ends this node's sockets of the session, in every namespace; returns how many. */
  endSession (sessionId: string, reason: SocketEndReason | string, kind: EndKind): number
  /** Ends one socket (its own namespace only): 'io server disconnect'. */
  endSocket (socket: SessionSocket, reason: SocketEndReason): void
}

/** The reasons for which a session itself ended, which `onSessionEnd` hears of. */
const sessionEnds = new Set<string>(['logout', 'regenerated', 'destroyed', 'expired'] satisfies SessionEndReason[])

/**
 * Ends sockets on this node for a session reason: each socket first gets the end event (`endEvent`,
 * with `{ reason }`), which the client receives before its 'disconnect', then is disconnected.
 * `onSessionEnd` is called once per session and node, when a session that ended had sockets here.
 */
export function createSocketEnder (rooms: SessionRooms, opts: ResolvedOptions, log: FastifyBaseLogger): SocketEnder {
  const { endEvent, onSessionEnd } = opts

  function tell (socket: SessionSocket, reason: string): void {
    if (endEvent !== false) socket.emit(endEvent, { reason })
  }

  /**
   * Disconnects the socket ('disconnect': the client is told 'io server disconnect') or closes its
   * connection ('close'). Closing the connection also disconnects the client's other namespaces, and
   * leaves no engine.io connection behind whose handshake session is stale. An application listener
   * ('disconnecting', 'disconnect') that throws while the socket is disconnected is logged, and the
   * connection is closed all the same; nothing is thrown on (on another node, it would be thrown into
   * the adapter's message handler, and the end would go unanswered).
   */
  function end (socket: SessionSocket, kind: EndKind, reason: string): void {
    try {
      if (kind === 'disconnect') {
        socket.disconnect(true)
        return
      }
    } catch (err) {
      log.error({ err, reason, namespace: socket.nsp.name, socketId: socket.id }, 'socket.io session: a disconnect listener threw')
    }
    socket.conn.close() // engine.io closes the transport first, and emits 'close' (where listeners run) after
  }

  return {
    endSession (sessionId, reason, kind) {
      const sockets = rooms.localSockets(sessionId).filter((socket) => socket.connected && socket.conn.readyState === 'open')
      if (sockets.length === 0) return 0
      if (endEvent !== false) rooms.emitLocal(sessionId, endEvent, { reason })
      for (const socket of sockets) end(socket, kind, reason)
      log.info({ reason, sockets: sockets.length }, 'socket.io session: sockets ended')
      if (onSessionEnd !== undefined && sessionEnds.has(reason)) {
        try {
          onSessionEnd(sessionId, reason as SessionEndReason)
        } catch (err) {
          log.error({ err }, 'socket.io session: onSessionEnd threw')
        }
      }
      return sockets.length
    },

    endSocket (socket, reason) {
      if (!socket.connected) return
      tell(socket, reason)
      socket.disconnect()
    }
  }
}
