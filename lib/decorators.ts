import type { FastifyInstance, FastifyReply } from 'fastify'
import type { SessionEndResult } from '../types/index'
import type { Cluster } from './cluster'
import { InvalidArgumentError, NoStoreError } from './errors'
import type { ResolvedOptions } from './options'
import type { SessionRooms } from './rooms'
import type { Release } from './session-binding'
import type { SessionStoreAccess } from './session-store'

/** What a helper resolves to when the request has no session: nothing to end, nobody asked. */
const nothingEnded = (): SessionEndResult => ({ sockets: 0, nodes: 1, unacknowledged: 0 })

/**
 * The helpers for HTTP routes and the rest of the application: end a session's sockets everywhere
 * (`fastify.disconnectSession`, `fastify.logoutSession`, `reply.logout`, `reply.regenerateSession`,
 * `reply.disconnectSessionSockets`), each resolving once every node acknowledged (cluster), and list
 * them (`fastify.sessionSockets`).
 */
export function decorateHelpers (fastify: FastifyInstance, opts: ResolvedOptions, deps: { rooms: SessionRooms, cluster: Cluster, store: SessionStoreAccess, release: Release }): void {
  const { rooms, cluster, store, release } = deps
  const { cookieName } = opts

  fastify.decorate('disconnectSession', async function disconnectSession (sessionId: string, reason = 'disconnected') {
    checkSessionId(sessionId)
    checkReason(reason)
    return await cluster.end(sessionId, reason, 'disconnect')
  })

  fastify.decorate('logoutSession', async function logoutSession (sessionId: string) {
    checkSessionId(sessionId)
    if (!store.ready) throw new NoStoreError()
    await store.destroy(sessionId)
    return await cluster.end(sessionId, 'logout', 'disconnect')
  })

  fastify.decorate('sessionSockets', function sessionSockets (sessionId: string) {
    checkSessionId(sessionId)
    return rooms.fetch(sessionId)
  })

  fastify.decorateReply('logout', async function logout (this: FastifyReply) {
    const session = this.request.session
    if (session?.sessionId === undefined) return nothingEnded()
    const { sessionId, cookie } = session
    await session.destroy()
    this.clearCookie(cookieName, {
      path: cookie.path,
      domain: cookie.domain ?? undefined,
      secure: cookie.secure === true,
      sameSite: cookie.sameSite,
      httpOnly: cookie.httpOnly
    })
    return await release(this.request, sessionId, 'logout')
  })

  fastify.decorateReply('regenerateSession', async function regenerateSession (this: FastifyReply, keep?: string[]) {
    const session = this.request.session
    const previousId = session.sessionId
    await (keep === undefined ? session.regenerate() : session.regenerate(keep))
    return await release(this.request, previousId, 'regenerated')
  })

  fastify.decorateReply('disconnectSessionSockets', async function disconnectSessionSockets (this: FastifyReply, reason = 'disconnected') {
    checkReason(reason)
    const sessionId = this.request.session?.sessionId
    if (sessionId === undefined) return nothingEnded()
    return await cluster.end(sessionId, reason, 'disconnect')
  })
}

function checkSessionId (sessionId: unknown): void {
  if (typeof sessionId !== 'string' || sessionId === '') throw new InvalidArgumentError('sessionId', 'must be a non-empty string')
}

function checkReason (reason: unknown): void {
  if (typeof reason !== 'string' || reason === '') throw new InvalidArgumentError('reason', 'must be a non-empty string')
}
