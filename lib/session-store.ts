import type { FastifySessionObject, SessionStore } from '@fastify/session'
import type { FastifyBaseLogger } from 'fastify'
import { sessionStoreOf } from './session-internals'

/**
 * Session data as a store holds it: the session's fields and its `cookie` (with the stored `expires`).
 * What a store returns is one only once isSessionData says so (`get` checks it).
 */
export type SessionData = Record<string, unknown> & { cookie: StoredCookie }

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

  /** `log` receives a warning for data the store returns that is not a session (treated as none). */
  constructor (private readonly log?: FastifyBaseLogger) {}

  /** Finds the store from a session object (once); false if this @fastify/session hides it elsewhere. */
  attach (session: FastifySessionObject): boolean {
    this.store ??= sessionStoreOf(session)
    return this.store !== undefined
  }

  /** Uses the store found by other means (session-internals' findSessionStore), if any. */
  use (store: SessionStore | undefined): void {
    this.store ??= store
  }

  get ready (): boolean {
    return this.store !== undefined
  }

  async get (sessionId: string): Promise<SessionData | null> {
    const store = this.requireStore()
    return await new Promise((resolve, reject) => {
      store.get(sessionId, (err, data) => { err == null ? resolve(this.sessionData(data)) : reject(err) })
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
   * cookie) as it is there, and returns what it wrote. Returns null, writing nothing, if the session is
   * no longer in the store: a socket never brings back a session that was destroyed.
   */
  async merge (sessionId: string, changes: Changes): Promise<SessionData | null> {
    const current = await this.get(sessionId)
    if (current === null) return null
    const next = copyFields(current)
    for (const [key, value] of changes) {
      if (value === DELETED) delete next[key]
      else setField(next, key, value)
    }
    await this.set(sessionId, next)
    return next
  }

  /** Writes the session back with its expiry moved to now + maxAge: the data just read, nothing else. */
  async extend (sessionId: string, current: SessionData, now: number, maxAge: number): Promise<void> {
    const next = copyFields(current)
    next.cookie = { ...cookieJson(current.cookie), expires: new Date(now + maxAge) }
    await this.set(sessionId, next)
  }

  /** What the store returned, or null for nothing or for data that is not a session (logged). */
  private sessionData (data: unknown): SessionData | null {
    if (data === undefined || data === null) return null
    if (isSessionData(data)) return data
    if (this.log !== undefined) warnNotASession(this.log, data)
    return null
  }

  private requireStore (): SessionStore {
    if (this.store === undefined) throw new Error('the @fastify/session store was not found')
    return this.store
  }
}

/** Logs data a store returned that is not a session (no cookie object): it is treated as no session. */
export function warnNotASession (log: FastifyBaseLogger, data: unknown): void {
  log.warn({ type: Array.isArray(data) ? 'array' : typeof data }, 'socket.io session: the store returned data that is not a session, treated as no session')
}

/** When the stored session expires (ms since the epoch), or undefined for a browser-session cookie. */
export function storedExpiry (data: SessionData): number | undefined {
  const expires = data.cookie.expires
  // A date: isSessionData refused any other expiry.
  return expires === undefined || expires === null ? undefined : new Date(expires).getTime()
}

/** The session's maxAge (ms), which keep-alive renews, or undefined for a session without one. */
export function storedMaxAge (data: SessionData): number | undefined {
  const maxAge = cookieJson(data.cookie).originalMaxAge
  return typeof maxAge === 'number' && maxAge > 0 ? maxAge : undefined
}

/** The stored cookie's fields: a store that keeps live sessions (the memory store) holds a Cookie, whose toJSON() has them. */
function cookieJson (cookie: StoredCookie): Record<string, unknown> {
  return typeof cookie.toJSON === 'function' ? cookie.toJSON() : { ...cookie }
}

/** The string-keyed fields of stored data (not the symbols a memory store's Session object carries). */
function copyFields (data: SessionData): SessionData {
  const copy: Record<string, unknown> = {}
  for (const key of Object.keys(data)) setField(copy, key, data[key])
  return copy as SessionData // its cookie copied with the rest
}

/** Sets a field as an own property, whatever its name: `copy['__proto__'] = x` would replace copy's prototype. */
function setField (target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true })
}

/**
 * Whether data a store returned can be a session: an object (not an array) with a cookie object whose
 * `expires`, if any, is a date. @fastify/session would make a session of anything else too (the
 * characters of a string as fields, an unparsable expiry as no expiry at all): this plugin treats it as
 * no session.
 */
export function isSessionData (data: unknown): data is SessionData {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return false
  const cookie: unknown = (data as SessionData).cookie
  if (typeof cookie !== 'object' || cookie === null || Array.isArray(cookie)) return false
  const expires = (cookie as StoredCookie).expires
  return expires === undefined || expires === null || !Number.isNaN(new Date(expires).getTime())
}
