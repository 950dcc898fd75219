import type { IncomingMessage } from 'node:http'
import proxyAddr from '@fastify/proxy-addr'
import type { TrustProxy } from '../types/index'

/** What the handshake reads through trusted proxies, with Fastify's `trustProxy` semantics. */
export interface TrustedProxy {
  /** 'https' when the connection is TLS or a trusted proxy says so; otherwise 'http'. */
  protocol (request: IncomingMessage): string
  /** The Host the client sent the request to (X-Forwarded-Host from a trusted proxy). */
  host (request: IncomingMessage): string | undefined
}

/**
 * Fastify cannot give a plugin its `trustProxy` back, so the plugin takes the same option with the
 * same meaning: true, a list of addresses or subnets, a function (address, hop) => boolean, or a hop
 * count (which, as in Fastify, cannot vouch for the immediate peer and so trusts no header).
 */
export function createTrustedProxy (trustProxy: TrustProxy | undefined): TrustedProxy {
  const trusts = compile(trustProxy)
  const fromTrustedProxy = (request: IncomingMessage): boolean => {
    const address = request.socket?.remoteAddress
    return address !== undefined && trusts(address, 0)
  }
  return {
    protocol (request) {
      const forwarded = request.headers['x-forwarded-proto']
      if (typeof forwarded === 'string' && fromTrustedProxy(request)) return lastEntry(forwarded)
      return (request.socket as { encrypted?: boolean } | undefined)?.encrypted === true ? 'https' : 'http'
    },
    host (request) {
      const forwarded = request.headers['x-forwarded-host']
      if (typeof forwarded === 'string' && fromTrustedProxy(request)) return lastEntry(forwarded)
      return request.headers.host
    }
  }
}

function compile (trustProxy: TrustProxy | undefined): (address: string, hop: number) => boolean {
  if (typeof trustProxy === 'function') return trustProxy
  if (trustProxy === true) return () => true
  if (trustProxy === undefined || trustProxy === false || typeof trustProxy === 'number') return () => false
  const list = typeof trustProxy === 'string' ? trustProxy.split(',').map((entry) => entry.trim()) : trustProxy
  return proxyAddr.compile(list)
}

function lastEntry (header: string): string {
  const comma = header.lastIndexOf(',')
  return (comma === -1 ? header : header.slice(comma + 1)).trim()
}
