import type { FastifyInstance } from 'fastify'
import type { IncomingMessage } from 'node:http'
import { setCreatedSessionCookie } from './connection-state'
import { cookieAttributesOf } from './session-internals'

/**
 * `createSession`: a handshake without a valid session cookie gets a session of its own, saved to the
 * store at once, and its cookie as the one Set-Cookie of the handshake's response (engine.io's
 * `initial_headers`), with the attributes @fastify/session would set it with. As @fastify/session
 * does, a Secure cookie is never sent over plain HTTP.
 */
export function createSessionSaver (fastify: FastifyInstance, cookieName: string, cookiePrefix: string) {
  return function saveCreatedSession (request: IncomingMessage & { protocol?: string }, done: (err?: unknown) => void): void {
    const session = request.session
    session.save().then(() => {
      if (session.cookie.secure !== true || request.protocol === 'https') {
        setCreatedSessionCookie(request, fastify.serializeCookie(cookieName, cookiePrefix + session.encryptedSessionId, cookieAttributesOf(session)))
      }
      done()
    }, done) // @fastify/session rejects a failed save with the store's error, never with nothing
  }
}
