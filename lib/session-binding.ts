import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { FastifySessionObject } from '@fastify/session'
import type { SessionEndResult } from '../types/index'
import type { Cluster } from './cluster'
import type { Lifecycle } from './lifecycle'
import type { ResolvedOptions } from './options'
import { savedVersionOf } from './session-internals'
import type { SessionStoreAccess } from './session-store'

const kBoundSessionId = Symbol('fastify-socket.io-session.boundSessionId')
const kSavedVersion = Symbol('fastify-socket.io-session.savedVersion')

interface BoundRequest extends FastifyRequest {
  [kBoundSessionId]: string | null
  /** The version of the session's fields the request started with; undefined when there is nothing to sync. */
  [kSavedVersion]: string | undefined
}

/** Ends the sockets of a session id an HTTP request is done with, everywhere. */
export type Release = (request: FastifyRequest, endedId: string, reason: string) => Promise<SessionEndResult>

/**
 * The rules that tie an HTTP request's session to the sockets of that session:
 * - a request that ends with another session id than it started with (the reply helpers,
 *   `request.session.regenerate()` or `.destroy()` called by the route or by another plugin such as
 *   @fastify/passport) ends the sockets of the old id, on every node ('regenerated' or 'destroyed');
 * - a request that saved a change of its session's fields makes every node's sockets of that session
 *   take it (`syncSessions`): this node applies what was saved, the others reload it from the store.
 */
export function bindSessionsToSockets (fastify: FastifyInstance, opts: ResolvedOptions, deps: { cluster: Cluster, lifecycle: Lifecycle, store: SessionStoreAccess }): Release {
  const { cluster, lifecycle, store } = deps
  const { cookieName, syncSessions } = opts

  /**
   * Ends the sockets of an id the request is done with, and those of the id it started with if
   * something else (Passport's logIn/logOut, a route's own regenerate) changed it before; the request
   * is then bound to its current id, a new session with no sockets to sync.
   */
  async function release (request: FastifyRequest, endedId: string, reason: string): Promise<SessionEndResult> {
    const bound = request as BoundRequest
    const startedId = bound[kBoundSessionId]
    const currentId = request.session?.sessionId ?? null
    bound[kBoundSessionId] = currentId
    bound[kSavedVersion] = undefined
    const ends = [cluster.end(endedId, reason, 'disconnect')]
    if (startedId !== null && startedId !== endedId && startedId !== currentId) ends.push(cluster.end(startedId, reason, 'disconnect'))
    return combine(await Promise.all(ends))
  }

  fastify.decorateRequest(kBoundSessionId, null)
  fastify.decorateRequest(kSavedVersion, undefined)

  // @fastify/session loads the session in its own onRequest hook, registered before this one.
  fastify.addHook('onRequest', function bindSessionId (request, _reply, done) {
    const bound = request as BoundRequest
    const session = request.session
    bound[kBoundSessionId] = session?.sessionId ?? null
    if (!store.ready) store.use(request.sessionStore) // not found at registration: every request carries it
    // A request without the cookie has a new session, which no socket can hold yet.
    if (syncSessions && session != null && request.cookies?.[cookieName] !== undefined) bound[kSavedVersion] = versionOf(session)
    done()
  })

  // @fastify/session saves the session in its own onSend hook, registered before this one.
  fastify.addHook('onSend', function releaseOrSync (request, _reply, payload, done) {
    const bound = request as BoundRequest
    const boundId = bound[kBoundSessionId]
    if (boundId === null) return done(null, payload)
    const session = request.session
    if (session?.sessionId !== boundId) {
      release(request, boundId, session == null ? 'destroyed' : 'regenerated').catch((err: unknown) => {
        request.log.error({ err }, 'socket.io session: ending the sockets of a released session failed')
      })
    } else if (bound[kSavedVersion] !== undefined && versionOf(session) !== bound[kSavedVersion]) {
      lifecycle.sync(boundId, session)
      cluster.changed(boundId)
    }
    done(null, payload)
  })

  return release
}

/**
 * The version of the session's fields as last loaded or saved (@fastify/session's own hash, which a
 * save renews), or, without it, the fields themselves as JSON.
 */
export function versionOf (session: FastifySessionObject): string | undefined {
  const saved = savedVersionOf(session)
  if (saved !== undefined) return saved
  try {
    return JSON.stringify({ ...session, cookie: undefined })
  } catch {
    return undefined // fields that cannot be stored cannot be synced either
  }
}

/** The results of several ends as one: the sockets added up, the nodes as the most that answered one. */
function combine (results: SessionEndResult[]): SessionEndResult {
  return results.reduce((sum, result) => ({
    sockets: sum.sockets + result.sockets,
    nodes: Math.max(sum.nodes, result.nodes),
    unacknowledged: Math.max(sum.unacknowledged, result.unacknowledged)
  }))
}
