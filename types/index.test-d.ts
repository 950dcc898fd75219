import Fastify, { type FastifyInstance } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession, { type FastifySessionObject } from '@fastify/session'
import type { RemoteSocket, Server } from 'socket.io'
import { expectAssignable, expectError, expectType } from 'tsd'
import type { Socket as ClientSocket } from 'socket.io-client'
import fastifySocketIoSession, { fastifySocketIoSession as named, type FastifySocketIoSessionOptions, type SessionEndEvents, type SessionEndResult, type SessionSocket, type SocketEndReason } from '..'

declare module 'fastify' {
  interface Session { user?: { id: string, name: string } }
  interface PassportUser { id: string, role: 'admin' | 'user' }
}

declare module '..' {
  interface ServerToClientEvents { hello: (name: string | undefined) => void }
  interface ClientToServerEvents { chat: (text: string, ack: (ok: boolean) => void) => void }
}

expectType<typeof fastifySocketIoSession>(named)

// The quick start, as written in the README.
const app = Fastify({ logger: true })
await app.register(fastifyCookie)
await app.register(fastifySession, { secret: 'a secret with minimum length of 32 characters', cookie: { secure: 'auto' } })
await app.register(fastifySocketIoSession, {
  authorize: (session) => session.user !== undefined
})
app.post('/login', async (request, reply) => {
  await reply.regenerateSession()
  request.session.user = { id: 'u1', name: 'Ada' }
  return { ok: true }
})
app.post('/logout', async (_request, reply) => {
  await reply.logout()
  return reply.code(204).send()
})
app.io.on('connection', (socket) => {
  expectType<string | undefined>(socket.request.session.user?.name)
  expectType<FastifySessionObject>(socket.request.session)
  expectType<string>(socket.request.session.sessionId)
  socket.emit('hello', socket.request.session.user?.name)
  // A misspelled session field does not compile.
  expectError(socket.request.session.usr)
  // Typed events, by declaration merging.
  expectError(socket.emit('hello', 42))

  socket.on('chat', (text, ack) => {
    expectType<string>(text)
    ack(true)
  })
  // Passport's user, typed through @fastify/passport's PassportUser.
  expectType<'admin' | 'user' | undefined>(socket.request.user?.role)
})

// Decorators.
expectAssignable<Server>(app.io)
expectType<(sessionId: string, reason?: string) => Promise<SessionEndResult>>(app.disconnectSession)
expectType<(sessionId: string) => Promise<SessionEndResult>>(app.logoutSession)
expectType<number>((await app.logoutSession('id')).unacknowledged)
expectType<Promise<RemoteSocket<any, any>[]>>(app.sessionSockets('id') as Promise<RemoteSocket<any, any>[]>)
app.get('/helpers', async (_request, reply) => {
  expectType<Promise<SessionEndResult>>(reply.logout())
  expectType<Promise<SessionEndResult>>(reply.regenerateSession(['cart']))
  expectType<Promise<SessionEndResult>>(reply.regenerateSession())
  expectType<Promise<SessionEndResult>>(reply.disconnectSessionSockets())
  expectType<Promise<SessionEndResult>>(reply.disconnectSessionSockets('maintenance'))
  expectError(reply.disconnectSessionSockets(42))
  expectError(reply.regenerateSession('cart'))
})

// Every option, with its types.
const options: FastifySocketIoSessionOptions = {
  cookieName: 'sid',
  cookiePrefix: 's:',
  serverOptions: { path: '/rt', connectionStateRecovery: {} },
  trustProxy: ['127.0.0.1', '10.0.0.0/8'],
  allowedOrigins: (origin, request) => origin === 'https://app.example' && request.headers.host !== undefined,
  authorize: async (session, socket: SessionSocket) => session.user !== undefined && socket.nsp.name !== '/x',
  sessionRoom: (id) => `s:${id}`,
  userRoom: (session) => session.user?.id,
  reloadOnEvent: true,
  autoSave: true,
  validateInterval: 10_000,
  keepAlive: true,
  createSession: false,
  cookie: { sameSite: 'strict', secure: 'auto' },
  onSessionEnd: (sessionId, reason) => { expectType<'logout' | 'regenerated' | 'destroyed' | 'expired'>(reason); expectType<string>(sessionId) },
  syncSessions: true,
  endEvent: 'session:end',
  ackTimeout: 2000,
  maxPendingEvents: 64
}
await app.register(fastifySocketIoSession, options)
await app.register(fastifySocketIoSession, { allowedOrigins: ['https://app.example'], trustProxy: true })

// Bad options do not compile.
expectError(app.register(fastifySocketIoSession, { cookieName: 42 }))
expectError(app.register(fastifySocketIoSession, { authorize: 'yes' }))
expectError(app.register(fastifySocketIoSession, { autorize: () => true }))
expectError(app.register(fastifySocketIoSession, { allowedOrigins: 'https://app.example' }))
expectError(app.register(fastifySocketIoSession, { onSessionEnd: (_id: string, reason: 'gone') => reason }))
expectError(app.register(fastifySocketIoSession, { endEvent: true }))
expectError(app.register(fastifySocketIoSession, { syncSessions: 'yes' }))
await app.register(fastifySocketIoSession, { endEvent: false })

// A typed client declares the end event.
declare const client: ClientSocket<SessionEndEvents>
client.on('session:end', ({ reason }) => {
  expectAssignable<string>(reason)
  expectAssignable<typeof reason>('unauthorized' as SocketEndReason)
  expectAssignable<typeof reason>('banned')
})
expectError(client.on('session:end', (reason: number) => reason))

// The plugin is usable on any Fastify instance type.
export async function register (instance: FastifyInstance): Promise<void> {
  await instance.register(fastifySocketIoSession)
}
