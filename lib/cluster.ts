import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { SessionEndResult, SessionServer } from '../types/index'
import type { ResolvedOptions } from './options'
import type { EndKind } from './session-end'
import { carriesServerSideEvents } from './socketio-internals'

/** Server-side events between the nodes (through the Socket.IO adapter). */
const SYNC = 'fastify-socket.io-session:sync'
const END = 'fastify-socket.io-session:end'
const ENDED = 'fastify-socket.io-session:ended'

/** What each node does when told, for itself. */
export interface NodeWork {
  /** Ends this node's sockets of the session; returns how many. */
  end (sessionId: string, reason: string, kind: EndKind): number
  /** Brings this node's sockets of the session up to date with the store. */
  sync (sessionId: string): void
}

export interface Cluster {
  /**
   * Ends the session's sockets on every node. Resolves once every other node the adapter counts has
   * answered, or after `ackTimeout` with those that did not counted as unacknowledged.
   */
  end (sessionId: string, reason: string, kind: EndKind): Promise<SessionEndResult>
  /** Tells the other nodes that the session changed in the store (no answer awaited). */
  changed (sessionId: string): void
  /** Settles the ends still waiting for answers (the server is closing). */
  close (): void
}

interface EndMessage { id: string, sessionId: string, reason: string, kind: EndKind }
interface EndedMessage { id: string, sockets: number }

interface Waiting {
  sockets: number
  answered: number
  /** How many other nodes the adapter counts, once it said. */
  expected: number | undefined
  settle: () => void
}

/**
 * The messages that make one node's decision reach every node: a session's change (each node that
 * holds sockets of it reloads it) and a session's end (each node ends its sockets of it, in all of its
 * namespaces, and answers how many). They travel as server-side events of the adapter, which reach
 * the other nodes only: this node does its own part directly. With an adapter that carries no
 * server-side events (the in-memory one), this node is the only one.
 *
 * `serverSideEmit` with an acknowledgement is bounded only by the adapter's own timeout and reports
 * nothing before it: the answers are separate events, counted here against the adapter's
 * `serverCount()`, so that a node that never answers (one without this plugin) costs `ackTimeout`.
 */
export function createCluster (io: SessionServer, opts: ResolvedOptions, log: FastifyBaseLogger, here: NodeWork): Cluster {
  const { ackTimeout } = opts
  const waiting = new Map<string, Waiting>()

  const shared = (): boolean => carriesServerSideEvents(io.sockets.adapter)
  const emit = (event: string, message: unknown): void => { io.serverSideEmit(event, message) }

  io.on(SYNC, (sessionId: unknown) => {
    if (typeof sessionId === 'string') here.sync(sessionId)
  })
  io.on(END, (message: Partial<EndMessage>) => {
    const { id, sessionId, reason, kind } = message ?? {}
    if (typeof id !== 'string' || typeof sessionId !== 'string' || typeof reason !== 'string' || (kind !== 'close' && kind !== 'disconnect')) return
    emit(ENDED, { id, sockets: here.end(sessionId, reason, kind) } satisfies EndedMessage)
  })
  io.on(ENDED, (message: Partial<EndedMessage>) => {
    const request = typeof message?.id === 'string' ? waiting.get(message.id) : undefined
    if (request === undefined) return
    request.answered++
    request.sockets += typeof message.sockets === 'number' ? message.sockets : 0
    if (request.expected !== undefined && request.answered >= request.expected) request.settle()
  })

  function endEverywhere (sessionId: string, reason: string, kind: EndKind, sockets: number): Promise<SessionEndResult> {
    const id = randomUUID()
    return new Promise((resolve) => {
      const request: Waiting = { sockets, answered: 0, expected: undefined, settle }
      const timer = setTimeout(settle, ackTimeout)
      waiting.set(id, request)
      function settle (): void {
        clearTimeout(timer)
        waiting.delete(id)
        // An adapter that could not count its nodes leaves at least one unaccounted for.
        const unacknowledged = request.expected === undefined ? 1 : Math.max(0, request.expected - request.answered)
        if (unacknowledged > 0) log.warn({ reason, unacknowledged, ackTimeout }, 'socket.io session: nodes did not acknowledge a session end')
        resolve({ sockets: request.sockets, nodes: request.answered + 1, unacknowledged })
      }
      io.sockets.adapter.serverCount().then((count) => {
        request.expected = count - 1
        if (waiting.has(id) && request.answered >= request.expected) settle()
      }, (err: unknown) => {
        log.warn({ err }, 'socket.io session: the adapter could not count the nodes')
      })
      emit(END, { id, sessionId, reason, kind } satisfies EndMessage)
    })
  }

  return {
    async end (sessionId, reason, kind) {
      const sockets = here.end(sessionId, reason, kind)
      if (!shared()) return { sockets, nodes: 1, unacknowledged: 0 }
      return await endEverywhere(sessionId, reason, kind, sockets)
    },

    changed (sessionId) {
      if (shared()) emit(SYNC, sessionId)
    },

    close () {
      for (const request of waiting.values()) request.settle()
    }
  }
}
