/// <reference types="node" />

import type { FastifyPluginCallback, PassportUser } from 'fastify'
import type { IncomingMessage } from 'node:http'
import type { RemoteSocket, Server, ServerOptions, Socket } from 'socket.io'
import type { CookieOptions, FastifySessionObject } from '@fastify/session'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * The Socket.IO server whose handshake loads the @fastify/session session.
     * Type its events by extending `ClientToServerEvents`, `ServerToClientEvents`,
     * `InterServerEvents` and `SocketData` of 'fastify-socket.io-session'.
     */
    io: fastifySocketIoSession.SessionServer

    /**
     * Disconnects every socket of the session, in every namespace, on every node, leaving the session as
     * it is; the clients get the end event with `reason` (default 'disconnected'). Resolves once every
     * node has acknowledged, or after `ackTimeout`.
     */
    disconnectSession (sessionId: string, reason?: string): Promise<fastifySocketIoSession.SessionEndResult>

    /**
     * Destroys the session in the store and ends its sockets on every node (reason 'logout'): for admin
     * tools, password changes, or a socket handler that logs its user out.
     */
    logoutSession (sessionId: string): Promise<fastifySocketIoSession.SessionEndResult>

    /** The session's sockets in every namespace, on every node (like `fetchSockets()`). */
    sessionSockets (sessionId: string): Promise<fastifySocketIoSession.SessionRemoteSocket[]>
  }

  interface FastifyReply {
    /** Destroys the session, clears its cookie and ends every socket of the session on every node (reason 'logout'). */
    logout (): Promise<fastifySocketIoSession.SessionEndResult>

    /**
     * Regenerates the session id (keeping the fields named in `keep`) and ends the sockets of the old id
     * on every node (reason 'regenerated').
     */
    regenerateSession (keep?: string[]): Promise<fastifySocketIoSession.SessionEndResult>

    /** Disconnects the sockets of the current session on every node, leaving the session as it is (default reason 'disconnected'). */
    disconnectSessionSockets (reason?: string): Promise<fastifySocketIoSession.SessionEndResult>
  }

  /**
   * The user that @fastify/passport deserializes. Declared empty here so that this package's
   * types compile without @fastify/passport; @fastify/passport's declaration merges into it.
   */
  interface PassportUser {}
}

declare module 'http' {
  interface IncomingMessage {
    /** The @fastify/session session of the socket's handshake (`socket.request.session`). */
    session: FastifySessionObject

    /** The user Passport deserialized from the session, with the `passport` option. */
    user?: PassportUser
  }
}

type FastifySocketIoSession = FastifyPluginCallback<fastifySocketIoSession.FastifySocketIoSessionOptions>

declare namespace fastifySocketIoSession {
  /** Events the clients send. Extend by declaration merging to type `fastify.io`. */
  export interface ClientToServerEvents { [event: string]: (...args: any[]) => void }
  /** Events the server sends. Extend by declaration merging to type `fastify.io`. */
  export interface ServerToClientEvents { [event: string]: (...args: any[]) => void }
  /** Events between server nodes (`serverSideEmit`). Extend by declaration merging. */
  export interface InterServerEvents { [event: string]: (...args: any[]) => void }
  /** The type of `socket.data`. Extend by declaration merging. */
  export interface SocketData { [key: string]: any }

  export type SessionServer = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>
  export type SessionSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>
  export type SessionRemoteSocket = RemoteSocket<ServerToClientEvents, SocketData>

  /** Why a session ended: what `onSessionEnd` receives. */
  export type SessionEndReason = 'logout' | 'regenerated' | 'destroyed' | 'expired'

  /**
   * Why the plugin disconnected a socket: what the end event carries. A session that ended, a socket
   * whose session no longer passes `authorize`, a socket with too many events waiting, or the reason
   * given to `disconnectSession()` / `disconnectSessionSockets()` ('disconnected' by default).
   */
  export type SocketEndReason = SessionEndReason | 'unauthorized' | 'overloaded' | 'disconnected'

  /** The argument of the end event (`endEvent`, default 'session:end'). */
  export interface SessionEndPayload {
    reason: SocketEndReason | (string & Record<never, never>)
  }

