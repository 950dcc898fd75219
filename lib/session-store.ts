import type { FastifySessionObject, SessionStore } from '@fastify/session'
import { sessionStoreOf } from './session-internals'

/** Session data as a store holds it: the session's fields and its `cookie` (with the stored `expires`). */
export type SessionData = Record<string, unknown> & { cookie?: StoredCookie }

interface StoredCookie {
  expires?: Date | string | null
  originalMaxAge?: number | null
  toJSON?: () => Record<string, unknown>
}

/** A field a socket deleted from its session. */
export const DELETED = Symbol('deleted')
export type Changes = Map<string, unknown>

/**
 * The session store behind @fastify/session, for the work a socket's session needs between HTTP
 * requests: one read to check it still exists, writes that merge a socket's changes into what the
 * store holds now (never the socket's whole, possibly stale, copy), and keep-alive.
 *
 * @fastify/session gives its store to Fastify requests only (`request.sessionStore`); a socket has
 * a raw request, so the store is taken from the session object (session-internals).
 */
export class SessionStoreAccess {
  private store: SessionStore | undefined

  /** Finds the store from a session object (once); false if this @fastify/session hides it elsewhere. */
  attach (session: FastifySessionObject): boolean {
    this.store ??= sessionStoreOf(session)
    return this.store !== undefined
  }

  get ready (): boolean {
    return this.store !== undefined
  }

  async get (sessionId: string): Promise<SessionData | null> {
    const store = this.requireStore()
    return await new Promise((resolve, reject) => {
      store.get(sessionId, (err, data) => { err == null ? resolve((data ?? null) as SessionData | null) : reject(err) })
    })
  }

  async set (sessionId: string, data: SessionData): Promise<void> {
    const store = this.requireStore()
    await new Promise<void>((resolve, reject) => {
      store.set(sessionId, data as never, (err) => { err == null ? resolve() : reject(err) })
    })
  }

  async destroy (sessionId: string): Promise<void> {
    const store = this.requireStore()
    await new Promise<void>((resolve, reject) => {
      store.destroy(sessionId, (err) => { err == null ? resolve() : reject(err) })
    })
  }

  /**
   * Writes a socket's changes over what the store holds now, leaving every other field (and the
   * cookie) as it is there. Returns false, writing nothing, if the session is no longer in the store:
   * a socket never brings back a session that was destroyed.
   */
  async merge (sessionId: string, changes: Changes): Promise<boolean> {
    const current = await this.get(sessionId)
    if (current === null) return false
    const next = copyFields(current)
    for (const [key, value] of changes) {
      if (value === DELETED) delete next[key]
      else next[key] = value
    }
    await this.set(sessionId, next)
    return true
  }

  /** Writes the session back with its expiry moved to now + maxAge: the data just read, nothing else. */
  async extend (sessionId: string, current: SessionData, now: number, maxAge: number): Promise<void> {
    const next = copyFields(current)
    next.cookie = { ...cookieJson(current.cookie), expires: new Date(now + maxAge) }
    await this.set(sessionId, next)
  }

  private requireStore (): SessionStore {
    if (this.store === undefined) throw new Error('the @fastify/session store was not found')
    return this.store
  }
}

/** When the stored session expires (ms since the epoch), or undefined for a browser-session cookie. */
export function storedExpiry (data: SessionData): number | undefined {
  const expires = data.cookie?.expires
  if (expires === undefined || expires === null) return undefined
  const time = new Date(expires).getTime()
  return Number.isNaN(time) ? undefined : time
}

/** The session's maxAge (ms), which keep-alive renews, or undefined for a session without one. */
export function storedMaxAge (data: SessionData): number | undefined {
  const maxAge = cookieJson(data.cookie).originalMaxAge
  return typeof maxAge === 'number' && maxAge > 0 ? maxAge : undefined
}

function cookieJson (cookie: StoredCookie | undefined): Record<string, unknown> {
  if (cookie === undefined) return {}
  return typeof cookie.toJSON === 'function' ? cookie.toJSON() : { ...cookie }
}

/** The string-keyed fields of stored data (not the symbols a memory store's Session object carries). */
function copyFields (data: SessionData): SessionData {
  const copy: SessionData = {}
  for (const key of Object.keys(data)) copy[key] = data[key]
  return copy
}
