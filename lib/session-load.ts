import type { CookieOptions, FastifySessionObject } from '@fastify/session'
import type { FastifyInstance } from 'fastify'
import type { IncomingMessage } from 'node:http'
import { isSessionData } from './session-store'
import { compactCookieOptions, loadedExpiry, sameCookieOptions, sameSignerKeys, sessionFactoryOf, signerKeys, type CookieOptionsPair, type SessionFactory } from './session-internals'

/** `restored`: the session was built from what the store holds for the cookie (not a fresh one). */
type Done = (err?: unknown, restored?: boolean) => void
type AnyRecord = Record<PropertyKey, any>

/** Loads the session of a handshake's signed cookie into `request.session`, as `fastify.decryptSession` does. */
export type LoadSession = (signedCookie: string, request: IncomingMessage, done: Done) => void

/** How many verified cookies are remembered (about 300 bytes each: at most about 0.3 MB). */
const verifiedCookiesMax = 1024

/** A cookie whose signature was verified, and what the sessions loaded with it share. */
interface Verified {
  /** The signed cookie (the map's key), which is also what `signer.sign(id)` gives: the sessions' `encryptedSessionId`. */
  signed: string
  id: string
  /**
   * The change-detection hash of the last session loaded with it and the key of its fields (the hash
   * is reused while the key is the same), and its cookie options (shared while equal).
   */
  hash: string | undefined
  fieldsKey: string | undefined
  cookieOpts: AnyRecord | undefined
}

/**
 * The cookies whose signature was verified, the most recently used last; beyond `max`, the least
 * recently used is forgotten. Only a verified cookie is ever added, so a lookup succeeds only for the
 * exact cookie string this server verified; any other costs the HMAC check it always did.
 */
export class VerifiedCookies {
  private readonly cookies = new Map<string, Verified>()

  constructor (readonly max: number) {}

  get size (): number {
    return this.cookies.size
  }

  get (signed: string): Verified | undefined {
    const known = this.cookies.get(signed)
    if (known !== undefined) {
      this.cookies.delete(signed)
      this.cookies.set(signed, known)
    }
    return known
  }

  add (signed: string, id: string): Verified {
    const verified: Verified = { signed, id, hash: undefined, fieldsKey: undefined, cookieOpts: undefined }
    this.cookies.set(signed, verified)
    if (this.cookies.size > this.max) this.cookies.delete(this.cookies.keys().next().value as string)
    return verified
  }

  clear (): void {
    this.cookies.clear()
  }
}

interface Waiter {
  request: IncomingMessage
  /** The verified cookie, unless its signature used an older secret (then the id is signed again, as @fastify/session does). */
  verified: Verified | undefined
  done: Done
}

/** A store read in flight, and the handshakes waiting for it. */
interface Read {
  waiters: Waiter[]
  settled: boolean
}

/**
 * The session loading of the handshake: what `fastify.decryptSession` does (check the cookie's
 * signature, read the store, build the Session, regenerate an expired one, or give a fresh session),
 * with the same results, at a fraction of the cost, and once for concurrent handshakes of a session:
 *
 * - A cookie whose signature was verified is remembered (bounded, least recently used first out, only
 *   verified cookies, only with @fastify/cookie's own Signer, whose check is a pure function of the
 *   cookie and of its secrets): the same cookie again skips the HMAC. If the application changes the
 *   secrets (rotates them in the array it gave @fastify/session), every cookie is verified again.
 * - Concurrent handshakes with the same session share one store read, while it is in flight. A
 *   handshake that starts once the read has completed reads again: no session is ever older than the
 *   handshake. Each socket still gets a Session object of its own (the lifecycle replaces and changes
 *   `socket.request.session` per socket); the second and later get a deep copy of the stored data
 *   (plain objects, arrays and Dates, what a JSON store returns; other objects, such as the memory
 *   store's live Session, are shared, as that store shares them with every read anyway).
 * - The restored Session is built by session-internals (property for property what @fastify/session's
 *   constructor builds, without its costly double spread, second HMAC and `delete`s); its
 *   change-detection hash and private cookie options are shared with the cookie's previous session
 *   while they are equal.
 *
 * Missing, invalid or unknown cookies still go through `fastify.decryptSession`, which gives them a
 * fresh session. If @fastify/session's internals are not the ones session-internals knows, every
 * handshake goes through `fastify.decryptSession`.
 */
