import type { FastifyBaseLogger } from 'fastify'
import type { SessionServer, SessionSocket } from '../types/index'
import type { Cluster } from './cluster'
import type { ResolvedOptions } from './options'
import type { SessionRooms } from './rooms'
import type { SocketEnder } from './session-end'
import { createEventHooks } from './session-events'
import { SessionQueue } from './session-queue'
import { createSessionRefresh } from './session-refresh'
import type { SessionStoreAccess } from './session-store'
import { createSweep } from './session-sweep'

export interface Lifecycle {
  /** Takes charge of an admitted socket's session. */
  attach (socket: SessionSocket): void
  /**
   * The session changed in the store: this node's sockets of it get `fields` (what was just saved) or,
   * without them, what the store holds, in the session's turn.
   */
  sync (sessionId: string, fields?: object): void
  start (): void
  stop (): void
}

export interface LifecycleDeps {
  io: SessionServer
  rooms: SessionRooms
  store: SessionStoreAccess
  ender: SocketEnder
  cluster: Cluster
  log: FastifyBaseLogger
}

/**
 * The connected-session lifecycle: while a socket is connected its session stays in step with the
 * store, and its authority with its session. Events are wrapped with reload and save
 * (session-events), fresh data is applied to the session's sockets and re-authorized
 * (session-refresh), each node sweeps its sockets' sessions for expiry and keeps them alive
 * (session-sweep), and the work of one session never interleaves (session-queue).
 */
export function createLifecycle (deps: LifecycleDeps, opts: ResolvedOptions): Lifecycle {
  const { io, rooms, store, ender, cluster, log } = deps
  const queue = new SessionQueue()
  const lose = (sessionId: string, reason: 'destroyed' | 'expired'): void => {
    cluster.end(sessionId, reason, 'close').catch((err: unknown) => log.error({ err }, 'socket.io session: ending a session failed'))
  }
  const refresh = createSessionRefresh({ rooms, store, ender, lose, log }, opts)
  const hookEvents = opts.reloadOnEvent || opts.autoSave
    ? createEventHooks({
      reloadOnEvent: opts.reloadOnEvent,
      autoSave: opts.autoSave,
      maxPendingEvents: opts.maxPendingEvents,
      saved: opts.syncSessions ? saved : undefined,
      queue,
      store,
      refresh,
      lose,
      ender,
      log
    })
    : undefined
  const sweep = opts.validateInterval > 0
    ? createSweep({ io, interval: opts.validateInterval, keepAlive: opts.keepAlive, queue, store, refresh, log })
    : undefined

  /** A socket's save changed the session: its sockets here get what was written, the other nodes reload it. */
  async function saved (sessionId: string, written: object): Promise<void> {
    await refresh.apply(sessionId, written)
    cluster.changed(sessionId)
  }

  let storeMissing = false
  return {
    attach (socket) {
      if (!store.ready && !store.attach(socket.request.session)) {
        if (!storeMissing) log.error('socket.io session: the @fastify/session store could not be found yet, reload, save and sweep are off until it is')
        storeMissing = true
        return // this socket's events run as they are, without reload or save (an HTTP request may bring the store for later sockets)
      }
      hookEvents?.(socket)
    },
    sync (sessionId, fields) {
      if (!rooms.hasLocalSockets(sessionId)) return
      if (fields === undefined && !store.ready) return
      const task = fields === undefined ? async () => { await refresh.check(sessionId) } : async () => { await refresh.apply(sessionId, fields) }
      queue.run(sessionId, task).catch((err: unknown) => log.warn({ err }, 'socket.io session: sync failed, the sweep will try again'))
    },
    start () { sweep?.start() },
    stop () { sweep?.stop() }
  }
}
