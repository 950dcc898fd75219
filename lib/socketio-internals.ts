import type { IncomingMessage } from 'node:http'
import type { ServerOptions } from 'socket.io'
import type { SessionServer } from '../types/index'

type AllowRequestCallback = Parameters<NonNullable<ServerOptions['allowRequest']>>[1]

/*
 * What this plugin needs of Socket.IO, engine.io and @socket.io/redis-adapter that they do not expose
 * publicly. Each accessor says what it relies on; test/internals.test.ts checks every one against the
 * installed version.
 */

export type Namespace = ReturnType<SessionServer['of']>

/**
 * Every namespace of the server, dynamic namespaces' children included: `Server#_nsps`, a public
 * field tagged private, where Socket.IO itself registers each namespace it creates.
 */
export function namespacesOf (io: SessionServer): Iterable<Namespace> {
  return io._nsps.values()
}

/**
 * Whether the adapter carries server-side events to other nodes. The in-memory adapter's
 * `serverSideEmit` only warns (it does not implement it): an adapter whose `serverSideEmit` is the one
 * at the root of its class chain (no subclass overrides it) is that in-memory one.
 */
export function carriesServerSideEvents (adapter: object): boolean {
  let root: unknown
  for (let proto = Object.getPrototypeOf(adapter); proto !== null; proto = Object.getPrototypeOf(proto)) {
    if (Object.hasOwn(proto, 'serverSideEmit')) root = proto.serverSideEmit
  }
  return root !== undefined && (adapter as { serverSideEmit?: unknown }).serverSideEmit !== root
}

/**
 * Puts a middleware before those the namespace already has (`Namespace#_fns`, the private array
 * `use()` appends to; Socket.IO itself reaches it so from a parent namespace). Without that array,
 * falls back to `use()`: the middleware then runs after the others.
 */
export function prependMiddleware<Fn> (nsp: { use (fn: Fn): unknown }, middleware: Fn): void {
  const fns = (nsp as { _fns?: unknown[] })._fns
  if (Array.isArray(fns)) fns.unshift(middleware)
  else nsp.use(middleware)
}

let responseHeadersKey: symbol | undefined

/**
 * engine.io keeps a websocket handshake's response headers on the request, under a symbol of its own
 * added just before `allowRequest` and deleted once the headers are written. Deleting a property that
 * is not an object's last one turns it into a slow dictionary-mode object, which costs about 1.4 KB per
 * socket for the socket's whole life: so that property is taken off while the session is added, and
 * put back last, before engine.io goes on. Returns the `allowRequest` callback that puts it back.
 * (engine.io's private `responseHeaders` symbol, found by its description.)
 */
export function withoutResponseHeaders (request: IncomingMessage, callback: AllowRequestCallback): AllowRequestCallback {
  if (request.headers.upgrade === undefined) return callback // polling: nothing to keep
  responseHeadersKey ??= Object.getOwnPropertySymbols(request).find((symbol) => symbol.description === 'responseHeaders')
  const key = responseHeadersKey
  if (key === undefined || !Object.hasOwn(request, key)) return callback
  const holder = request as unknown as Record<symbol, unknown>
  const headers = holder[key]
  delete holder[key] // the last property: a cheap delete
  return (err, success) => {
    holder[key] = headers
    callback(err, success)
  }
}

/**
 * Makes a polling connection close at once when the server closes it: engine.io's polling transport
 * otherwise waits up to 30 s (its private `closeTimeout`) for a poll to carry the close packet.
 */
export function closePollingAtOnce (conn: { transport: { name: string, closeTimeout?: number } }): void {
  if (conn.transport.name === 'polling') conn.transport.closeTimeout = 0
}

/**
 * The connection state recovery options the server runs with (`Server#opts`, private), which the
 * plugin changes in place: undefined without recovery.
 */
export function recoveryOptions (io: SessionServer): { skipMiddlewares?: boolean } | undefined {
  return (io as unknown as { opts?: { connectionStateRecovery?: { skipMiddlewares?: boolean } } }).opts?.connectionStateRecovery
}

/** The engine.io connection a socket is created on (Socket.IO's `Client`): its request carries the session. */
export interface EngineClient { request: IncomingMessage }

/**
 * Calls `before(client)` and `after()` around the synchronous part of each socket's creation in the
 * namespace: `Namespace#_createSocket(client, auth)` (private, socket.io 4.6 to 4.8), which calls the
 * adapter's `restoreSession(pid, offset)` synchronously, before it builds the Socket from the state
 * that resolves to. Returns false, changing nothing, when this Socket.IO has no such method.
 */
export function aroundSocketCreation (nsp: Namespace, before: (client: EngineClient) => void, after: () => void): boolean {
  const target = nsp as unknown as { _createSocket?: (this: Namespace, client: EngineClient, auth: unknown) => Promise<unknown> }
  const createSocket = target._createSocket
  if (typeof createSocket !== 'function') return false
  target._createSocket = function (this: Namespace, client, auth) {
    before(client)
    try {
      return createSocket.call(this, client, auth)
    } finally {
      after()
    }
  }
  return true
}

const EVENT = 2 // socket.io-parser's PacketType.EVENT

/**
 * Sends an event packet as Socket.IO sends a restored socket's missed packets: `Socket#packet`
 * (private), which writes the packet as it is (`data` is the event's name and arguments).
 */
export function sendEventPacket (socket: object, data: unknown[]): void {
  (socket as { packet (packet: { type: number, data: unknown[] }): void }).packet({ type: EVENT, data })
}

/**
 * The Redis client @socket.io/redis-adapter publishes with (`RedisAdapter#pubClient`, a private field
 * of its class), or undefined for another adapter.
 */
export function redisPublishClientOf (adapter: unknown): object | undefined {
  const client = (adapter as { pubClient?: unknown } | undefined)?.pubClient
  return typeof client === 'object' && client !== null ? client : undefined
}
