import type { Test } from 'tap'
import type { FastifySessionObject } from '@fastify/session'
import type { FastifySocketIoSessionOptions, SessionEndReason, SessionSocket } from '../../types/index'
import { client, connect, once, refused, sleep, transportModes } from './client'
import { login, logout, me, type BuildOptions, type TestServer } from './server'

/**
 * The scenarios every shared store and adapter must pass on two nodes (A and B): the same tests for
 * connect-redis 9 and 10, the ioredis adapter clients, and PostgreSQL. Each scenario starts its own
 * two nodes with `startNode`, so that each can have its own intervals and `maxAge`.
 */

/** Reads and writes the store directly, as another process (an admin, a cleanup job) would. */
export interface StoreProbe {
  /** The session as the store holds it, or undefined when the store has none. */
  read (sessionId: string): Promise<Record<string, unknown> | undefined>
  /** Deletes the session from the store. */
  destroy (sessionId: string): Promise<void>
  /** When the store itself drops the session (Redis key TTL, PostgreSQL `expire` column), in ms since the epoch. */
  expiresAt (sessionId: string): Promise<number | undefined>
}

export type StartNode = (t: Test, plugin: FastifySocketIoSessionOptions, build: BuildOptions) => Promise<TestServer>

export interface TwoNodeSetup {
  startNode: StartNode
  /** Resolves once the two nodes' adapters reach each other (subscriptions made). */
  ready: (a: TestServer, b: TestServer) => Promise<void>
  probe: StoreProbe
}

const userRoom = (session: FastifySessionObject): string | undefined => session.user && 'user:' + session.user.id
const authorize = (session: FastifySessionObject): boolean => session.user !== undefined

interface Node extends TestServer {
  name: string
  ended: Array<{ sessionId: string, reason: SessionEndReason }>
  /** Settles when the last `slow-note` handler has written its field (or failed). */
  slowNote?: Promise<void>
}

/** The application's handlers, the same on both nodes, in two namespaces. */
function serve (node: Node): void {
  const handle = (socket: SessionSocket): void => {
    socket.on('whoami', (ack: (seen: unknown) => void) => {
      const session = socket.request.session
      ack({ node: node.name, nsp: socket.nsp.name, sessionId: session.sessionId, user: session.user ?? null })
    })
    socket.on('increment', (ack: (count: number) => void) => {
      const session = socket.request.session
      session.count = (session.count ?? 0) + 1
      ack(session.count)
    })
    // A handler that is still working when the user logs out elsewhere: its autoSave comes after the logout.
    socket.on('slow-note', async (note: string) => {
      let done = (): void => {}
      node.slowNote = new Promise((resolve) => { done = resolve })
      try {
        socket.emit('working')
        await sleep(300)
        socket.request.session.note = note
      } finally {
        setTimeout(done, 100) // after the plugin's save that follows the handler
      }
    })
  }
  node.app.io.on('connection', handle)
  node.app.io.of('/chat').on('connection', handle)
}

async function startNodes (t: Test, setup: TwoNodeSetup, plugin: FastifySocketIoSessionOptions = {}, build: BuildOptions = {}): Promise<[Node, Node]> {
  const nodes: Node[] = []
  for (const name of ['A', 'B']) {
    const ended: Node['ended'] = []
    const server = await setup.startNode(t, {
      authorize,
      userRoom,
      validateInterval: 0,
      onSessionEnd: (sessionId, reason) => { ended.push({ sessionId, reason }) },
      ...plugin
    }, build)
    const node: Node = { ...server, name, ended }
    serve(node)
    nodes.push(node)
  }
  await setup.ready(nodes[0], nodes[1])
  return [nodes[0], nodes[1]]
}

const sessionIdOf = async (url: string, cookie: string): Promise<string> => (await me(url, cookie)).sessionId

async function postNote (url: string, cookie: string, note: string): Promise<void> {
  const response = await fetch(`${url}/note`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: JSON.stringify({ note }) })
  if (response.status !== 200) throw new Error(`POST /note answered ${response.status}`)
}

