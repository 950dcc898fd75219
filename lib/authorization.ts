import type { FastifyBaseLogger } from 'fastify'
import type { FastifySessionObject } from '@fastify/session'
import type { SessionServer, SessionSocket } from '../types/index'
import type { ResolvedOptions } from './options'
import { sessionError, unauthorizedError } from './errors'
import { loadErrorOf } from './connection-state'
import { createPassportUser } from './passport'
import { namespacesOf, prependMiddleware } from './socketio-internals'

type Next = (err?: Error) => void
type Middleware = (socket: SessionSocket, next: Next) => void

/**
 * The namespace middleware that admits a socket: it runs in every namespace, once per socket, after
 * the engine.io handshake has loaded the session. Refusals reach the client as `connect_error` with
 * a readable message and `err.data.code`, which Socket.IO's client does not retry in a loop:
 * 'SESSION_UNAUTHORIZED' when `authorize` says no, 'SESSION_ERROR' when the session could not be
 * loaded or `authorize` failed. An admitted socket is handed to `onAdmit` (rooms, lifecycle).
 */
export function createAuthorization (opts: ResolvedOptions, onAdmit: (socket: SessionSocket, session: FastifySessionObject) => void, log: FastifyBaseLogger): Middleware {
  const { authorize } = opts
  const deserializeUser = opts.passport === undefined ? undefined : createPassportUser(opts.passport)

  function fail (socket: SessionSocket, next: Next, cause: unknown): void {
    log.error({ err: cause, namespace: socket.nsp.name, socketId: socket.id }, 'socket.io session: the session could not be loaded or authorized')
    next(sessionError(cause))
  }

  function admit (socket: SessionSocket, session: FastifySessionObject, next: Next): void {
    onAdmit(socket, session)
    next()
  }

  return function authorizeSocket (socket, next) {
    const session = socket.request.session
    const loadError = loadErrorOf(socket.request)
    if (loadError !== undefined || session == null) {
      return fail(socket, next, loadError ?? new Error('no session was loaded for this handshake'))
    }
    if (deserializeUser === undefined) return decide(socket, session, next)
    deserializeUser(socket, session).then(() => decide(socket, session, next), (err: unknown) => fail(socket, next, err))
  }

  function decide (socket: SessionSocket, session: FastifySessionObject, next: Next): void {
    if (authorize === undefined) return admit(socket, session, next)

    const settle = (allowed: boolean): void => {
      if (allowed === true) return admit(socket, session, next)
      log.info({ namespace: socket.nsp.name, socketId: socket.id }, 'socket.io session: handshake unauthorized')
      next(unauthorizedError())
    }
    let verdict: boolean | Promise<boolean>
    try {
      verdict = authorize(session, socket)
    } catch (err) {
      return fail(socket, next, err)
    }
    if (typeof verdict === 'boolean') return settle(verdict)
    Promise.resolve(verdict).then(settle, (err: unknown) => fail(socket, next, err))
  }
}

/**
 * Puts the middleware first in every namespace: those that exist, those created later, and the
 * children of dynamic namespaces (which otherwise copy their parent's middlewares before it).
 */
export function useInEveryNamespace (io: SessionServer, middleware: Middleware): void {
  const install = (nsp: { use (fn: Middleware): unknown }): void => { prependMiddleware(nsp, middleware) }
  for (const nsp of namespacesOf(io)) install(nsp)
  io.on('new_namespace', install)
}
