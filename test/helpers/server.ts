import type { Test } from 'tap'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession, { type FastifySessionOptions } from '@fastify/session'
import fastifySocketIoSession from '../../lib/index'
import { findSessionStore } from '../../lib/session-internals'
import type { FastifySocketIoSessionOptions } from '../../types/index'

declare module 'fastify' {
  interface Session {
    user?: { id: string, name: string }
    count?: number
    note?: string
  }
}

export const secret = 'a test secret with the minimum length of 32 characters'

export interface TestServer {
  app: FastifyInstance
  url: string
}

export interface BuildOptions {
  session?: Partial<FastifySessionOptions>
  fastify?: FastifyServerOptions
  /** Registers something (fastify-socket.io, a store...) before this plugin. */
  before?: (app: FastifyInstance) => Promise<void> | void
  /** Adds routes (or anything else) after the plugin, before listening. */
  after?: (app: FastifyInstance) => Promise<void> | void
}

/**
 * A real Fastify server on 127.0.0.1 with @fastify/cookie, @fastify/session and the plugin, and the
 * routes the tests log in and out with. Closed by the test's teardown.
 */
export async function startServer (t: Test, plugin: FastifySocketIoSessionOptions = {}, build: BuildOptions = {}): Promise<TestServer> {
  const app = Fastify({ logger: false, ...build.fastify })
  t.teardown(() => app.close())
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret, cookie: { secure: 'auto' }, ...build.session })
  await build.before?.(app)
  await app.register(fastifySocketIoSession, plugin)
  addRoutes(app)
  await build.after?.(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return { app, url: `http://127.0.0.1:${address.port}` }
}

export interface LogLine { level: number, msg: string, [key: string]: unknown }

/** A Fastify logger option that keeps the JSON log lines, for tests that check what was logged. */
export function captureLogs (level: string): { lines: LogLine[], logger: { level: string, stream: { write: (line: string) => void } } } {
  const lines: LogLine[] = []
  return { lines, logger: { level, stream: { write: (line) => { lines.push(JSON.parse(line)) } } } }
}

/**
 * Counts the session loads: the reads of the @fastify/session store (HTTP requests with a session
 * cookie read it too). The plugin reads it once per handshake with a signed cookie, once for
 * concurrent handshakes of one session.
 */
export function countSessionLoads (app: FastifyInstance): { count: number } {
  const counter = { count: 0 }
  const store = findSessionStore(app.decryptSession)
  if (store === undefined) throw new Error('countSessionLoads: no @fastify/session store')
  const get = store.get
  store.get = function countedGet (this: unknown, ...args: Parameters<typeof get>) { counter.count++; return get.apply(this, args) }
  return counter
}

export function addRoutes (app: FastifyInstance): void {
  app.post<{ Body: { name?: string } | undefined }>('/login', async (request, reply) => {
    await reply.regenerateSession()
    const name = request.body?.name ?? 'Ada'
    request.session.user = { id: `id-${name}`, name }
    return { ok: true }
  })
  app.post('/logout', async (_request, reply) => {
    await reply.logout()
    return reply.code(204).send()
  })
  app.get('/me', async (request) => ({ sessionId: request.session.sessionId, user: request.session.user ?? null, count: request.session.count ?? null, note: request.session.note ?? null }))
  app.post<{ Body: { note: string } }>('/note', async (request) => {
    request.session.note = request.body.note
    return { ok: true }
  })
  app.post('/kick', async (_request, reply) => {
    await reply.disconnectSessionSockets()
    return { ok: true }
  })
}

/** The `name=value` pair of the Set-Cookie header of a response, to send back as a Cookie header. */
export function cookieOf (response: Response, name = 'sessionId'): string {
  const header = response.headers.getSetCookie().find((line) => line.startsWith(`${name}=`))
  if (header === undefined) throw new Error(`no ${name} cookie in the response`)
  return header.split(';', 1)[0]
}

/** Logs in over HTTP and returns the session cookie. */
export async function login (url: string, name = 'Ada', cookie?: string): Promise<string> {
  const response = await fetch(`${url}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(cookie === undefined ? {} : { cookie }) },
    body: JSON.stringify({ name })
  })
  if (response.status !== 200) throw new Error(`login answered ${response.status}`)
  return cookieOf(response)
}

export async function logout (url: string, cookie: string): Promise<Response> {
  return await fetch(`${url}/logout`, { method: 'POST', headers: { cookie } })
}

export async function me (url: string, cookie: string): Promise<{ sessionId: string, user: { name: string } | null, count: number | null, note: string | null }> {
  const response = await fetch(`${url}/me`, { headers: { cookie } })
  return await response.json() as never
}

/** POSTs to a route with the session cookie (and a JSON body, if any); throws unless it answers 2xx. */
export async function post (url: string, cookie: string, body?: unknown): Promise<void> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { cookie, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  if (!response.ok) throw new Error(`${url} answered ${response.status}`)
}
