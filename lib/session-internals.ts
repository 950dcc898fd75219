import type { FastifySessionObject, SessionStore } from '@fastify/session'
import type { FastifyInstance } from 'fastify'

/*
 * What this plugin needs of @fastify/session that it does not expose: the symbols its Session objects
 * keep their store and cookie options under, found by their descriptions ('sessionStore',
 * 'cookieOpts', stable since @fastify/session 8) on the first session seen. Nothing else in the
 * plugin touches a session's private state. If a future version renames them, the lifecycle logs
 * that it found no store, and the compaction below does nothing.
 */

const keys = new Map<string, symbol | undefined>()

function privateKey (session: object, description: string): symbol | undefined {
  if (!keys.has(description)) {
    const key = Object.getOwnPropertySymbols(session).find((symbol) => symbol.description === description)
    if (key === undefined) return undefined
    keys.set(description, key)
  }
  return keys.get(description)
}

/** The store behind @fastify/session (which gives it to Fastify requests only, not to a raw socket request). */
export function sessionStoreOf (session: FastifySessionObject): SessionStore | undefined {
  const key = privateKey(session, 'sessionStore')
  const store = key === undefined ? undefined : (session as unknown as Record<symbol, SessionStore | undefined>)[key]
  return typeof store?.get === 'function' && typeof store.set === 'function' ? store : undefined
}

/**
 * A session restored from the store keeps a copy of its cookie options from which @fastify/session
 * deletes two keys, which makes V8 turn it into a slow dictionary-mode object: about 0.85 KB per
 * socket for as long as the socket lives. The same options, copied into a plain object, take a tenth.
 */
export function compactCookieOptions (session: FastifySessionObject): void {
  const key = privateKey(session, 'cookieOpts')
  if (key === undefined) return
  const holder = session as unknown as Record<symbol, object>
  holder[key] = { ...holder[key] }
}

/**
 * A version of the session's fields as last loaded or saved: @fastify/session keeps a hash of them
 * (without the cookie) under the 'persistedHash' symbol, renewed on each save. Two different values
 * before and after a request mean the request saved a change of the fields (not only of the cookie,
 * as a rolling session does). Undefined if this @fastify/session keeps no such hash.
 */
export function savedVersionOf (session: FastifySessionObject): string | undefined {
  const key = privateKey(session, 'persistedHash')
  const version = key === undefined ? undefined : (session as unknown as Record<symbol, unknown>)[key]
  return typeof version === 'string' ? version : undefined
}

/**
 * The store behind @fastify/session before any socket or request has brought a session: a cookie
 * value that does not verify makes `decryptSession` build a fresh session at once, without the store,
 * and that session carries the store.
 */
export function findSessionStore (decryptSession: FastifyInstance['decryptSession']): SessionStore | undefined {
  const request: { headers: object, session?: FastifySessionObject } = { headers: {} }
  try {
    decryptSession('', request, () => {})
  } catch {
    return undefined // a custom idGenerator that needs a real request
  }
  return request.session == null ? undefined : sessionStoreOf(request.session)
}
