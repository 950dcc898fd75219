import t, { type Test } from 'tap'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import type { Socket as ClientSocket } from 'socket.io-client'
import type { SessionEndReason, SessionSocket } from '../types/index'
import { client, connect, refused, sleep, transportModes, type Transports } from './helpers/client'
import { watchCrashes } from './helpers/process'
import { captureLogs, login, me, startServer } from './helpers/server'
import { adapterReady, skipWithoutRedis, startRedis, startRedisNode, type RedisNode } from './helpers/redis'
import { TestStore } from './helpers/store'

function serve (app: { io: { on: (event: 'connection', fn: (socket: SessionSocket) => void) => unknown } }): void {
  app.io.on('connection', (socket) => {
    socket.on('count', (ack: (count: number) => void) => {
      const session = socket.request.session
      session.count = (session.count ?? 0) + 1
      ack(session.count)
    })
    socket.on('whoami', (ack: (name: string | null) => void) => { ack(socket.request.session.user?.name ?? null) })
  })
}

/** How a handshake with the cookie settles: 'connected', or the connect_error's code. */
async function attempt (t: Test, url: string, cookie: string, transports: Transports): Promise<string> {
  const socket = client(t, url, { cookie, transports })
  return await new Promise((resolve) => {
    const timer = setTimeout(() => resolve('no answer within 5 s'), 5000)
    socket.once('connect', () => { clearTimeout(timer); socket.disconnect(); resolve('connected') })
    socket.once('connect_error', (err: Error & { data?: { code?: string } }) => { clearTimeout(timer); resolve(err.data?.code ?? err.message) })
  })
}

async function connectWhenBack (t: Test, url: string, cookie: string, ms = 5000): Promise<ClientSocket> {
  const deadline = Date.now() + ms
  while (true) {
    try {
      return await connect(t, url, { cookie })
    } catch (err) {
      if (Date.now() > deadline) throw err
      await sleep(25)
    }
  }
}

for (const persistence of [true, false]) {
  t.test(`Redis killed (SIGKILL) while clients connect and emit, then restarted; persistence ${persistence ? 'on' : 'off'}`, { skip: skipWithoutRedis }, async (t) => {
    const crashes = watchCrashes(t)
    const redis = await startRedis(t, { persistence })
    const ended: Array<{ node: string, sessionId: string, reason: SessionEndReason }> = []
    const nodes: RedisNode[] = []
    for (const name of ['A', 'B']) {
      const node = await startRedisNode(t, redis, {
        validateInterval: 100,
        onSessionEnd: (sessionId, reason) => { ended.push({ node: name, sessionId, reason }) }
      })
      serve(node.app)
      nodes.push(node)
    }
    await adapterReady(nodes[0], ['/'], 2)
    const cookie = await login(nodes[0].url)
    const { sessionId } = await me(nodes[0].url, cookie)

    const held: Array<{ label: string, socket: ClientSocket, reasons: string[] }> = []
    for (const [i, node] of nodes.entries()) {
      for (const { name, transports } of transportModes) {
        const socket = await connect(t, node.url, { cookie, transports })
        const reasons: string[] = []
        socket.on('disconnect', (reason) => reasons.push(reason))
        held.push({ label: `node ${i === 0 ? 'A' : 'B'}, ${name}`, socket, reasons })
      }
    }

    // Load for the whole scenario: each held socket emits a saving event every 20 ms, and a handshake
    // is attempted every 25 ms, alternating nodes and transports.
    const load = { running: true }
    let lastAcked = 0
    const emitting = held.map(async ({ socket }) => {
      while (load.running) {
        try {
          lastAcked = Math.max(lastAcked, await socket.timeout(1000).emitWithAck('count') as number)
        } catch {} // no acknowledgement while the store is away: the save failed
        await sleep(20)
      }
    })
    const handshakes: Array<Promise<{ outcome: string, ms: number }>> = []
    const attempting = (async () => {
      for (let i = 0; load.running; i++) {
        const started = performance.now()
        handshakes.push(attempt(t, nodes[i % 2].url, cookie, transportModes[(i >> 1) % 2].transports).then((outcome) => ({ outcome, ms: performance.now() - started })))
        await sleep(25)
      }
    })()

    await sleep(400)
    const ackedBeforeKill = lastAcked
    t.ok(ackedBeforeKill > 0, `events saved before the kill (count ${ackedBeforeKill})`)
    await redis.kill()
    await sleep(300) // the clients notice, the sweeps (every 100 ms) fail

    for (const [i, node] of nodes.entries()) {
      for (const { name, transports } of transportModes) {
        const started = performance.now()
        const err = await refused(t, node.url, { cookie, transports })
        const ms = performance.now() - started
        t.equal(err.data?.code, 'SESSION_ERROR', `while Redis is down, node ${i === 0 ? 'A' : 'B'}, ${name}: SESSION_ERROR in ${ms.toFixed(0)} ms`)
        t.ok(ms < 1000, 'fast')
      }
    }
    await sleep(500)
    for (const { label, socket, reasons } of held) t.ok(socket.connected && reasons.length === 0, `${label}: still connected while Redis is down`)

    await redis.restart()
    const fresh = await connectWhenBack(t, nodes[1].url, cookie)
    const name = await fresh.timeout(2000).emitWithAck('whoami')
    if (persistence) {
      t.equal(name, 'Ada', 'after the restart, the session is there: nothing lost')
      await sleep(600) // several sweeps on both nodes
      for (const { label, socket, reasons } of held) t.ok(socket.connected && reasons.length === 0, `${label}: never disconnected`)
      t.same(ended, [], 'no session ended')
      load.running = false
      await Promise.all(emitting)
      const stored = await me(nodes[0].url, cookie)
      t.ok((stored.count ?? 0) >= ackedBeforeKill, `every acknowledged save before the kill is still stored (count ${stored.count ?? 'none'} >= ${ackedBeforeKill})`)
    } else {
      t.equal(name, null, 'after the restart the session is gone (Redis came back empty): a fresh session')
      const deadline = Date.now() + 3000
      while (held.some(({ reasons }) => reasons.length === 0) && Date.now() < deadline) await sleep(20)
      for (const { label, reasons } of held) t.ok(reasons.length > 0, `${label}: ended by the sweep once the store answers (${reasons.join(', ')})`)
      t.same(ended.filter((end) => end.sessionId === sessionId).map((end) => `${end.node}:${end.reason}`).sort(), ['A:destroyed', 'B:destroyed'], 'onSessionEnd once on each node')
      load.running = false
      await Promise.all(emitting)
    }
    await attempting
    const settled = await Promise.all(handshakes)
    const outcomes = new Map<string, number>()
    for (const { outcome } of settled) outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
    t.comment(`handshakes during the scenario: ${JSON.stringify(Object.fromEntries(outcomes))}`)
    t.ok(settled.every(({ outcome }) => outcome === 'connected' || outcome === 'SESSION_ERROR'), 'every handshake connected or got SESSION_ERROR')
    t.ok((outcomes.get('SESSION_ERROR') ?? 0) > 0 && (outcomes.get('connected') ?? 0) > 0, 'both happened')
    const slowest = Math.max(...settled.filter(({ outcome }) => outcome === 'SESSION_ERROR').map(({ ms }) => ms))
    t.ok(slowest < 1500, `the slowest SESSION_ERROR took ${slowest.toFixed(0)} ms`)
    t.same(crashes, [], 'no uncaught exception, no unhandled rejection')
  })
}

