import type { SerializeOptions } from '@fastify/cookie'
import type { FastifySessionObject, SessionStore } from '@fastify/session'
import type { FastifyInstance } from 'fastify'
import type { IncomingMessage } from 'node:http'

/*
 * What this plugin needs of @fastify/session that it does not expose. Everything that depends on
 * @fastify/session's private state is in this file, and test/internals.test.ts fails, naming what
 * changed, if a new version of @fastify/session no longer matches it.
 *
 * 1. The symbols its Session objects keep their store and cookie options under, found by their
 *    descriptions ('sessionStore', 'cookieOpts', stable since @fastify/session 8) on the first session
 *    seen. If a future version renames them, the lifecycle logs that it found no store, and the
 *    compaction below does nothing.
 * 2. A cheaper way to build the session restored from the store on each handshake (sessionFactoryOf),
 *    field for field what `new Session(...)` builds, used only when a session @fastify/session built
 *    shows exactly the layout it was written for; otherwise the handshake calls `decryptSession` as is.
 * 3. The hash of a session's fields it keeps under 'persistedHash' (savedVersionOf), which tells live
 *    authority that an HTTP request saved a change; without it, the fields are compared as JSON.
 * 4. That a cookie which does not verify gives at once a fresh session carrying the store
 *    (findSessionStore), so that the store is known before any socket connects.
 * 5. Two members of its Cookie class (lib/cookie.js): `toJSON()`, the attributes it sets the cookie
 *    with (cookieAttributesOf), and `originalExpires`, the expiry the session was loaded with
 *    (loadedExpiry), which it checks for an expired session.
 * 6. Two members of @fastify/cookie's Signer, `signingKey` and `secrets` (signerKeys, sameSignerKeys), which tell the
 *    loader when cookies it verified before must be verified again.
 */

const keys = new Map<string, symbol | undefined>()

function privateKey (session: object, description: string): symbol | undefined {
  if (!keys.has(description)) {
    const key = Object.getOwnPropertySymbols(session).find((symbol) => symbol.description === description)
    if (key === undefined) return undefined
    keys.set(description, key)
  }
  return keys.get(description)
}

/** The store behind @fastify/session (which gives it to Fastify requests only, not to a raw socket request). */
export function sessionStoreOf (session: FastifySessionObject): SessionStore | undefined {
  const key = privateKey(session, 'sessionStore')
  const store = key === undefined ? undefined : (session as unknown as Record<symbol, SessionStore | undefined>)[key]
  return typeof store?.get === 'function' && typeof store.set === 'function' ? store : undefined
}

/**
 * The attributes a session's cookie is set with: @fastify/session passes its Cookie's `toJSON()` to
 * `reply.setCookie`.
 */
export function cookieAttributesOf (session: FastifySessionObject): SerializeOptions {
  return (session.cookie as unknown as { toJSON (): SerializeOptions }).toJSON()
}

/**
 * When the session expired as it was loaded from the store (ms since the epoch; touches since do not
 * move it): its Cookie's `originalExpires`, which @fastify/session checks before `expires` to find an
 * expired session. Undefined for a browser-session cookie, and for a session not loaded from the store.
 */
export function loadedExpiry (session: FastifySessionObject): number | undefined {
  return (session.cookie as { originalExpires?: Date }).originalExpires?.getTime()
}

/**
 * A session restored from the store keeps a copy of its cookie options from which @fastify/session
 * deletes two keys, which makes V8 turn it into a slow dictionary-mode object: about 0.85 KB per
 * socket for as long as the socket lives. The same options, copied into a plain object, take a tenth.
 * (Sessions built by sessionFactoryOf's `restore` have plain options already.)
 */
export function compactCookieOptions (session: FastifySessionObject): void {
  const key = privateKey(session, 'cookieOpts')
  if (key === undefined) return
  const holder = session as unknown as Record<symbol, object>
  holder[key] = { ...holder[key] }
}

/**
 * A version of the session's fields as last loaded or saved: @fastify/session keeps a hash of them
 * (without the cookie) under the 'persistedHash' symbol, renewed on each save. Two different values
 * before and after a request mean the request saved a change of the fields (not only of the cookie,
 * as a rolling session does). Undefined if this @fastify/session keeps no such hash.
 */
export function savedVersionOf (session: FastifySessionObject): string | undefined {
  const key = privateKey(session, 'persistedHash')
  const version = key === undefined ? undefined : (session as unknown as Record<symbol, unknown>)[key]
  return typeof version === 'string' ? version : undefined
}

