import { EventEmitter } from 'node:events'
import type { FastifyBaseLogger } from 'fastify'
import type { SessionSocket } from '../types/index'
import type { SocketEnder } from './session-end'
import type { SessionQueue } from './session-queue'
import { changesSince, snapshot } from './session-changes'
import { loadedExpiryOf, type LoseSession, type SessionRefresh } from './session-refresh'
import type { SessionStoreAccess } from './session-store'
import { isStoredSession, markStoredSession } from './connection-state'

type Listener = (...args: any[]) => unknown

const emitterOn = EventEmitter.prototype.on
const emitterOnce = EventEmitter.prototype.once

/** Socket events that are the socket's own life, not messages: their listeners are left alone. */
const lifeEvents = new Set(['disconnect', 'disconnecting', 'error', 'newListener', 'removeListener'])

interface EventHookOptions {
  reloadOnEvent: boolean
  autoSave: boolean
  maxPendingEvents: number
  queue: SessionQueue
  store: SessionStoreAccess
  refresh: SessionRefresh
  /** Called after a socket's save changed the session (the other nodes' sockets sync), if they sync. */
  saved: ((sessionId: string, written: object) => Promise<void>) | undefined
  lose: LoseSession
  ender: SocketEnder
  log: FastifyBaseLogger
}

/**
 * Around each incoming event's handlers, per session and in order: reload the session from the store
 * (`reloadOnEvent`), run the handler (synchronous, async, or with an acknowledgement, which is sent
 * once the session is saved), then save what the handler changed (`autoSave`), merged into what the
 * store holds now. A session found destroyed or expired instead ends its sockets; the event is dropped.
 * What a reload or a save brings is applied to the session's other sockets on this node, which are
 * re-authorized (session-refresh).
 *
 * A socket may have `maxPendingEvents` events waiting for their turn: one more, and it is
 * disconnected ('overloaded'), so that a client that sends faster than its events complete cannot
 * make memory grow without bound.
 *
 * The handlers are wrapped where they are added, with the socket's `on` and `once`: Socket.IO tells
 * nobody when an async handler completes, but its returned promise does.
 */
export function createEventHooks (options: EventHookOptions): (socket: SessionSocket) => void {
  const { reloadOnEvent, autoSave, maxPendingEvents, queue, store, refresh, saved, lose, ender, log } = options
  /** How many events of each socket wait for their turn in its session's queue: only sockets that have some. */
  const waiting = new Map<SessionSocket, number>()

  async function reload (socket: SessionSocket): Promise<boolean> {
    const request = socket.request
    const sessionId = request.session.sessionId
    await request.session.reload() // replaces request.session
    const fresh = request.session
    const expiry = loadedExpiryOf(socket)
    if (expiry !== undefined && expiry <= Date.now()) {
      lose(sessionId, 'expired')
      return false
    }
    // @fastify/session reloads a destroyed session as an empty one: only an empty one needs a check.
    if (Object.keys(fresh).length <= 1 && await store.get(sessionId) === null) {
      lose(sessionId, 'destroyed')
      return false
    }
    await refresh.apply(sessionId, fresh)
    return socket.connected // still authorized
  }

  async function save (socket: SessionSocket, before: Map<string, string>): Promise<void> {
    const request = socket.request
    const session = request.session
    if (session == null) return // destroyed by the handler itself
    const changes = changesSince(before, session)
    if (changes.size === 0) return
    if (!isStoredSession(request)) {
      await session.save() // a new session's first write: there is nothing to merge with
      markStoredSession(request)
      return
    }
    const written = await store.merge(session.sessionId, changes)
    if (written === null) return lose(session.sessionId, 'destroyed') // never written back: no resurrection
    await saved?.(session.sessionId, written)
  }

  async function handle (socket: SessionSocket, listener: Listener, self: unknown, args: unknown[]): Promise<void> {
    if (!socket.connected || socket.conn.readyState !== 'open') return // its session ended while the event waited
    if (reloadOnEvent && isStoredSession(socket.request) && !await reload(socket)) return
    const before = autoSave ? snapshot(socket.request.session) : undefined
    const ack = deferAck(args)
    await listener.apply(self, args)
    if (before !== undefined) await save(socket, before)
    ack.flush()
  }

  function wrap (socket: SessionSocket, listener: Listener): Listener {
    const wrapped = function (this: unknown, ...args: unknown[]): void {
      const sessionId = socket.request.session?.sessionId
      if (sessionId === undefined) return listener.apply(this, args) as void // no session left to manage
      const waits = waiting.get(socket) ?? 0
      if (waits >= maxPendingEvents) return overloaded(socket, waits)
      waiting.set(socket, waits + 1)
      queue.run(sessionId, () => {
        const left = (waiting.get(socket) as number) - 1 // counted above, before its turn could come
        if (left === 0) waiting.delete(socket)
        else waiting.set(socket, left)
        return handle(socket, listener, this, args)
      }).catch((err: unknown) => {
        log.error({ err, namespace: socket.nsp.name, socketId: socket.id }, 'socket.io session: event handler failed')
      })
    }
    // EventEmitter's off()/removeListener() and listeners() see the handler the user added.
    return Object.assign(wrapped, { listener })
  }

  function overloaded (socket: SessionSocket, waits: number): void {
    if (!socket.connected) return
    log.warn({ namespace: socket.nsp.name, socketId: socket.id, waiting: waits }, 'socket.io session: too many events waiting, socket disconnected')
    ender.endSocket(socket, 'overloaded')
  }

  // Shared by every socket (a method, not a closure per socket): only two properties per socket.
  function on (this: SessionSocket, event: string, listener: Listener): SessionSocket {
    return emitterOn.call(this, event, lifeEvents.has(event) ? listener : wrap(this, listener)) as SessionSocket
  }
  function once (this: SessionSocket, event: string, listener: Listener): SessionSocket {
    return emitterOnce.call(this, event, lifeEvents.has(event) ? listener : wrap(this, listener)) as SessionSocket
  }

  return function hookEvents (socket) {
    socket.on = on as typeof socket.on
    socket.once = once as typeof socket.once
  }
}

/** Holds back the acknowledgement the handler sends until the session is saved. */
function deferAck (args: unknown[]): { flush: () => void } {
  const last = args.length - 1
  const ack = args[last]
  if (typeof ack !== 'function') return { flush () {} }
  let flushed = false
  let pending: unknown[] | undefined
  args[last] = (...values: unknown[]) => {
    if (flushed) ack(...values)
    else pending = values
  }
  return {
    flush () {
      flushed = true
      if (pending !== undefined) ack(...pending)
    }
  }
}