/** A store whose every call answers after `delay` ms; records its reads. */
class SlowStore extends TestStore {
  delay = 0
  readonly reads: Array<{ sessionId: string, at: number }> = []

  override get (sessionId: string, callback: (err: unknown, session?: any) => void): void {
    this.reads.push({ sessionId, at: performance.now() })
    setTimeout(() => super.get(sessionId, callback), this.delay)
  }

  override set (sessionId: string, session: unknown, callback: (err?: unknown) => void): void {
    const json = JSON.stringify(session) // what the session was when set() was called
    setTimeout(() => super.set(sessionId, JSON.parse(json), callback), this.delay)
  }

  override destroy (sessionId: string, callback: (err?: unknown) => void): void {
    setTimeout(() => super.destroy(sessionId, callback), this.delay)
  }
}

t.test('a slow store (200 ms, then 2 s a call): handshakes complete, the event loop stays responsive, sweeps never pile up', async (t) => {
  const crashes = watchCrashes(t)
  const store = new SlowStore()
  const server = await startServer(t, { authorize: (session) => session.user !== undefined, validateInterval: 100 }, { session: { store } })
  serve(server.app)
  const cookies = [await login(server.url, 'Ada'), await login(server.url, 'Alan'), await login(server.url, 'Grace')]
  const sessionIds = await Promise.all(cookies.map(async (cookie) => (await me(server.url, cookie)).sessionId))

  for (const delay of [200, 2000]) {
    store.delay = delay
    const eld = monitorEventLoopDelay({ resolution: 10 })
    eld.enable()
    const started = performance.now()
    const sockets = await Promise.all(cookies.flatMap((cookie) => transportModes.map(async ({ transports }) => await connect(t, server.url, { cookie, transports }))))
    const handshakeMs = performance.now() - started
    t.equal(sockets.filter((socket) => socket.connected).length, 6, `${delay} ms store: 6 handshakes complete, in ${handshakeMs.toFixed(0)} ms`)
    t.ok(handshakeMs < 3 * delay + 2000, 'in a few store round trips')
    // Sockets held while the sweep (every 100 ms) meets the slow store.
    const from = performance.now()
    await sleep(Math.max(1000, 2 * delay + 500))
    const window = performance.now() - from
    eld.disable()
    const maxDelay = eld.max / 1e6
    // Generous (the machine is shared): a store call that blocked would show its whole delay here.
    t.ok(maxDelay < delay * 0.75 + 100, `${delay} ms store: event-loop delay at most ${maxDelay.toFixed(1)} ms (p99 ${(eld.percentile(99) / 1e6).toFixed(1)} ms)`)
    for (const sessionId of sessionIds) {
      const reads = store.reads.filter((read) => read.sessionId === sessionId && read.at >= from).length
      t.ok(reads <= Math.ceil(window / delay) + 1, `${delay} ms store: ${reads} sweep reads of a session in ${window.toFixed(0)} ms, one sweep at a time`)
    }
    // Sweeps that had started while one was running would now be queued: they show up at once when
    // the store is fast again.
    store.delay = 0
    const fastFrom = performance.now()
    await sleep(150)
    for (const sessionId of sessionIds) {
      const reads = store.reads.filter((read) => read.sessionId === sessionId && read.at >= fastFrom).length
      t.ok(reads <= 4, `${delay} ms store: no sweep work piled up (${reads} reads of a session in the next 150 ms)`)
    }
    for (const socket of sockets) t.ok(socket.connected, 'still connected')
    const answers = await Promise.all(sockets.map(async (socket) => await socket.timeout(2000).emitWithAck('whoami')))
    t.same(answers.sort(), ['Ada', 'Ada', 'Alan', 'Alan', 'Grace', 'Grace'], 'and serve events')
    for (const socket of sockets) socket.disconnect()
  }
  t.same(crashes, [], 'no uncaught exception, no unhandled rejection')
})

