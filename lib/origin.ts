import type { IncomingMessage } from 'node:http'
import type { ResolvedOptions } from './options'
import type { TrustedProxy } from './trust-proxy'

/** Decides whether a browser handshake's Origin may open a socket (Cross-Site WebSocket Hijacking). */
export type OriginCheck = (origin: string, request: IncomingMessage) => boolean

/**
 * The origin check. Given `allowedOrigins`, the list or the function decides; by default the Origin
 * must name the host and port the handshake was sent to (the scheme is not compared: TLS is often
 * terminated by a proxy). `Origin: null` is foreign unless a list names it.
 */
export function createOriginCheck (allowedOrigins: ResolvedOptions['allowedOrigins'], trusted: TrustedProxy): OriginCheck {
  if (typeof allowedOrigins === 'function') return allowedOrigins
  if (Array.isArray(allowedOrigins)) {
    // Every entry is an origin: resolveOptions refused the list otherwise (assertOrigins).
    const allowed = new Set(allowedOrigins.map(canonicalOrigin))
    return (origin) => allowed.has(normalizeOrigin(origin))
  }
  return (origin, request) => isSameOrigin(origin, trusted.host(request))
}

/** `scheme://host[:port]`, a trailing slash allowed: no path, query, fragment, credentials, wildcard or space. */
const originShape = /^[a-z][a-z0-9+.-]*:\/\/[^\s/?#@*\\]+\/?$/i

/**
 * An `allowedOrigins` entry as a browser would send it in `Origin` (lower case, punycode host, no
 * default port, no trailing slash), or undefined if the entry is not an origin. `'null'` (the Origin
 * of sandboxed and file pages) is kept as it is: a list may name it on purpose.
 */
export function canonicalOrigin (entry: string): string | undefined {
  if (entry === 'null') return entry
  if (!originShape.test(entry)) return undefined
  let url: URL
  try {
    url = new URL(entry)
  } catch {
    return undefined // a bad port, a bad host
  }
  if (url.hostname === '') return undefined
  // Special schemes (http, https, ws, wss) serialize their origin; others (app://, capacitor://) give 'null'.
  return url.origin !== 'null' ? url.origin : `${url.protocol}//${url.host}`.toLowerCase()
}

/**
 * Throws, naming the entry, unless every entry of the list is an origin: a typo must not make the
 * list refuse everyone (a path never matches) nor read as a pattern it is not (a wildcard).
 */
export function assertOrigins (entries: string[], fail: (entry: string) => Error): true {
  for (const entry of entries) {
    if (canonicalOrigin(entry) === undefined) throw fail(entry)
  }
  return true
}

function normalizeOrigin (origin: string): string {
  const lower = origin.toLowerCase()
  return lower.endsWith('/') ? lower.slice(0, -1) : lower
}

const defaultPorts: Record<string, string> = { 'http:': '80', 'https:': '443', 'ws:': '80', 'wss:': '443' }

function isSameOrigin (origin: string, host: string | undefined): boolean {
  if (host === undefined || host === '') return false
  const target = host.toLowerCase()
  // Fast path: the Origin is `scheme://` followed by exactly the Host header.
  const schemeEnd = origin.indexOf('://')
  if (schemeEnd !== -1 && origin.slice(schemeEnd + 3).toLowerCase() === target) return true
  let url: URL
  try {
    url = new URL(origin)
  } catch {
    return false // 'null', garbage
  }
  // URL drops the scheme's default port: compare host names and ports explicitly. A Host without a
  // port was sent to a default port, 80 or 443 (which one, the scheme would tell, and it is not compared).
  const port = url.port || defaultPorts[url.protocol]
  const [targetName, targetPort] = splitHost(target)
  if (url.hostname !== targetName) return false
  return targetPort === undefined ? port === '80' || port === '443' : targetPort === port
}

function splitHost (host: string): [string, string | undefined] {
  // IPv6 literals come bracketed: [::1]:3000
  const portStart = host.lastIndexOf(':')
  if (portStart === -1 || host.lastIndexOf(']') > portStart) return [host, undefined]
  return [host.slice(0, portStart), host.slice(portStart + 1)]
}
