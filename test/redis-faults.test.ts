import t from 'tap'
import { performance } from 'node:perf_hooks'
import { Writable } from 'node:stream'
import type { Socket as ClientSocket } from 'socket.io-client'
import type { SessionEndReason, SessionSocket } from '../types/index'
import { client, connect, once, refused, sleep, transportModes } from './helpers/client'
import { watchCrashes } from './helpers/process'
import { login, me } from './helpers/server'
import { adapterReady, skipWithoutRedis, startRedis, startRedisNode, type RedisNode } from './helpers/redis'

interface LogRecord { level: number, msg: string, failures?: number }

/** A Fastify logger that keeps its warnings and errors, to see what the nodes reported. */
function logCollector (): { records: LogRecord[], logger: { level: string, stream: Writable } } {
  const records: LogRecord[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line !== '') records.push(JSON.parse(line))
      callback()
    }
  })
  return { records, logger: { level: 'warn', stream } }
}

function serve (node: RedisNode, name: string): void {
  const handle = (socket: SessionSocket): void => {
    socket.on('whoami', (ack: (seen: unknown) => void) => {
      ack({ node: name, nsp: socket.nsp.name, user: socket.request.session.user ?? null })
    })
  }
  node.app.io.on('connection', handle)
  node.app.io.of('/chat').on('connection', handle)
}

/** Connects, retrying while the nodes reconnect to Redis; resolves with the socket and the attempts made. */
async function connectWhenBack (t: Parameters<typeof connect>[0], url: string, options: Parameters<typeof connect>[2], ms = 5000): Promise<{ socket: ClientSocket, attempts: number }> {
  const deadline = Date.now() + ms
  for (let attempts = 1; ; attempts++) {
    try {
      return { socket: await connect(t, url, options), attempts }
    } catch (err) {
      if (Date.now() > deadline) throw err
      await sleep(25)
    }
  }
}