/**
 * The store behind @fastify/session before any socket or request has brought a session: a cookie
 * value that does not verify makes `decryptSession` build a fresh session at once, without the store,
 * and that session carries the store.
 */
export function findSessionStore (decryptSession: FastifyInstance['decryptSession']): SessionStore | undefined {
  const request: { headers: object, session?: FastifySessionObject } = { headers: {} }
  try {
    decryptSession('', request, () => {})
    // No session at once (a signer that takes even '' to the store) throws here too.
    return sessionStoreOf(request.session as FastifySessionObject)
  } catch {
    return undefined // a custom idGenerator that needs a real request
  }
}

// ---------------------------------------------------------------------------------------------
// Building restored sessions without @fastify/session's constructor.

/** @fastify/cookie's Signer, as @fastify/session uses it. */
export interface CookieSigner {
  sign (value: string): string
  unsign (signedValue: string): { valid: boolean, renew: boolean, value: string | null }
}

/**
 * What @fastify/cookie's Signer checks and signs with: `signingKey`, its first secret when it was
 * built (what `sign` uses), then `secrets`, the very array given as @fastify/session's `secret`
 * option, which `unsign` reads on each call (@fastify/session's README suggests rotating secrets by
 * changing that array in place). A cookie verified before still verifies, and is still `sign(id)`,
 * only while this list is the same and its first two entries are the same key. Undefined for a
 * signer without these members.
 */
export function signerKeys (signer: CookieSigner): unknown[] | undefined {
  const { signingKey, secrets } = signer as unknown as { signingKey?: unknown, secrets?: unknown }
  return Array.isArray(secrets) && signingKey !== undefined ? [signingKey, ...secrets] : undefined
}

/** Whether a Signer's keys are still `seen` (what signerKeys gave): compared in place, nothing copied (once per handshake). */
export function sameSignerKeys (signer: CookieSigner, seen: readonly unknown[]): boolean {
  const { signingKey, secrets } = signer as unknown as { signingKey: unknown, secrets: unknown[] }
  if (signingKey !== seen[0] || secrets.length !== seen.length - 1) return false
  for (let i = 0; i < secrets.length; i++) {
    if (secrets[i] !== seen[i + 1]) return false
  }
  return true
}

type AnyRecord = Record<PropertyKey, any>

/**
 * The symbols of a session built by `new Session(...)` without stored data, in the order the
 * constructor adds them (descriptions as in @fastify/session 11's lib/session.js). Another set, or
 * another order, and sessionFactoryOf declines.
 */
export const sessionSymbolLayout = ['sessionStore', 'generateId', 'cookieOpts', 'cookieSignerKey', 'request', 'sessionId', 'encryptedSessionId', 'saved', 'persistedHash'] as const

/** The Session prototype's own symbol-keyed method that computes the change-detection hash. */
export const sessionHashMethod = 'hash'

/** Sessions whose fields take more JSON than this are hashed each time (their key is not kept). */
const fieldsKeyMax = 2048

/** The keys of the Cookie class's instances (lib/cookie.js), in order, for a cookie with a maxAge. */
export const cookieLayout = ['path', 'secure', 'sameSite', 'domain', 'httpOnly', 'partitioned', '_expires', 'originalExpires', 'originalMaxAge'] as const

export interface CookieOptionsPair {
  /** restoredCookieOpts: what the Cookie is built from (only read). */
  merged: AnyRecord
  /** The session's own copy (never changed in place by @fastify/session). */
  own: AnyRecord
  /** Whether `own` has string keys only, so that sameCookieOptions can tell it equal to another. */
  shareable: boolean
}

