import type { IncomingMessage } from 'node:http'

/*
 * What the plugin remembers about a connection, on its engine.io handshake request (`socket.request`):
 * written by the handshake (and by a socket's first save, which makes its session a stored one), read by
 * authorization, the lifecycle and the sweep. State only, no behaviour.
 * Symbols, so that nothing clashes with the request's own properties; set and never deleted (a `delete`
 * would turn the request into a slow dictionary-mode object for the socket's whole life).
 */

const kLoadError = Symbol('fastify-socket.io-session.loadError')
const kSetCookie = Symbol('fastify-socket.io-session.setCookie')
const kNotStored = Symbol('fastify-socket.io-session.notStored')

interface ConnectionState {
  [kLoadError]?: unknown
  [kSetCookie]?: string
  [kNotStored]?: boolean
}

const stateOf = (request: IncomingMessage): ConnectionState => request as IncomingMessage & ConnectionState

/** Why the session of the connection's handshake could not be loaded or saved, if it could not. */
export function loadErrorOf (request: IncomingMessage): unknown {
  return stateOf(request)[kLoadError]
}

export function setLoadError (request: IncomingMessage, err: unknown): void {
  stateOf(request)[kLoadError] = err
}

/**
 * Whether the connection's session is one the store holds (loaded from its cookie, or saved since), as
 * opposed to a fresh session nobody saved: only a stored one can be reloaded, merged into, or found
 * destroyed.
 */
export function isStoredSession (request: IncomingMessage): boolean {
  return stateOf(request)[kNotStored] !== true
}

export function markStoredSession (request: IncomingMessage, stored = true): void {
  stateOf(request)[kNotStored] = !stored
}

/** The Set-Cookie of a session created during the handshake, for the handshake's response. */
export function createdSessionCookieOf (request: IncomingMessage): string | undefined {
  return stateOf(request)[kSetCookie]
}

export function setCreatedSessionCookie (request: IncomingMessage, cookie: string): void {
  stateOf(request)[kSetCookie] = cookie
}
