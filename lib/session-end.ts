import type { FastifyBaseLogger } from 'fastify'
import type { SessionEndReason, SessionServer } from '../types/index'
import type { ResolvedOptions } from './options'

/** Ends, on this node, the sockets of a session that was destroyed or has expired. */
export type EndSession = (sessionId: string, reason: SessionEndReason) => void

/**
 * Closes the transports of the session's sockets on this node, in every namespace: clients see a
 * transport close (not 'io server disconnect'), so they reconnect, and their new handshake goes
 * through the session parser and `authorize` again. `onSessionEnd` is called once per session: a
 * session whose sockets are already closing has nothing left to end.
 */
export function createSessionEnd (io: SessionServer, opts: ResolvedOptions, log: FastifyBaseLogger): EndSession {
  const { sessionRoom, onSessionEnd } = opts
  return function endSession (sessionId, reason) {
    const room = sessionRoom(sessionId)
    let closed = 0
    for (const nsp of io._nsps.values()) {
      const members = nsp.adapter.rooms.get(room)
      if (members === undefined) continue
      for (const socketId of members) {
        const conn = nsp.sockets.get(socketId)?.conn
        if (conn?.readyState === 'open') {
          conn.close()
          closed++
        }
      }
    }
    if (closed === 0) return
    log.info({ reason, sockets: closed }, 'socket.io session ended: its sockets were closed')
    try {
      onSessionEnd?.(sessionId, reason)
    } catch (err) {
      log.error({ err }, 'onSessionEnd threw')
    }
  }
}
