import type { FastifyBaseLogger } from 'fastify'
import type { FastifySessionObject } from '@fastify/session'
import type { SessionSocket } from '../types/index'
import type { ResolvedOptions } from './options'
import { createPassportUser } from './passport'
import type { SessionRooms } from './rooms'
import type { SocketEnder } from './session-end'
import { loadedExpiry } from './session-internals'
import { storedExpiry, type SessionData, type SessionStoreAccess } from './session-store'

/** Ends a session found destroyed or expired, on every node. */
export type LoseSession = (sessionId: string, reason: 'destroyed' | 'expired') => void

export interface SessionRefresh {
  /**
   * Reads the session from the store and acts on what it finds: gone or expired, its sockets are ended
   * (everywhere); alive, it is applied to this node's sockets of it, which are re-authorized. Returns
   * the data read, or null for a session that ended.
   */
  check (sessionId: string, knownExpiry?: number): Promise<SessionData | null>
  /** Applies fields the store holds now (just read or written) to this node's sockets of the session, then re-authorizes them. */
  apply (sessionId: string, fields: object): Promise<void>
}

export interface RefreshDeps {
  rooms: SessionRooms
  store: SessionStoreAccess
  ender: SocketEnder
  lose: LoseSession
  log: FastifyBaseLogger
}

/**
 * Live authority: whenever fresh data of a connected session is read (a sync, the sweep,
 * `reloadOnEvent`) or written (a socket's save), every socket of that session on this node gets the
 * fields in its own `socket.request.session` (in place: references the application holds stay
 * current), and goes through Passport's deserializer, `authorize` and `userRoom` again. A socket that
 * `authorize` refuses now is disconnected ('unauthorized'); one whose user room changed moves. An
 * `authorize` that fails leaves the socket as it is until the next check: a database blip must not
 * disconnect everyone.
 */
export function createSessionRefresh (deps: RefreshDeps, opts: ResolvedOptions): SessionRefresh {
  const { rooms, store, ender, lose, log } = deps
  const { authorize } = opts
  const deserializeUser = opts.passport === undefined ? undefined : createPassportUser(opts.passport)

  async function reauthorize (socket: SessionSocket, session: FastifySessionObject): Promise<void> {
    try {
      if (deserializeUser !== undefined) await deserializeUser(socket, session)
      if (authorize !== undefined && await authorize(session, socket) !== true) {
        log.info({ namespace: socket.nsp.name, socketId: socket.id }, 'socket.io session: socket no longer authorized')
        return ender.endSocket(socket, 'unauthorized')
      }
      if (socket.connected) rooms.rejoinUserRoom(socket)
    } catch (err) {
      log.error({ err, namespace: socket.nsp.name, socketId: socket.id }, 'socket.io session: re-authorization failed')
    }
  }

  async function apply (sessionId: string, fields: object): Promise<void> {
    await Promise.all(rooms.localSockets(sessionId).map(async (socket) => {
      const session = socket.request.session
      if (!socket.connected || session == null) return
      if (session !== fields) copyFieldsInto(session, fields)
      await reauthorize(socket, session)
    }))
  }

  return {
    apply,

    async check (sessionId, knownExpiry = loadedExpiryOf(rooms.localSockets(sessionId)[0])) {
      const data = await store.get(sessionId)
      const now = Date.now()
      if (data === null) {
        // Gone from the store: a store with TTLs drops expired sessions itself.
        lose(sessionId, knownExpiry !== undefined && knownExpiry <= now ? 'expired' : 'destroyed')
        return null
      }
      const expiry = storedExpiry(data)
      if (expiry !== undefined && expiry <= now) {
        await store.destroy(sessionId)
        lose(sessionId, 'expired')
        return null
      }
      await apply(sessionId, data)
      return data
    }
  }
}

/** The expiry (ms) a socket's session was loaded with. */
export function loadedExpiryOf (socket: SessionSocket | undefined): number | undefined {
  const session = socket?.request.session
  return session == null ? undefined : loadedExpiry(session)
}

/**
 * Makes a session's fields those of `fields` (the cookie aside: it is the session's metadata), in
 * place. `__proto__` is never assigned: a stored `__proto__` field would set the session's prototype.
 */
function copyFieldsInto (session: FastifySessionObject, fields: object): void {
  const target = session as unknown as Record<string, unknown>
  const source = fields as Record<string, unknown>
  for (const key of Object.keys(target)) {
    if (key !== 'cookie' && !Object.hasOwn(source, key)) delete target[key]
  }
  for (const key of Object.keys(source)) {
    if (key !== 'cookie' && key !== '__proto__') target[key] = source[key]
  }
}
