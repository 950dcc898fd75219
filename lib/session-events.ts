import { EventEmitter } from 'node:events'
import type { FastifyBaseLogger } from 'fastify'
import type { SessionSocket } from '../types/index'
import type { EndSession } from './session-end'
import type { SessionQueue } from './session-queue'
import { changesSince, snapshot } from './session-changes'
import type { SessionStoreAccess } from './session-store'
import { isStoredSession, markStoredSession } from './handshake'

type Listener = (...args: any[]) => unknown

const emitterOn = EventEmitter.prototype.on
const emitterOnce = EventEmitter.prototype.once

/** Socket events that are the socket's own life, not messages: their listeners are left alone. */
const lifeEvents = new Set(['disconnect', 'disconnecting', 'error', 'newListener', 'removeListener'])

interface EventHookOptions {
  reloadOnEvent: boolean
  autoSave: boolean
  queue: SessionQueue
  store: SessionStoreAccess
  endSession: EndSession
  log: FastifyBaseLogger
}

/**
 * Around each incoming event's handlers, per session and in order: reload the session from the store
 * (`reloadOnEvent`), run the handler (synchronous, async, or with an acknowledgement, which is sent
 * once the session is saved), then save what the handler changed (`autoSave`), merged into what the
 * store holds now. A session found destroyed or expired instead ends its sockets; the event is dropped.
 *
 * The handlers are wrapped where they are added, with the socket's `on` and `once`: Socket.IO tells
 * nobody when an async handler completes, but its returned promise does.
 */
export function createEventHooks (options: EventHookOptions): (socket: SessionSocket) => void {
  const { reloadOnEvent, autoSave, queue, store, endSession, log } = options

  async function reload (socket: SessionSocket): Promise<boolean> {
    const request = socket.request
    const sessionId = request.session.sessionId
    await request.session.reload() // replaces request.session
    const fresh = request.session
    const storedExpiry = (fresh.cookie as { originalExpires?: Date }).originalExpires
    if (storedExpiry !== undefined && storedExpiry.getTime() <= Date.now()) {
      endSession(sessionId, 'expired')
      return false
    }
    // @fastify/session reloads a destroyed session as an empty one: only an empty one needs a check.
    if (Object.keys(fresh).length <= 1 && await store.get(sessionId) === null) {
      endSession(sessionId, 'destroyed')
      return false
    }
    return true
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
    } else if (!await store.merge(session.sessionId, changes)) {
      endSession(session.sessionId, 'destroyed') // never written back: no resurrection
    }
  }

  async function handle (socket: SessionSocket, listener: Listener, self: unknown, args: unknown[]): Promise<void> {
    if (socket.conn.readyState !== 'open') return // its session ended while the event waited
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
      queue.run(sessionId, () => handle(socket, listener, this, args)).catch((err: unknown) => {
        log.error({ err, namespace: socket.nsp.name, socketId: socket.id }, 'socket.io event handler failed')
      })
    }
    // EventEmitter's off()/removeListener() and listeners() see the handler the user added.
    return Object.assign(wrapped, { listener })
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