t.test('Redis stops while clients connect, then comes back', { skip: skipWithoutRedis }, async (t) => {
  // Nothing may crash: record what would have crashed the process instead of letting tap see it first.
  const crashes = watchCrashes(t)

  const redis = await startRedis(t)
  const ended: Array<{ node: string, sessionId: string, reason: SessionEndReason }> = []
  const nodes: Record<string, RedisNode> = {}
  const logs: Record<string, LogRecord[]> = {}
  for (const name of ['A', 'B']) {
    const { records, logger } = logCollector()
    logs[name] = records
    nodes[name] = await startRedisNode(t, redis, {
      validateInterval: 50,
      onSessionEnd: (sessionId, reason) => { ended.push({ node: name, sessionId, reason }) }
    }, { fastify: { logger } })
    serve(nodes[name], name)
  }
  const { A: a, B: b } = nodes
  await adapterReady(a, ['/', '/chat'], 2)

  const cookie = await login(a.url, 'Ada')
  const { sessionId } = await me(a.url, cookie)
  const connected: Array<{ label: string, socket: ClientSocket, reasons: string[] }> = []
  for (const [name, node] of Object.entries(nodes)) {
    for (const { name: mode, transports } of transportModes) {
      for (const namespace of ['/', '/chat']) {
        const socket = await connect(t, node.url, { cookie, transports, namespace })
        const reasons: string[] = []
        socket.on('disconnect', (reason) => reasons.push(reason))
        connected.push({ label: `${name}, ${mode}, ${namespace}`, socket, reasons })
      }
    }
  }

  await t.test('handshakes started while Redis stops settle at once: connected or SESSION_ERROR', async (t) => {
    const outcomes: Array<Promise<string>> = []
    const attempt = (node: RedisNode, transports: typeof transportModes[number]['transports']): void => {
      const socket = client(t, node.url, { cookie, transports })
      outcomes.push(new Promise((resolve) => {
        socket.once('connect', () => resolve('connected'))
        socket.once('connect_error', (err: Error & { data?: { code?: string } }) => resolve(err.data?.code ?? err.message))
      }))
    }
    const stop = { at: 0 }
    const stopping = redis.stop().then(() => { stop.at = performance.now() })
    // A handshake on each node and transport every 10 ms, until 50 ms after redis-server has exited.
    const stillStopping = (): boolean => stop.at === 0 || performance.now() - stop.at < 50
    while (stillStopping()) {
      for (const node of [a, b]) for (const { transports } of transportModes) attempt(node, transports)
      await sleep(10)
    }
    await stopping
    const settled = await Promise.all(outcomes)
    const elapsed = performance.now() - stop.at
    const count = (outcome: string): number => settled.filter((x) => x === outcome).length
    t.equal(count('connected') + count('SESSION_ERROR'), settled.length, `each connected or got SESSION_ERROR: ${count('connected')} connected, ${count('SESSION_ERROR')} SESSION_ERROR`)
    t.ok(count('SESSION_ERROR') >= 4, 'the handshakes after the stop got SESSION_ERROR')
    t.ok(elapsed < 1000, `all settled ${elapsed.toFixed(1)} ms after redis-server exited`)
  })

  await t.test('while Redis is down, handshakes fail fast with SESSION_ERROR on both nodes', async (t) => {
    let slowest = 0
    for (const [name, node] of Object.entries(nodes)) {
      for (const { name: mode, transports } of transportModes) {
        for (const namespace of ['/', '/chat']) {
          const start = performance.now()
          const err = await refused(t, node.url, { cookie, transports, namespace })
          const elapsed = performance.now() - start
          slowest = Math.max(slowest, elapsed)
          t.equal(err.data?.code, 'SESSION_ERROR', `${name}, ${mode}, ${namespace}: SESSION_ERROR in ${elapsed.toFixed(1)} ms`)
          t.ok(elapsed < 1000, `${name}, ${mode}, ${namespace}: under a second`)
        }
      }
    }
    t.comment(`slowest refused handshake while Redis is down: ${slowest.toFixed(1)} ms`)
    t.equal((await fetch(`${a.url}/me`, { headers: { cookie } })).status, 500, 'HTTP requests with a session get a 500, the node keeps serving')
  })

  await t.test('while Redis is down, the expiry sweep disconnects nobody', async (t) => {
    const warningsBefore = [...logs.A, ...logs.B].filter((record) => /sweep/.test(record.msg)).length
    await sleep(400) // about 8 sweeps on each node, validateInterval: 50
    const sweepWarnings = [...logs.A, ...logs.B].filter((record) => /sweep/.test(record.msg)).length - warningsBefore
    t.ok(sweepWarnings >= 2, `the sweeps ran and found the store unreachable (${sweepWarnings} warnings)`)
    t.same(ended, [], 'no session ended')
    for (const { label, socket, reasons } of connected) {
      t.ok(socket.connected && reasons.length === 0, `${label}: still connected`)
    }
    const answers = await Promise.all(connected.map(async ({ socket }) => await socket.timeout(1000).emitWithAck('whoami') as { user: unknown }))
    t.ok(answers.every((answer) => (answer.user as { name?: string } | null)?.name === 'Ada'), 'and every socket still answers, with its session')
  })

  await t.test('Redis comes back: new handshakes succeed without restarting the nodes', async (t) => {
    const start = performance.now()
    await redis.restart() // an empty Redis: no persistence, the sessions are gone
    for (const [name, node] of Object.entries(nodes)) {
      const { socket, attempts } = await connectWhenBack(t, node.url, { cookie })
      const seen = await socket.emitWithAck('whoami') as { user: unknown }
      t.equal(seen.user, null, `${name}: a handshake succeeds (${attempts} attempt(s)), with a fresh session: the old one was lost with Redis`)
    }
    t.comment(`Redis restart to handshakes succeeding on both nodes: ${(performance.now() - start).toFixed(1)} ms`)

    const fresh = await login(a.url, 'Ada')
    for (const { name: mode, transports } of transportModes) {
      for (const namespace of ['/', '/chat']) {
        const socket = await connect(t, b.url, { cookie: fresh, transports, namespace })
        t.same(await socket.emitWithAck('whoami'), { node: 'B', nsp: namespace, user: { id: 'id-Ada', name: 'Ada' } }, `a new login on A is seen on B (${mode}, ${namespace})`)
      }
    }

    // The adapter is back too. (Not through a logout: the sweep of B could see the session destroyed
    // before the adapter's message arrives and close the socket first, with 'transport close'.)
    await adapterReady(a, ['/', '/chat'], 2)
    const freshId = (await me(a.url, fresh)).sessionId
    const onB = await connect(t, b.url, { cookie: fresh, namespace: '/chat', transports: ['polling', 'websocket'] })
    t.equal((await a.app.sessionSockets(freshId)).length, 5, 'A fetches the session\'s sockets on B through the adapter')
    const reason = once<string>(onB, 'disconnect', 2000)
    await a.app.disconnectSession(freshId)
    t.equal(await reason, 'io server disconnect', 'fastify.disconnectSession() on A disconnects a socket on B')
  })

  await t.test('once the store answers again, each node\'s sweep ends its own sockets of the lost session', async (t) => {
    const deadline = Date.now() + 3000
    while (connected.some(({ reasons }) => reasons.length === 0) && Date.now() < deadline) await sleep(20)
    for (const { label, reasons } of connected) t.same(reasons, ['transport close'], `${label}: closed by the sweep`)
    t.same(ended.filter((end) => end.sessionId === sessionId).map((end) => `${end.node}:${end.reason}`).sort(), ['A:destroyed', 'B:destroyed'], 'onSessionEnd once on each node, for its own sockets')
  })

  t.same(crashes, [], 'no uncaught exception, no unhandled rejection')
  t.ok([a, b].every((node) => node.redisErrors.length > 0), 'the Redis clients reported the outage through their error listeners')
})