t.test('a store that returns malformed data: treated as no session, logged at warn, never a crash', async (t) => {
  const crashes = watchCrashes(t)
  const store = new TestStore()
  const { lines, logger } = captureLogs('warn')
  const server = await startServer(t, { authorize: (session) => session.user !== undefined, validateInterval: 100 }, { session: { store }, fastify: { logger } })
  serve(server.app)
  const cookie = await login(server.url)
  const { sessionId } = await me(server.url, cookie)
  const valid = store.data.get(sessionId) as string
  const user = { id: 'id-Ada', name: 'Ada' }
  const malformed: Array<[string, unknown]> = [
    ['no cookie', { user }],
    ['a string cookie', { cookie: 'x', user }],
    ['an array cookie', { cookie: [1], user }],
    ['a null cookie', { cookie: null, user }],
    ['a number cookie', { cookie: 7, user }],
    ['a cookie whose expiry is not a date', { cookie: { expires: 'not a date', originalMaxAge: null }, user }],
    ['a string', 'a string'],
    ['an array', [user]],
    ['a number', 42],
    ['true', true]
  ]
  const warnings = (): number => lines.filter((line) => line.level === 40 && /not a session/.test(line.msg)).length

  for (const [what, data] of malformed) {
    for (const { name, transports } of transportModes) {
      store.data.set(sessionId, JSON.stringify(data))
      const before = warnings()
      const err = await refused(t, server.url, { cookie, transports })
      t.equal(err.data?.code, 'SESSION_UNAUTHORIZED', `${what}, ${name}: a fresh session, which authorize refuses`)
      t.equal(warnings(), before + 1, `${what}, ${name}: logged at warn`)
    }
  }
  t.notOk(lines.some((line) => JSON.stringify(line).includes(sessionId)), 'no log line holds the session id')

  // The sweep: a connected socket whose stored session turns malformed is ended, as for a destroyed session.
  for (const [what, data] of malformed.slice(0, 3)) {
    store.data.set(sessionId, valid)
    const socket = await connect(t, server.url, { cookie })
    const reasons: string[] = []
    socket.on('disconnect', (reason) => reasons.push(reason))
    const before = warnings()
    store.data.set(sessionId, JSON.stringify(data))
    const deadline = Date.now() + 2000
    while (reasons.length === 0 && Date.now() < deadline) await sleep(10)
    t.ok(reasons.length > 0, `${what}: the sweep ended the socket (${reasons.join(', ')})`)
    t.ok(warnings() > before, `${what}: logged at warn`)
  }
  store.data.set(sessionId, valid)
  t.equal(await (await connect(t, server.url, { cookie })).timeout(2000).emitWithAck('whoami'), 'Ada', 'well-formed data is a session again')
  t.same(crashes, [], 'no uncaught exception, no unhandled rejection')
})
