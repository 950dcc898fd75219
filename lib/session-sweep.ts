import type { FastifyBaseLogger } from 'fastify'
import { setImmediate as yieldToEventLoop } from 'node:timers/promises'
import type { SessionServer } from '../types/index'
import type { SessionQueue } from './session-queue'
import { loadedExpiryOf, type SessionRefresh } from './session-refresh'
import { storedExpiry, storedMaxAge, type SessionStoreAccess } from './session-store'
import { isStoredSession } from './connection-state'
import { namespacesOf } from './socketio-internals'

interface SweepOptions {
  io: SessionServer
  interval: number
  keepAlive: boolean
  queue: SessionQueue
  store: SessionStoreAccess
  refresh: SessionRefresh
  log: FastifyBaseLogger
}

/**
 * Sessions checked at once: their store reads are in flight together, then the event loop breathes
 * (with a synchronous store such as the memory store, a batch runs in one go: keep it short).
 */
const BATCH = 32
/** Sockets looked at between two yields while the sessions are gathered. */
const SOCKETS_PER_TICK = 1000

/**
 * Every `interval`, this node checks the sessions of its own connected sockets against the store:
 * one read per distinct session (never one per socket), in batches that yield to the event loop.
 * A session that was destroyed or has expired ends its sockets here; one that is alive is applied to
 * its sockets, which are re-authorized (session-refresh); with `keepAlive`, one that is
 * alive and has used half its maxAge gets its stored expiry (the `cookie.expires` @fastify/session
 * checks on load) moved to now + maxAge, written from the data just read. An unreachable store ends
 * nobody: the sweep logs and tries again at the next interval.
 */
export function createSweep (options: SweepOptions): { start: () => void, stop: () => void } {
  const { io, interval, keepAlive, queue, store, refresh, log } = options
  const timeout = Math.max(interval, 5000)
  let timer: NodeJS.Timeout | undefined
  let running = false

  /**
   * The distinct stored sessions of this node's sockets, with the expiry each was loaded with,
   * gathered a slice of sockets at a time.
   */
  async function connectedSessions (): Promise<Map<string, number | undefined>> {
    const sessions = new Map<string, number | undefined>()
    let seen = 0
    for (const nsp of namespacesOf(io)) {
      // Each socket is read before a yield, never after: one closed while the sweep yielded has left
      // `nsp.sockets` (the namespace's connected sockets), and this live iterator skips it.
      for (const socket of nsp.sockets.values()) {
        const request = socket.request
        const session = request.session
        if (session != null && isStoredSession(request) && !sessions.has(session.sessionId)) {
          sessions.set(session.sessionId, loadedExpiryOf(socket))
        }
        if (++seen % SOCKETS_PER_TICK === 0) await yieldToEventLoop()
      }
    }
    return sessions
  }

  async function check (sessionId: string, knownExpiry: number | undefined): Promise<void> {
    const data = await refresh.check(sessionId, knownExpiry)
    if (data === null || !keepAlive) return
    const now = Date.now()
    const expiry = storedExpiry(data)
    // Renewed once it has less than half its maxAge left (and never less than two checks' worth): a
    // connected user never expires, and a session is written once per half maxAge, not at every check.
    const maxAge = storedMaxAge(data)
    if (maxAge !== undefined && (expiry === undefined || expiry - now < Math.max(maxAge / 2, 2 * interval))) {
      await store.extend(sessionId, data, now, maxAge)
    }
  }

  async function sweep (): Promise<void> {
    if (running || !store.ready) return
    running = true
    let failures = 0
    let lastError: unknown
    try {
      const sessions = Array.from(await connectedSessions())
      await yieldToEventLoop()
      for (let start = 0; start < sessions.length; start += BATCH) {
        const batch = sessions.slice(start, start + BATCH)
        const checked = Promise.all(batch.map(([sessionId, knownExpiry]) =>
          queue.run(sessionId, () => check(sessionId, knownExpiry)).catch((err: unknown) => {
            failures++
            lastError = err
          })
        ))
        // A store that does not answer must not stall the sweep for good.
        await withTimeout(checked, timeout).catch((err: unknown) => {
          failures += batch.length
          lastError = err
        })
        await yieldToEventLoop()
      }
      if (failures > 0) {
        log.warn({ err: lastError, failures }, 'socket.io session: sweep skipped, the store failed and nobody was disconnected for it')
      }
    } finally {
      running = false
    }
  }

  return {
    start () {
      timer = setInterval(() => { sweep().catch((err: unknown) => log.error({ err }, 'socket.io session: sweep failed')) }, interval)
      timer.unref()
    },
    stop () {
      clearInterval(timer)
    }
  }
}

async function withTimeout<T> (promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`the session store did not answer within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, expired])
  } finally {
    clearTimeout(timer)
  }
}