/** Runs every scenario as a subtest of `t`. */
export function twoNodeScenarios (t: Test, setup: TwoNodeSetup): void {
  t.test('handshake: a session logged in over HTTP on A is the session of sockets on B', async (t) => {
    const [a, b] = await startNodes(t, setup)
    const cookie = await login(a.url, 'Ada')
    const sessionId = await sessionIdOf(a.url, cookie)
    for (const { name, transports } of transportModes) {
      for (const namespace of ['/', '/chat']) {
        const socket = await connect(t, b.url, { cookie, transports, namespace })
        t.same(await socket.emitWithAck('whoami'), { node: 'B', nsp: namespace, sessionId, user: { id: 'id-Ada', name: 'Ada' } }, `${name}, ${namespace}`)
      }
    }
    const err = await refused(t, b.url, {})
    t.equal(err.data?.code, 'SESSION_UNAUTHORIZED', 'no session: refused on B')
  })

  t.test('merge-save: a socket\'s save on B keeps the field an HTTP request on A wrote meanwhile', async (t) => {
    const [a, b] = await startNodes(t, setup)
    const cookie = await login(a.url, 'Ada')
    const sessionId = await sessionIdOf(a.url, cookie)
    const socket = await connect(t, b.url, { cookie })
    await postNote(a.url, cookie, 'from HTTP on A') // after the socket loaded its copy of the session
    t.equal(await socket.emitWithAck('increment'), 1, 'the socket\'s handler changed count')
    const stored = await setup.probe.read(sessionId)
    t.match(stored, { note: 'from HTTP on A', count: 1, user: { name: 'Ada' } }, 'the store holds both fields')
    t.match(await me(a.url, cookie), { note: 'from HTTP on A', count: 1, user: { name: 'Ada' } }, 'and HTTP on A sees both')
  })

  t.test('no resurrection: a socket\'s save after the session was logged out or deleted does not bring it back', async (t) => {
    const [a, b] = await startNodes(t, setup)

    // 1. A handler on B is still working when the user logs out on A.
    const cookie = await login(a.url, 'Ada')
    const sessionId = await sessionIdOf(a.url, cookie)
    const socket = await connect(t, b.url, { cookie })
    const working = once(socket, 'working')
    const closed = once<string>(socket, 'disconnect', 3000)
    socket.emit('slow-note', 'written after the logout')
    await working
    t.equal((await logout(a.url, cookie)).status, 204, 'logged out on A while the handler works on B')
    t.equal(await closed, 'io server disconnect', 'B\'s socket is disconnected')
    await b.slowNote
    t.equal(await setup.probe.read(sessionId), undefined, 'the handler finished after the logout: the store has no session')
    t.equal((await me(a.url, cookie)).user, null, 'HTTP sees no user')

    // 2. The session is deleted from the store directly; then a handler changes a field.
    const second = await login(a.url, 'Ada')
    const secondId = await sessionIdOf(a.url, second)
    const other = await connect(t, b.url, { cookie: second })
    await setup.probe.destroy(secondId)
    const otherClosed = once<string>(other, 'disconnect', 3000)
    other.emit('increment', () => {})
    t.equal(await otherClosed, 'transport close', 'the socket of the deleted session is closed instead of saving')
    t.equal(await setup.probe.read(secondId), undefined, 'the store still has no session')
  })

  t.test('sweep: a session deleted from the store ends its sockets on B at the next check', async (t) => {
    const [a, b] = await startNodes(t, setup, { validateInterval: 100 })
    const cookie = await login(a.url, 'Ada')
    const sessionId = await sessionIdOf(a.url, cookie)
    const sockets = transportModes.map(({ transports }) => client(t, b.url, { cookie, transports, reconnection: true }))
    await Promise.all(sockets.map(async (socket) => await once(socket, 'connect')))
    const reasons = sockets.map(async (socket) => await once<string>(socket, 'disconnect', 3000))
    const refusals = sockets.map(async (socket) => await once<{ data?: { code?: string } }>(socket, 'connect_error', 5000))
    await setup.probe.destroy(sessionId)
    t.same(await Promise.all(reasons), ['transport close', 'transport close'], 'both transports closed')
    t.same((await Promise.all(refusals)).map((err) => err.data?.code), ['SESSION_UNAUTHORIZED', 'SESSION_UNAUTHORIZED'], 'their reconnections are refused')
    t.same(b.ended, [{ sessionId, reason: 'destroyed' }], 'onSessionEnd on B: destroyed')
    for (const socket of sockets) socket.disconnect()
  })

  t.test('keep-alive: a socket on B keeps its session alive past maxAge; a session without sockets expires', async (t) => {
    const maxAge = 3000 // Redis TTLs and PostgreSQL's expire column count whole seconds
    const [a, b] = await startNodes(t, setup, { validateInterval: 200 }, { session: { cookie: { secure: 'auto', maxAge }, rolling: false } })
    const cookie = await login(a.url, 'Ada')
    const sessionId = await sessionIdOf(a.url, cookie)
    const idle = await login(a.url, 'Grace')
    const idleId = await sessionIdOf(a.url, idle)
    const socket = await connect(t, b.url, { cookie, transports: ['polling', 'websocket'] })
    const firstExpiry = await setup.probe.expiresAt(sessionId)
    await sleep(maxAge * 1.5)
    t.ok(socket.connected, 'still connected')
    const expiry = await setup.probe.expiresAt(sessionId)
    t.ok(firstExpiry !== undefined && expiry !== undefined && expiry > firstExpiry && expiry > Date.now(), 'the store\'s own expiry moved forward')
    t.match(await me(a.url, cookie), { sessionId, user: { name: 'Ada' } }, `HTTP on A: still logged in, ${maxAge * 1.5} ms after the login (maxAge ${maxAge} ms)`)
    t.equal((await me(a.url, idle)).user, null, 'the session without sockets expired on schedule')
    t.not(idleId, sessionId)
  })

  t.test('logout on A disconnects the session\'s sockets on B in every namespace; the old cookie is refused', async (t) => {
    const [a, b] = await startNodes(t, setup)
    const cookie = await login(a.url, 'Ada')
    const bystander = await login(b.url, 'Grace')
    const sockets = []
    for (const { transports } of transportModes) {
      for (const namespace of ['/', '/chat']) sockets.push(await connect(t, b.url, { cookie, transports, namespace }))
    }
    sockets.push(await connect(t, a.url, { cookie, namespace: '/chat' }))
    const grace = await connect(t, b.url, { cookie: bystander })
    const reasons = sockets.map(async (socket) => await once<string>(socket, 'disconnect', 3000))
    t.equal((await logout(a.url, cookie)).status, 204)
    t.same(await Promise.all(reasons), sockets.map(() => 'io server disconnect'), 'every socket of the session, on both nodes, both transports, both namespaces')
    await sleep(100)
    t.ok(grace.connected, 'another session\'s socket stays connected')
    t.match(await grace.emitWithAck('whoami'), { node: 'B', user: { name: 'Grace' } })
    const err = await refused(t, b.url, { cookie })
    t.equal(err.data?.code, 'SESSION_UNAUTHORIZED', 'the logged-out cookie is refused on B')
  })
}