export function createSessionLoader (fastify: FastifyInstance, cookieOptions: CookieOptions, onMalformed: (data: unknown) => void): LoadSession {
  const decryptSession = fastify.decryptSession
  const verifiedCookies = new VerifiedCookies(verifiedCookiesMax)
  /** The signer's keys the remembered cookies were verified with (session-internals' signerKeys). */
  let keysSeen: readonly unknown[] = []
  /** Whether the signer signs with its first secret, so that a cookie verified with that secret is `sign(id)`. */
  let signsWithFirst = false
  const reads = new Map<string, Read>()
  let factory: SessionFactory | null | undefined

  /** A fresh, empty session: what @fastify/session gives an invalid or unknown cookie. */
  function freshSession (request: IncomingMessage, done: Done): void {
    decryptSession('', request, cookieOptions, done)
  }

  /**
   * Looks at a fresh session built for the first handshake's request, on an object that inherits from
   * it (what the idGenerator and `secure: 'auto'` read), so that nothing set on the probe, now or by a
   * late callback, lands on the request itself.
   */
  function findFactory (request: IncomingMessage): SessionFactory | null {
    const probe = Object.create(request) as IncomingMessage & { session?: FastifySessionObject }
    try {
      freshSession(probe, () => {})
      // No session at once (a signer that takes even '' to the store) throws here too.
      return sessionFactoryOf(probe.session as FastifySessionObject, isStandardSigner)
    } catch {
      return null // a custom idGenerator that throws for a raw request
    }
  }

  function verify (signedCookie: string, signer: SessionFactory['signer']): { id: string, verified: Verified | undefined } | undefined {
    if (!sameSignerKeys(signer, keysSeen)) {
      verifiedCookies.clear() // the secrets changed: what was verified before proves nothing now
      keysSeen = signerKeys(signer) as unknown[] // a standard signer has them
      signsWithFirst = keysSeen[0] === keysSeen[1]
    }
    const known = verifiedCookies.get(signedCookie)
    if (known !== undefined) return { id: known.id, verified: known }
    const result = signer.unsign(signedCookie)
    if (!result.valid || typeof result.value !== 'string') return undefined
    // An older secret, or a first secret that is not the one it signs with (the array changed since
    // @fastify/session started): checked each time, and the session's cookie is `sign(id)`.
    if (result.renew || !signsWithFirst) return { id: result.value, verified: undefined }
    return { id: result.value, verified: verifiedCookies.add(signedCookie, result.value) }
  }

  function read (store: SessionFactory['store'], sessionId: string, waiter: Waiter): void {
    const pending = reads.get(sessionId)
    if (pending !== undefined) {
      pending.waiters.push(waiter)
      return
    }
    const current: Read = { waiters: [waiter], settled: false }
    reads.set(sessionId, current)
    try {
      store.get(sessionId, (err, data) => {
        if (current.settled) return // a store that calls back twice
        current.settled = true
        if (reads.get(sessionId) === current) reads.delete(sessionId)
        deliver(current.waiters, sessionId, err, data)
      })
    } catch (err) {
      if (!current.settled) { // the store threw instead of calling back: no one else waits yet
        current.settled = true
        reads.delete(sessionId)
      }
      throw err
    }
  }

  /** Gives each waiting handshake its session from one store read. */
  function deliver (waiters: Waiter[], sessionId: string, err: unknown, data: unknown): void {
    const loaded: Array<(() => void)> = []
    if (err != null) {
      const unknown = (err as { code?: unknown }).code === 'ENOENT'
      for (const w of waiters) loaded.push(unknown ? () => freshSession(w.request, w.done) : () => w.done(err))
    } else if (!data) {
      for (const w of waiters) loaded.push(() => freshSession(w.request, w.done))
    } else if (!isSessionData(data)) {
      onMalformed(data) // @fastify/session would make a session of anything: this is no session
      for (const w of waiters) loaded.push(() => freshSession(w.request, w.done))
    } else {
      build(waiters, sessionId, data as AnyRecord, loaded)
    }
    runAll(loaded)
  }

  /**
   * Builds every waiting handshake's session before any handshake goes on, so that what runs after
   * one cannot change the data the others are built from. Data @fastify/session could not build a
   * session from fails those handshakes, as it would (SESSION_ERROR), and no other.
   */
  function build (waiters: Waiter[], sessionId: string, data: AnyRecord, loaded: Array<() => void>): void {
    const builder = factory as SessionFactory
    const shared = waiters[0].verified
    let options: CookieOptionsPair
    try {
      options = builder.cookieOptionsFor(data)
    } catch (err) {
      for (const w of waiters) loaded.push(() => w.done(err))
      return
    }
    if (options.shareable && shared?.cookieOpts !== undefined && sameCookieOptions(shared.cookieOpts, options.own)) options.own = shared.cookieOpts
    // One hash for the sessions of this read (their fields are equal); the cookie's previous one if
    // the fields have not changed since.
    let hash: string | undefined
    const hashOf = (session: FastifySessionObject): string => {
      if (hash !== undefined) return hash
      const key = shared === undefined ? undefined : builder.fieldsKey(session)
      if (shared !== undefined && key !== undefined && key === shared.fieldsKey && shared.hash !== undefined) {
        hash = shared.hash
      } else {
        const computed = builder.computeHash(session)
        hash = computed === shared?.hash ? shared.hash : computed
        if (shared !== undefined) {
          shared.hash = hash
          shared.fieldsKey = key
        }
      }
      return hash
    }
    for (let i = 0; i < waiters.length; i++) {
      const w = waiters[i]
      let session: FastifySessionObject
      try {
        session = builder.restore(w.request, i === 0 ? data : copyStored(data), sessionId, w.verified?.signed, hashOf, options)
      } catch (err) {
        loaded.push(() => w.done(err))
        continue
      }
      loaded.push(() => settle(session, w))
    }
    if (shared !== undefined && hash !== undefined) shared.cookieOpts = options.shareable ? options.own : undefined
  }

  /** As @fastify/session: an expired session is regenerated (destroyed, and a new one issued). */
  function settle (session: FastifySessionObject, waiter: Waiter): void {
    const expiration = loadedExpiry(session) ?? session.cookie.expires?.getTime()
    if (expiration !== undefined && expiration <= Date.now()) {
      session.regenerate(waiter.done)
      return
    }
    (waiter.request as IncomingMessage & { session: unknown }).session = session
    waiter.done(undefined, true)
  }

  /** The previous behaviour, whole: `decryptSession`, then the session's cookie options made compact. */
  function fallback (signedCookie: string, request: IncomingMessage, done: Done): void {
    decryptSession(signedCookie, request, cookieOptions, (err?: unknown) => {
      // Without an error, decryptSession has always set a session. Whether it came from the store is
      // told here by its cookie, which a session @fastify/session restored keeps (unless it was signed
      // again with a newer secret: such a session then counts as a fresh one, as it always did).
      const session = (request as IncomingMessage & { session: FastifySessionObject }).session
      const restored = err == null && session.encryptedSessionId === signedCookie
      if (restored) compactCookieOptions(session)
      done(err, restored)
    })
  }

  return function loadSession (signedCookie, request, done) {
    factory ??= findFactory(request)
    if (factory === null || !factory.standardSigner) return fallback(signedCookie, request, done)
    const checked = signedCookie === '' ? undefined : verify(signedCookie, factory.signer)
    if (checked === undefined) return freshSession(request, done)
    read(factory.store, checked.id, { request, verified: checked.verified, done })
  }
}

