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
    if (stored === undefined || stored === null) return
    const user = await passport.deserializeUser(stored, socket.request)
    if (user !== false && user !== null && user !== undefined) socket.request.user = user
  }
}