  /**
   * The end event, for a typed client: `io() as Socket<SessionEndEvents & MyServerEvents>`, then
   * `socket.on('session:end', ({ reason }) => ...)`. Declared for the default `endEvent` name.
   */
  export interface SessionEndEvents {
    'session:end': (payload: SessionEndPayload) => void
  }

  /**
   * What the helpers that end a session's sockets resolve to: the sockets ended on the nodes that
   * answered, the nodes that answered (this one included), and the nodes that did not answer within
   * `ackTimeout`.
   */
  export interface SessionEndResult {
    sockets: number
    nodes: number
    unacknowledged: number
  }

  /** What the `passport` option needs of a @fastify/passport Authenticator. */
  export interface PassportAuthenticator {
    key: string
    deserializeUser (stored: any, request: any): Promise<any>
  }

  export type TrustProxy = boolean | string | string[] | number | ((address: string, hop: number) => boolean)

  export interface FastifySocketIoSessionOptions {
    /** The session cookie's name: @fastify/session's `cookieName`. Default 'sessionId'. */
    cookieName?: string
    /** @fastify/session's `cookiePrefix`. Default ''. */
    cookiePrefix?: string
    /** Options of the Socket.IO server this plugin creates (ignored when `fastify.io` already exists). */
    serverOptions?: Partial<ServerOptions>
    /** Which proxies' X-Forwarded-Proto to trust, as Fastify's `trustProxy`. Default false. */
    trustProxy?: TrustProxy
    /**
     * Origins allowed to open a socket. Default: the Origin must be the Host the handshake was sent to.
     * A handshake without an Origin header (not a browser) is always allowed.
     */
    allowedOrigins?: string[] | ((origin: string, request: IncomingMessage) => boolean)
    /** Decides whether a socket may connect, in every namespace. Default: every session is accepted. */
    authorize?: (session: FastifySessionObject, socket: SessionSocket) => boolean | Promise<boolean>
    /** The room every socket of a session joins. Default `session:${sessionId}`. */
    sessionRoom?: (sessionId: string) => string
    /** A second room to join, such as one per user; undefined joins none. */
    userRoom?: (session: FastifySessionObject, socket: SessionSocket) => string | undefined
    /** Reload the session from the store before each incoming event. Default false. */
    reloadOnEvent?: boolean
    /** Save the session after an event handler that modified it. Default true. */
    autoSave?: boolean
    /** How often (ms) each node checks its sockets' sessions against the store; 0 disables. Default 30000. */
    validateInterval?: number
    /** Extend the expiry of sessions with connected sockets at each check. Default true. */
    keepAlive?: boolean
    /** Save a fresh session during a handshake that has none and send its cookie. Default false. */
    createSession?: boolean
    /** Cookie options of sessions created during a handshake; default those of @fastify/session. */
    cookie?: CookieOptions
    /**
     * Called on each node, once per session, when the plugin ends that node's sockets of a session
     * because the session ended ('logout', 'regenerated', 'destroyed', 'expired').
     */
    onSessionEnd?: (sessionId: string, reason: SessionEndReason) => void
    /** A @fastify/passport Authenticator: its user is deserialized onto `socket.request.user`. */
    passport?: PassportAuthenticator
    /**
     * When an HTTP request or a socket's autoSave changes a session, every node holding sockets of it
     * reloads it once, applies it to those sockets' `socket.request.session` and runs `authorize` and
     * `userRoom` again. Default true.
     */
    syncSessions?: boolean
    /**
     * The event emitted to a socket, with `{ reason }`, just before the plugin disconnects it; false sends
     * none. Default 'session:end'.
     */
    endEvent?: string | false
    /** How long (ms) the helpers that end sockets wait for the other nodes to acknowledge. Default 5000. */
    ackTimeout?: number
    /**
     * Events of one socket that may wait for their turn (events of a session run one at a time); one more
     * disconnects the socket with reason 'overloaded'. Default 128.
     */
    maxPendingEvents?: number
  }

  /** Codes of the `err.data.code` a client receives with `connect_error`. */
  export type ConnectErrorCode = 'SESSION_UNAUTHORIZED' | 'SESSION_ERROR'

  export const fastifySocketIoSession: FastifySocketIoSession
  export { fastifySocketIoSession as default }
}

declare function fastifySocketIoSession (...params: Parameters<FastifySocketIoSession>): ReturnType<FastifySocketIoSession>
export = fastifySocketIoSession
