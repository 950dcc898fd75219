import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { IncomingMessage } from 'node:http'
import type { ServerOptions } from 'socket.io'
import type { ResolvedOptions } from './options'
import { createdSessionCookieOf, markStoredSession, setLoadError } from './connection-state'
import { createSessionSaver } from './create-session'
import { createOriginCheck } from './origin'
import { createSessionLoader } from './session-load'
import { warnNotASession } from './session-store'
import { withoutResponseHeaders } from './socketio-internals'
import { createTrustedProxy } from './trust-proxy'

export type AllowRequest = NonNullable<ServerOptions['allowRequest']>

/** The engine.io handshake request once this plugin has seen it (`socket.request`). */
interface HandshakeRequest extends IncomingMessage {
  protocol?: string
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
  const loadSession = createSessionLoader(fastify, cookieOptions, (data) => { warnNotASession(log, data) })
  const saveCreatedSession = createSessionSaver(fastify, cookieName, cookiePrefix)

  function readSessionCookie (header: string | undefined): string {
    if (header === undefined) return ''
    const value = fastify.parseCookie(header)[cookieName]
    if (value === undefined) return ''
    if (cookiePrefix === '') return value
    return value.startsWith(cookiePrefix) ? value.slice(cookiePrefix.length) : ''
  }

  return function allowRequest (req, done) {
    const request = req as HandshakeRequest
    const origin = request.headers.origin
    if (origin !== undefined && !originAllowed(origin, request)) {
      log.info({ origin, url: request.url }, 'socket.io session: handshake refused, origin not allowed')
      done('origin not allowed', false)
      return
    }
    const finish = withoutResponseHeaders(request, done)
    if (trusted.protocol(request) === 'https') request.protocol = 'https' // for cookie.secure: 'auto'
    const signedCookie = readSessionCookie(request.headers.cookie)
    let called = false
    const loaded = (err?: unknown, restored?: boolean): void => {
      called = true
      if (err !== undefined && err !== null) {
        setLoadError(request, err)
        finish(null, true)
      } else if (restored === true) {
        finish(null, true) // the cookie's session, from the store (its cookie maybe signed again with a newer secret)
      } else if (createSession) {
        saveCreatedSession(request, (saveError) => {
          if (saveError !== undefined) setLoadError(request, saveError)
          finish(null, true)
        })
      } else {
        markStoredSession(request, false)
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

/** Sends the cookie of a session created during the handshake, as the one Set-Cookie of its response. */
export function sendCreatedSessionCookie (headers: Record<string, unknown>, request: IncomingMessage): void {
  const cookie = createdSessionCookieOf(request)
  if (cookie !== undefined) headers['set-cookie'] = cookie
}