export interface SessionFactory {
  store: SessionStore
  signer: CookieSigner
  /** Whether `signer` is @fastify/cookie's Signer: `unsign` is then a pure function of its input and of its keys (signerKeys), and a valid, non-renewed cookie is exactly `sign(id)` while its first secret is its signing key. */
  standardSigner: boolean
  /**
   * The session `new Session(store, request, idGenerator, cookieOpts, signer, data, sessionId)`
   * builds from stored `data`, property for property, at a fraction of its cost. `signed`, when
   * given, is what `signer.sign(sessionId)` returns (the cookie, verified with the current secret);
   * `hash` gives the session's change-detection hash: `computeHash(session)`, or the hash of a
   * session with the same fields (see `fieldsKey`). `options`
   * are `cookieOptionsFor(data)`, or equal ones: `own` is the session's private copy of its cookie
   * options, an object @fastify/session only ever replaces (never changes in place), so equal ones
   * may be shared; `merged` is only read, by the Cookie constructor.
   */
  restore (request: IncomingMessage, data: AnyRecord, sessionId: string, signed: string | undefined, hash: (session: FastifySessionObject) => string, options: CookieOptionsPair): FastifySessionObject
  /** The cookie options a session restored from `data` gets. */
  cookieOptionsFor (data: AnyRecord): CookieOptionsPair
  /** @fastify/session's change-detection hash of the session's fields (stringify + SHA-256): what `new Session` keeps. */
  computeHash (session: FastifySessionObject): string
  /**
   * A cheaper key of the same fields: two sessions with the same key have the same hash (the key is
   * each field's JSON in order; equal JSON means equal input to @fastify/session's stable stringify).
   * Undefined for fields JSON cannot encode, or too long to keep.
   */
  fieldsKey (session: FastifySessionObject): string | undefined
}

/**
 * Finds, on `fresh` (a new session @fastify/session built with no stored data, for the plugin's
 * cookie options), what `restore` needs: the Session and Cookie classes, the private symbols, the
 * store, the id generator, the signer and the cookie options. Null if the layout is not the one
 * this was written for (a future @fastify/session): the caller then keeps calling `decryptSession`.
 */
export function sessionFactoryOf (fresh: FastifySessionObject, standardSigner: (signer: unknown) => boolean): SessionFactory | null {
  const session = fresh as unknown as AnyRecord
  const symbols = Object.getOwnPropertySymbols(session)
  if (symbols.length !== sessionSymbolLayout.length || symbols.some((s, i) => s.description !== sessionSymbolLayout[i])) return null
  if (Object.keys(session).join() !== 'cookie') return null
  const [kStore, kGenerateId, kCookieOpts, kSigner, kRequest, kSessionId, kEncrypted, kSaved, kPersistedHash] = symbols
  const proto = Object.getPrototypeOf(session) as AnyRecord
  const kHash = Object.getOwnPropertySymbols(proto).find((s) => s.description === sessionHashMethod)
  if (kHash === undefined || typeof proto[kHash] !== 'function' || typeof proto.regenerate !== 'function') return null
  const Cookie = (session.cookie as object).constructor as new (options: AnyRecord, request: IncomingMessage) => object
  const store = session[kStore] as SessionStore
  const idGenerator = session[kGenerateId] as unknown
  const signer = session[kSigner] as CookieSigner
  if (typeof Cookie !== 'function' || typeof store?.get !== 'function' || typeof signer?.sign !== 'function' || typeof signer.unsign !== 'function') return null
  const baseCookieOpts = Object.assign({}, session[kCookieOpts] as AnyRecord)

  // A constructor of its own, with Session.prototype: `instanceof Session` holds, and V8 sizes these
  // objects for their properties (an Object.create() object would keep them out of line).
  const RestoredSession = function (this: AnyRecord, request: IncomingMessage, sessionId: string, encrypted: string, cookieOpts: AnyRecord, cookie: object) {
    this[kStore] = store
    this[kGenerateId] = idGenerator
    this[kCookieOpts] = cookieOpts
    this[kSigner] = signer
    this[kRequest] = request
    this[kSessionId] = sessionId
    this[kEncrypted] = encrypted
    this[kSaved] = false
    this.cookie = cookie
  } as unknown as new (request: IncomingMessage, sessionId: string, encrypted: string, cookieOpts: AnyRecord, cookie: object) => AnyRecord
  RestoredSession.prototype = proto

  function cookieOptionsFor (data: AnyRecord): CookieOptionsPair {
    // The constructor: previousCookie, then restoredCookieOpts = { ...cookieOpts, ...previousCookie }
    // (for the Cookie) and its copy with maxAge from originalMaxAge, a past expires dropped, and
    // originalMaxAge and originalExpires removed (the session's own options). The constructor's
    // double spread costs 4-8 µs on V8 12 and its `delete`s leave a dictionary-mode object; the
    // same objects are built here without either.
    const stored = data.cookie as AnyRecord | undefined
    const previous: unknown = stored != null && typeof stored.toJSON === 'function' ? stored.toJSON() : stored
    const merged = mergeCookieOptions(baseCookieOpts, previous)
    const exact = Object.hasOwn(merged, '__proto__') || Object.getOwnPropertySymbols(merged).length > 0
    return { merged, own: exact ? upstreamCookieOptions(merged) : sessionCookieOptions(merged), shareable: !exact }
  }

  return {
    store,
    signer,
    standardSigner: standardSigner(signer),
    restore (request, data, sessionId, signed, hash, options) {
      // A memory store's session carries its id and signed id: the same strings, shared rather than copied.
      const stored = data[kSessionId] === sessionId
      const encrypted = (stored && data[kEncrypted]) || signed || signer.sign(sessionId)
      const result = new RestoredSession(request, stored ? data[kSessionId] : sessionId, encrypted, options.own, new Cookie(options.merged, request))
      for (const key in data) {
        if (key !== 'cookie' && key !== 'sessionId' && key !== 'encryptedSessionId') result[key] = data[key]
      }
      result[kPersistedHash] = hash(result as unknown as FastifySessionObject)
      return result as unknown as FastifySessionObject
    },
    cookieOptionsFor,
    computeHash: (s) => (s as unknown as AnyRecord)[kHash]() as string,
    fieldsKey (s) {
      const session = s as unknown as AnyRecord
      const parts: string[] = []
      let length = 0
      try {
        for (const name in session) {
          if (name === 'cookie') continue
          const part = `${JSON.stringify(name)}:${String(JSON.stringify(session[name]))},`
          length += part.length
          if (length > fieldsKeyMax) return undefined
          parts.push(part)
        }
      } catch {
        return undefined // a BigInt, a cycle, a toJSON that throws
      }
      return parts.join('') // one flat string, not a rope of the parts
    }
  }
}

