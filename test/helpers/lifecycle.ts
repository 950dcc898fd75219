import type { Test } from 'tap'
import type { FastifySocketIoSessionOptions, SessionSocket } from '../../types/index'
import { sleep } from './client'
import { me, startServer, type TestServer } from './server'
import { TestStore } from './store'

/** The application's socket handlers: each works on `socket.request.session`, the current session. */
export function serve (server: TestServer): void {
  const handle = (socket: SessionSocket): void => {
    socket.on('increment', (ack?: (count: number) => void) => {
      const session = socket.request.session
      session.count = (session.count ?? 0) + 1
      ack?.(session.count)
    })
    socket.on('increment-async', async (ack: (count: number) => void) => {
      await new Promise((resolve) => setImmediate(resolve))
      const session = socket.request.session
      session.count = (session.count ?? 0) + 1
      ack(session.count)
    })
    socket.once('increment-once', () => {
      const session = socket.request.session
      session.count = (session.count ?? 0) + 1
    })
    socket.on('read', (ack: (value: unknown) => void) => {
      ack({ count: socket.request.session.count ?? null, note: socket.request.session.note ?? null })
    })
    socket.on('note-later', async (note: string, ack: () => void) => {
      await sleep(150)
      socket.request.session.note = note
      ack()
    })
    socket.on('forget-note', (ack: () => void) => {
      delete socket.request.session.note
      ack()
    })
    socket.on('fail', () => { throw new Error('handler bug') })
  }
  server.app.io.on('connection', handle)
  server.app.io.of('/admin').on('connection', handle)
}

export async function setup (t: Test, options: FastifySocketIoSessionOptions = {}, session: Record<string, unknown> = {}): Promise<TestServer & { store: TestStore }> {
  const store = new TestStore()
  const server = await startServer(t, { validateInterval: 0, ...options }, { session: { store, ...session } })
  serve(server)
  return { ...server, store }
}

export const sessionIdOf = async (url: string, cookie: string): Promise<string> => (await me(url, cookie)).sessionId
