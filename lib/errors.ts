import createError from '@fastify/error'
import type { ConnectErrorCode } from '../types/index'

/** Thrown at registration for a missing, unknown or ill-typed option. */
export const InvalidOptionError = createError<'FST_SIO_SESSION_INVALID_OPTION', [string, string]>(
  'FST_SIO_SESSION_INVALID_OPTION',
  "fastify-socket.io-session: option '%s' %s"
)

/** Thrown by a helper called with an argument it cannot use. */
export const InvalidArgumentError = createError<'FST_SIO_SESSION_INVALID_ARGUMENT', [string, string]>(
  'FST_SIO_SESSION_INVALID_ARGUMENT',
  "fastify-socket.io-session: argument '%s' %s",
  500,
  TypeError
)

/** Thrown by a helper that needs the session store when @fastify/session's store could not be found. */
export const NoStoreError = createError(
  'FST_SIO_SESSION_NO_STORE',
  'fastify-socket.io-session: the @fastify/session store could not be found'
)

const Unauthorized = createError<ConnectErrorCode>('SESSION_UNAUTHORIZED', 'unauthorized', 401)
const SessionFailure = createError<ConnectErrorCode>('SESSION_ERROR', 'session error', 500)

/**
 * An error a Socket.IO middleware passes to `next()`: the client's `connect_error` receives
 * its message and `data`, with a stable `data.code`.
 */
export interface ConnectError extends Error {
  data: { code: ConnectErrorCode }
}

function connectError (error: Error & { code: string }): ConnectError {
  return Object.assign(error, { data: { code: error.code } }) as ConnectError
}

/** The handshake was refused by `authorize`. */
export function unauthorizedError (): ConnectError {
  return connectError(new Unauthorized())
}

/** The session could not be loaded or `authorize` failed; `cause` stays on the server. */
export function sessionError (cause: unknown): ConnectError {
  return connectError(new SessionFailure({ cause }))
}
