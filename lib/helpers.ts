import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ResolvedOptions } from './options'
import type { SessionRooms } from './rooms'

const kBoundSessionId = Symbol('fastify-socket.io-session.boundSessionId')

interface BoundRequest extends FastifyRequest {
  [kBoundSessionId]: string | null
}

/**
 * The helpers for HTTP routes: `fastify.disconnectSession()` and `fastify.sessionSockets()`, the
 * reply helpers for logout and login, and the rule that ties sockets to the id they were opened
 * with: when an HTTP request ends with another session id than it started with (the helpers here,
 * `request.session.regenerate()` or `.destroy()` called by the route or by another plugin such as
 * @fastify/passport), the sockets of the old id are disconnected.
 */
export function registerHelpers (fastify: FastifyInstance, opts: ResolvedOptions, rooms: SessionRooms): void {
  const { cookieName } = opts

  fastify.decorate('disconnectSession', async function disconnectSession (sessionId: string) {
    rooms.disconnect(sessionId)
  })
  fastify.decorate('sessionSockets', function sessionSockets (sessionId: string) {
    return rooms.fetch(sessionId)
  })

  fastify.decorateRequest(kBoundSessionId, null)

  fastify.decorateReply('logout', async function logout (this: FastifyReply) {
    const request = this.request as BoundRequest
    const session = request.session
    if (session?.sessionId === undefined) return
    const { sessionId, cookie } = session
    await session.destroy()
    this.clearCookie(cookieName, {
      path: cookie.path,
      domain: cookie.domain ?? undefined,
      secure: cookie.secure === true,
      sameSite: cookie.sameSite,
      httpOnly: cookie.httpOnly
    })
    release(request, sessionId)
  })

  fastify.decorateReply('regenerateSession', async function regenerateSession (this: FastifyReply, keep?: string[]) {
    const request = this.request as BoundRequest
    const previousId = request.session.sessionId
    await (keep === undefined ? request.session.regenerate() : request.session.regenerate(keep))
    release(request, previousId)
  })

  fastify.decorateReply('disconnectSessionSockets', async function disconnectSessionSockets (this: FastifyReply) {
    const sessionId = this.request.session?.sessionId
    if (sessionId !== undefined) rooms.disconnect(sessionId)
  })

  /**
   * Disconnects the sockets of an id the request is done with, and those of the id it started with
   * if something else (Passport's logIn/logOut, a route's own regenerate) changed it before; the
   * request is then bound to its current id.
   */
  function release (request: BoundRequest, endedId: string): void {
    const startedId = request[kBoundSessionId]
    const currentId = request.session?.sessionId ?? null
    request[kBoundSessionId] = currentId
    rooms.disconnect(endedId)
    if (startedId !== null && startedId !== endedId && startedId !== currentId) rooms.disconnect(startedId)
  }

  // @fastify/session loads the session in its own onRequest hook, registered before this one.
  fastify.addHook('onRequest', function bindSessionId (request, _reply, done) {
    (request as BoundRequest)[kBoundSessionId] = request.session?.sessionId ?? null
    done()
  })

  fastify.addHook('onSend', function releaseChangedSession (request, _reply, payload, done) {
    const boundId = (request as BoundRequest)[kBoundSessionId]
    if (boundId !== null && request.session?.sessionId !== boundId) release(request as BoundRequest, boundId)
    done(null, payload)
  })
}
