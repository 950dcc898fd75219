import type { SerializeOptions } from '@fastify/cookie'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { IncomingMessage } from 'node:http'
import type { ServerOptions } from 'socket.io'
import type { ResolvedOptions } from './options'
import { createOriginCheck } from './origin'
import { createSessionLoader } from './session-load'
import { withoutResponseHeaders } from './socketio-internals'
import { createTrustedProxy } from './trust-proxy'

export type AllowRequest = NonNullable<ServerOptions['allowRequest']>

const kLoadError = Symbol('fastify-socket.io-session.loadError')
const kSetCookie = Symbol('fastify-socket.io-session.setCookie')
const kNotStored = Symbol('fastify-socket.io-session.notStored')

/** The engine.io handshake request once this plugin has seen it (`socket.request`). */
export interface HandshakeRequest extends IncomingMessage {
  protocol?: string
  [kLoadError]?: unknown
  [kSetCookie]?: string
  [kNotStored]?: boolean
}

/** Why the session of a socket's handshake could not be loaded, if it could not. */
export function loadErrorOf (request: IncomingMessage): unknown {
  return (request as HandshakeRequest)[kLoadError]
}

/**
 * Whether the socket's session is one the store holds (loaded from its cookie, or saved since), as
 * opposed to a fresh session nobody saved: only a stored one can be reloaded, merged into, or found
 * destroyed.
 */
export function isStoredSession (request: IncomingMessage): boolean {
  return (request as HandshakeRequest)[kNotStored] !== true
}

export function markStoredSession (request: IncomingMessage): void {
  (request as HandshakeRequest)[kNotStored] = false // not `delete`: see keepRequestFast()
}

/**
 * The engine.io `allowRequest` hook, which engine.io calls once per connection, on the handshake
 * request only (not on each poll nor on the upgrade), for every transport and every namespace.
 *
 * 1. A browser Origin that is not allowed is refused before any session work: HTTP 403 on polling,
 *    the upgrade refused on websocket.
 * 2. The session cookie is loaded as @fastify/session's `fastify.decryptSession` loads it (session-load:
 *    the same sessions, cheaper, and one store read for concurrent handshakes of a session), which
 *    sets `request.session`: a missing, tampered or unknown cookie gives a fresh session, an expired
 *    one is regenerated. A store failure does not refuse the connection here, where the client would
 *    only see an opaque transport error: it is kept on the request for the namespace middleware,
 *    which answers with a readable `connect_error`.
 */
export function createHandshake (fastify: FastifyInstance, opts: ResolvedOptions, log: FastifyBaseLogger): AllowRequest {
  const trusted = createTrustedProxy(opts.trustProxy)
  const originAllowed = createOriginCheck(opts.allowedOrigins, trusted)
  const { cookieName, cookiePrefix, createSession } = opts
  const cookieOptions = opts.cookie ?? {}
  // What the store returns that is not a session (a string, an array, no cookie) is no session.
  const loadSession = createSessionLoader(fastify, cookieOptions, () => {
    log.warn('socket.io handshake: the store returned data that is not a session (no cookie object); treated as no session')
  })

  function readSessionCookie (header: string | undefined): string {
    if (header === undefined) return ''
    const value = fastify.parseCookie(header)[cookieName]
    if (value === undefined) return ''
    if (cookiePrefix === '') return value
    return value.startsWith(cookiePrefix) ? value.slice(cookiePrefix.length) : ''
  }

  function persistNewSession (request: HandshakeRequest, done: (err?: unknown) => void): void {
    const session = request.session
    session.save().then(() => {
      // As @fastify/session does, never send a Secure cookie over plain HTTP.
      if (session.cookie.secure !== true || request.protocol === 'https') {
        request[kSetCookie] = fastify.serializeCookie(cookieName, cookiePrefix + session.encryptedSessionId, cookieAttributes(session.cookie))
      }
      done()
    }, done)
  }

  return function allowRequest (req, done) {
    const request = req as HandshakeRequest
    const origin = request.headers.origin
    if (origin !== undefined && !originAllowed(origin, request)) {
      log.info({ origin, url: request.url }, 'socket.io handshake refused: origin not allowed')
      done('origin not allowed', false)
      return
    }
    const finish = withoutResponseHeaders(request, done)
    if (trusted.protocol(request) === 'https') request.protocol = 'https' // for cookie.secure: 'auto'
    const signedCookie = readSessionCookie(request.headers.cookie)
    let called = false
    const loaded = (err?: unknown): void => {
      called = true
      if (err !== undefined && err !== null) {
        request[kLoadError] = err
        finish(null, true)
      } else if (request.session.encryptedSessionId === signedCookie) {
        finish(null, true) // the cookie's session, from the store
      } else if (createSession) {
        persistNewSession(request, (saveError) => {
          if (saveError !== undefined) request[kLoadError] = saveError
          finish(null, true)
        })
      } else {
        request[kNotStored] = true
        finish(null, true)
      }
    }
    try {
      loadSession(signedCookie, request, loaded)
    } catch (err) {
      if (called) throw err // thrown after the session was loaded, by what went on from there
      loaded(err) // a store that throws instead of calling back: SESSION_ERROR, not a crash
    }
  }
}

/** The attributes of a session's cookie, as @fastify/session sets them (its Cookie class's toJSON). */
function cookieAttributes (cookie: object): SerializeOptions {
  return (cookie as { toJSON (): SerializeOptions }).toJSON()
}

/** Sends the cookie of a session created during the handshake, as the one Set-Cookie of its response. */
export function sendCreatedSessionCookie (headers: Record<string, unknown>, request: IncomingMessage): void {
  const cookie = (request as HandshakeRequest)[kSetCookie]
  if (cookie !== undefined) headers['set-cookie'] = cookie
}