/**
 * `{ ...base, ...previous }`. The spread is slow on V8 12 (4-8 µs: an object cloned by a spread takes
 * further properties on a slow path), Object.assign into a new object is not; the two differ only for
 * an own `__proto__` key (Object.assign would set the prototype) and are left to the spread then.
 * Both skip a `previous` that is null or undefined (a cookie whose toJSON() gives nothing), as
 * @fastify/session's `{ ...cookieOpts }` does.
 */
function mergeCookieOptions (base: AnyRecord, previous: unknown): AnyRecord {
  if (Object.hasOwn(Object(previous), '__proto__')) return { ...base, ...(previous as AnyRecord) }
  return Object.assign({}, base, previous)
}

/**
 * The session's own cookie options, as @fastify/session's constructor derives them from the merged
 * ones: a copy, maxAge from originalMaxAge, a past or invalid expires dropped without originalMaxAge,
 * originalMaxAge and originalExpires deleted. Built here without `delete` (a dictionary-mode object),
 * for string keys; options with symbol keys or an own `__proto__` (none that JSON or the Cookie class
 * gives) take @fastify/session's own steps (upstreamCookieOptions).
 */
function sessionCookieOptions (merged: AnyRecord): AnyRecord {
  const originalMaxAge = merged.originalMaxAge
  const dropExpires = staleExpires(merged)
  const own: AnyRecord = {}
  const names = Object.keys(merged)
  for (let i = 0; i < names.length; i++) {
    const key = names[i]
    if (key === 'originalMaxAge' || key === 'originalExpires' || (dropExpires && key === 'expires')) continue
    own[key] = merged[key]
  }
  if (originalMaxAge != null) own.maxAge = originalMaxAge
  return own
}

function staleExpires (options: AnyRecord): boolean {
  if (!options.expires || options.originalMaxAge != null) return false
  const time = new Date(options.expires).getTime()
  return Number.isNaN(time) || time <= Date.now()
}

/** @fastify/session's own steps, as its constructor takes them. */
function upstreamCookieOptions (merged: AnyRecord): AnyRecord {
  const own = { ...merged }
  if (own.originalMaxAge != null) own.maxAge = own.originalMaxAge
  if (staleExpires(own)) delete own.expires
  delete own.originalMaxAge
  delete own.originalExpires
  return own
}

/** Whether two sessions' cookie options (both `shareable`) are the same: the same keys, in the same order, with the same values. */
export function sameCookieOptions (a: AnyRecord, b: AnyRecord): boolean {
  const ka = Object.keys(a)
  const kb = Object.keys(b)
  if (ka.length !== kb.length) return false
  for (let i = 0; i < ka.length; i++) {
    const key = ka[i]
    if (key !== kb[i] || !Object.is(a[key], b[key])) return false
  }
  return true
}
