import type { FastifySessionObject } from '@fastify/session'
import type { PassportAuthenticator, SessionSocket } from '../types/index'

/**
 * With the `passport` option: the user @fastify/passport stored in the session (under the
 * Authenticator's `key`) goes through the Authenticator's own `deserializeUser` onto
 * `socket.request.user`, before `authorize` and `userRoom` run, as Passport does for HTTP requests.
 * A session without a user, or one whose user no deserializer finds (false), leaves it undefined.
 */
export function createPassportUser (passport: PassportAuthenticator): (socket: SessionSocket, session: FastifySessionObject) => Promise<void> {
  return async function deserializePassportUser (socket, session) {
    const stored = (session as unknown as Record<string, unknown>)[passport.key]
    const user = stored === undefined || stored === null ? undefined : await passport.deserializeUser(stored, socket.request)
    const found = user !== false && user !== null ? user : undefined
    // Run again when the session changes: a user who logged out leaves no user behind.
    if (found !== undefined || socket.request.user !== undefined) socket.request.user = found
  }
}
