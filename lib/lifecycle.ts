import type { FastifyBaseLogger } from 'fastify'
import type { SessionServer, SessionSocket } from '../types/index'
import type { ResolvedOptions } from './options'
import { createSessionEnd } from './session-end'
import { createEventHooks } from './session-events'
import { SessionQueue } from './session-queue'
import { SessionStoreAccess } from './session-store'
import { createSweep } from './session-sweep'

export interface Lifecycle {
  /** Takes charge of an admitted socket's session. */
  attach (socket: SessionSocket): void
  start (): void
  stop (): void
}

/**
 * The connected-session lifecycle: while a socket is connected its session stays true. Events are
 * wrapped with reload and save (session-events), each node sweeps its sockets' sessions for expiry
 * and keeps them alive (session-sweep), and the work of one session never interleaves (session-queue).
 */
export function createLifecycle (io: SessionServer, opts: ResolvedOptions, log: FastifyBaseLogger): Lifecycle {
  const store = new SessionStoreAccess()
  const queue = new SessionQueue()
  const endSession = createSessionEnd(io, opts, log)
  const hookEvents = opts.reloadOnEvent || opts.autoSave
    ? createEventHooks({ reloadOnEvent: opts.reloadOnEvent, autoSave: opts.autoSave, queue, store, endSession, log })
    : undefined
  const sweep = opts.validateInterval > 0
    ? createSweep({ io, interval: opts.validateInterval, keepAlive: opts.keepAlive, queue, store, endSession, log })
    : undefined

  let storeMissing = false
  return {
    attach (socket) {
      if (!store.ready && !storeMissing && !store.attach(socket.request.session)) {
        storeMissing = true
        log.error('fastify-socket.io-session: the @fastify/session store could not be found; reload, save and sweep are off')
      }
      hookEvents?.(socket)
    },
    start () { sweep?.start() },
    stop () { sweep?.stop() }
  }
}
