import t from 'tap'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { SessionSocket } from '../types/index'
import { connect, sleep, transportModes } from './helpers/client'
import { login, startServer } from './helpers/server'
import { TestStore } from './helpers/store'

// A full garbage collection on demand, without starting the process with --expose-gc.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

async function collect (): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc()
    await sleep(20) // lets FinalizationRegistry and WeakRef bookkeeping run between passes
  }
}

/** What keeps the process alive, by kind, as `process.getActiveResourcesInfo()` counts it. */
function resources (): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1
  return counts
}

t.test('connect/disconnect cycles leave no per-session state, and close() leaves no handle or timer', async (t) => {
  const cycles = 400
  await collect()
  const before = resources()
  const store = new TestStore()
  const server = await startServer(t, { authorize: (session) => session.user !== undefined, validateInterval: 200 }, { session: { store } })
  const alive: Array<WeakRef<object>> = []
  for (const nsp of ['/', '/chat']) {
    server.app.io.of(nsp).on('connection', (socket: SessionSocket) => {
      alive.push(new WeakRef(socket), new WeakRef(socket.request.session))
      socket.on('count', (ack: (count: number) => void) => {
        const session = socket.request.session
        session.count = (session.count ?? 0) + 1
        ack(session.count)
      })
    })
  }
  const cookies = await Promise.all(Array.from({ length: 20 }, async (_, i) => await login(server.url, `user${i}`)))

  let saves = 0
  for (let start = 0; start < cycles; start += 20) {
    await Promise.all(Array.from({ length: 20 }, async (_, j) => {
      const i = start + j
      const socket = await connect(t, server.url, { cookie: cookies[i % cookies.length], transports: transportModes[i % 2].transports, namespace: i % 4 < 2 ? '/' : '/chat' })
      if (i % 4 === 0 || i % 4 === 3) {
        await socket.timeout(2000).emitWithAck('count')
        saves++
      }
      socket.disconnect()
    }))
  }
  const deadline = Date.now() + 5000
  while (server.app.io.engine.clientsCount > 0 && Date.now() < deadline) await sleep(10)
  await sleep(500) // two sweeps with nothing to check
  t.equal(saves, cycles / 2, `${cycles} cycles, half of them saving`)
  t.equal(server.app.io.engine.clientsCount, 0, 'no engine connection left')
  for (const nsp of ['/', '/chat']) {
    t.equal(server.app.io.of(nsp).sockets.size, 0, `${nsp}: no socket left`)
    t.equal(server.app.io.of(nsp).adapter.rooms.size, 0, `${nsp}: no room left (session and socket rooms)`)
    t.equal(server.app.io.of(nsp).adapter.sids.size, 0, `${nsp}: no socket id left in the adapter`)
  }
  await collect()
  const retained = alive.filter((ref) => ref.deref() !== undefined).length
  t.ok(retained <= 4, `${retained} of ${alive.length} sockets and sessions still reachable after GC: queues, maps and timers keep none`)
  const held = resources()
  t.ok((held.Timeout ?? 0) <= (before.Timeout ?? 0) + 3, `timers while idle: ${held.Timeout ?? 0} (before the server: ${before.Timeout ?? 0}; the sweep's interval and engine.io's own)`)

  await server.app.close()
  await sleep(50)
  const after = resources()
  t.same(after, before, `after fastify.close(), the active handles and timers are those before the server started: ${JSON.stringify(after)}`)
})
