// The IPC side of a server under test: the orchestrator (bench/run.mjs) asks, the server measures
// itself and answers. Nothing here runs while a measured phase is in flight except the answers.
import { Session } from 'node:inspector'
import { writeFileSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { writeHeapSnapshot } from 'node:v8'
import { setTimeout as sleep } from 'node:timers/promises'

const gc = globalThis.gc

/** Waits (bounded) until the engine has exactly `clients` connections open. */
async function waitForClients (io, clients, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs
  while (io.engine.clientsCount !== clients) {
    if (Date.now() > deadline) return false
    await sleep(5)
  }
  return true
}

async function collectGarbage () {
  if (gc === undefined) throw new Error('run the server with --expose-gc')
  for (let i = 0; i < 3; i++) {
    gc()
    await sleep(10) // lets finalizers and weak callbacks run between passes
  }
}

/**
 * Serves the orchestrator's requests: `{ id, cmd, ...args }` in, `{ id, result }` or `{ id, error }` out.
 * `extra` adds commands specific to a server (store read counters, ...).
 */
export function serveControl ({ io, close, extra = {} }) {
  let eld = null
  let probe = null
  let inspector = null
  const post = (method, params = {}) => new Promise((resolve, reject) => {
    inspector.post(method, params, (err, result) => (err ? reject(err) : resolve(result)))
  })
  const commands = {
    // No forced GC here: forcing one before each CPU phase doubled the next phase's CPU per handshake
    // (550 → 1120 µs for bare Socket.IO), probably from a shrunk young generation and flushed bytecode.
    async cpu ({ clients = 0 }) {
      const settled = await waitForClients(io, clients)
      const usage = process.cpuUsage()
      return { settled, clients: io.engine.clientsCount, cpuUs: usage.user + usage.system, user: usage.user, system: usage.system }
    },
    async mem ({ clients = 0 }) {
      const settled = await waitForClients(io, clients, 60_000)
      await collectGarbage()
      const m = process.memoryUsage()
      return { settled, clients: io.engine.clientsCount, heapUsed: m.heapUsed, rss: m.rss, external: m.external, arrayBuffers: m.arrayBuffers }
    },
    async clients ({ clients, timeoutMs }) {
      const settled = await waitForClients(io, clients, timeoutMs)
      return { settled, clients: io.engine.clientsCount }
    },
    async eldStart ({ resolutionMs = 1 }) {
      eld = monitorEventLoopDelay({ resolution: resolutionMs })
      eld.enable()
      return { resolutionMs }
    },
    async eldStop () {
      if (eld === null) throw new Error('eldStart first')
      eld.disable()
      const h = eld
      eld = null
      return { maxMs: h.max / 1e6, p99Ms: h.percentile(99) / 1e6, meanMs: h.mean / 1e6, count: h.count }
    },
    // A 1 ms interval timer: each firing later than 1 ms after the previous one is event-loop delay.
    async probeStart () {
      if (probe !== null) clearInterval(probe.timer)
      const state = { samples: [], maxMs: 0, prev: performance.now() }
      state.timer = setInterval(() => {
        const now = performance.now()
        const lag = now - state.prev - 1
        state.prev = now
        if (lag > state.maxMs) state.maxMs = lag
        if (lag >= 1 && state.samples.length < 100_000) state.samples.push([now, lag])
      }, 1)
      probe = state
      return { started: state.prev }
    },
    async probeStop () {
      if (probe === null) throw new Error('probeStart first')
      clearInterval(probe.timer)
      const { samples, maxMs } = probe
      probe = null
      return { samples, maxMs }
    },
    // The V8 CPU profiler (what `node --cpu-prof` runs), over exactly the window asked for.
    async profileStart ({ intervalUs = 100 }) {
      inspector = new Session()
      inspector.connect()
      await post('Profiler.enable')
      await post('Profiler.setSamplingInterval', { interval: intervalUs })
      await post('Profiler.start')
      return { intervalUs }
    },
    async profileStop ({ path }) {
      const { profile } = await post('Profiler.stop')
      inspector.disconnect()
      inspector = null
      writeFileSync(path, JSON.stringify(profile))
      return { path }
    },
    async heapSnapshot ({ path, clients }) {
      const settled = await waitForClients(io, clients, 60_000)
      await collectGarbage()
      return { settled, path: writeHeapSnapshot(path), heapUsed: process.memoryUsage().heapUsed }
    },
    // Closes every connection at once, as a transport drop does: clients see 'transport close' and
    // reconnect (with their reconnection on).
    async dropAll () {
      const clients = Object.values(io.engine.clients)
      for (const client of clients) client.close()
      return { dropped: clients.length }
    },
    async exit () {
      setImmediate(async () => {
        try { await close() } finally { process.exit(0) }
      })
      return { exiting: true }
    },
    ...extra
  }

  answerCommands(commands)
}

/** Answers the orchestrator's IPC commands ({ id, cmd }) with { id, result } or { id, error }; exits with it. */
export function answerCommands (commands) {
  process.on('message', async (msg) => {
    const fn = commands[msg?.cmd]
    try {
      if (fn === undefined) throw new Error(`unknown command ${msg?.cmd}`)
      process.send({ id: msg.id, result: await fn(msg) })
    } catch (err) {
      process.send({ id: msg.id, error: String(err?.stack ?? err) })
    }
  })
  // The orchestrator died: do not linger.
  process.on('disconnect', () => process.exit(0))
}

/** Listens on a free loopback port with a node:http server and its Socket.IO server, and serves the commands. */
export function listenWithControl (server, io, extra = {}) {
  server.listen(0, '127.0.0.1', () => {
    serveControl({
      io,
      extra,
      close: async () => {
        io.engine.close()
        await io.close()
      }
    })
    ready(server.address().port)
  })
}

/** Tells the orchestrator the server listens. */
export function ready (port, info = {}) {
  process.send({ ready: true, port, ...info })
}