/**
 * Runs every callback, even if one throws; then throws the first error, as the one callback of a
 * store read of its own would have.
 */
function runAll (callbacks: Array<() => void>): void {
  let failed = false
  let failure: unknown
  for (const callback of callbacks) {
    try {
      callback()
    } catch (err) {
      if (!failed) {
        failed = true
        failure = err
      }
    }
  }
  if (failed) throw failure
}

/**
 * @fastify/cookie's Signer, the one @fastify/session builds from its `secret` option (not a custom
 * signer object), with the members signerKeys reads. (@fastify/cookie is registered: the plugin
 * requires it. Were it not found, this throws inside findFactory, and every load goes through
 * `decryptSession`, as for a custom signer.)
 */
function isStandardSigner (signer: unknown): boolean {
  const { Signer } = require('@fastify/cookie') as { Signer: new (...args: unknown[]) => unknown }
  return signer instanceof Signer && signerKeys(signer as never) !== undefined
}

/**
 * What a second read of a JSON store would return: a deep copy of plain objects, arrays and Dates;
 * any other object (a class instance, such as the live Session a memory store keeps) as it is.
 */
function copyStored (value: unknown, seen = new Map<object, unknown>()): any {
  if (typeof value !== 'object' || value === null) return value
  const done = seen.get(value)
  if (done !== undefined) return done
  if (value instanceof Date) return new Date(value.getTime())
  if (Array.isArray(value)) {
    const out: unknown[] = []
    seen.set(value, out)
    for (let i = 0; i < value.length; i++) out.push(copyStored(value[i], seen))
    return out
  }
  const proto = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return value
  const out: AnyRecord = proto === null ? Object.create(null) : {}
  seen.set(value, out)
  for (const key of Object.keys(value)) {
    const copy = copyStored((value as AnyRecord)[key], seen)
    if (key === '__proto__') Object.defineProperty(out, key, { value: copy, writable: true, enumerable: true, configurable: true })
    else out[key] = copy
  }
  return out
}
