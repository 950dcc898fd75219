// The stress load generator: a child process of bench/stress.mjs, driven over IPC, with
// socket.io-client. Every connection has a timeout and every phase a count.
import { io } from 'socket.io-client'
import { answerCommands } from './servers/control.mjs'
import { pool } from './pool.mjs'

const held = []
const transports = { websocket: ['websocket'], polling: ['polling', 'websocket'] }

async function login ({ url }) {
  const res = await fetch(`${url}/login`, { method: 'POST' })
  if (res.status !== 200) throw new Error(`login: HTTP ${res.status}`)
  await res.arrayBuffer()
  return res.headers.getSetCookie().map((c) => c.split(';', 1)[0]).join('; ')
}

/** Resolves with the connected socket (upgraded, for polling then websocket) and the time to 'connect'. */
function connectOne ({ url, namespace = '/', transport = 'websocket', cookie, timeoutMs = 20_000 }) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const socket = io(url + namespace, { transports: transports[transport], forceNew: true, reconnection: false, extraHeaders: { origin: url, cookie }, timeout: timeoutMs })
    const timer = setTimeout(() => fail(new Error('timeout')), timeoutMs)
    function fail (err) { clearTimeout(timer); socket.disconnect(); reject(err) }
    socket.once('connect_error', fail)
    socket.once('connect', () => {
      const latency = performance.now() - t0
      const done = () => { clearTimeout(timer); resolve({ socket, latency }) }
      if (transport === 'websocket' || socket.io.engine.transport.name === 'websocket') return done()
      socket.io.engine.once('upgrade', done)
      socket.io.engine.once('upgradeError', fail)
    })
  })
}

function percentile (values, p) {
  const sorted = values.filter(Number.isFinite).sort((x, y) => x - y)
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

answerCommands({
  login,
  async loginMany ({ url, count, concurrency = 10 }) {
    return pool(count, concurrency, () => login({ url }))
  },

  /**
   * `n` connect/disconnect cycles, `concurrency` at a time: websocket and polling→websocket in turn,
   * the main namespace and /chat in turn, and every other cycle sends an event that saves the session.
   */
  async cycles ({ url, cookies, n, offset = 0, concurrency = 40 }) {
    let failures = 0
    let saves = 0
    const t0 = performance.now()
    await pool(n, concurrency, async (j) => {
      const i = offset + j
      try {
        const { socket } = await connectOne({ url, cookie: cookies[i % cookies.length], transport: i % 2 === 0 ? 'websocket' : 'polling', namespace: i % 4 < 2 ? '/' : '/chat' })
        if (Math.floor(i / 2) % 2 === 0) {
          await socket.timeout(5000).emitWithAck('count')
          saves++
        }
        socket.disconnect()
      } catch {
        failures++
      }
    })
    return { n, failures, saves, elapsedMs: performance.now() - t0 }
  },

  /** Opens and holds `count` websocket sockets, `perCookie` for each cookie in turn; watches their disconnects. */
  async open ({ url, cookies, perCookie = 1, count, concurrency = 25 }) {
    let failures = 0
    const t0 = performance.now()
    await pool(count, concurrency, async (i) => {
      const cookie = cookies[Math.floor(i / perCookie) % cookies.length]
      try {
        const { socket } = await connectOne({ url, cookie })
        const entry = { socket, cookie, url, disconnectedAt: undefined }
        socket.once('disconnect', () => { entry.disconnectedAt = performance.now() })
        held.push(entry)
      } catch {
        failures++
      }
    })
    return { opened: count - failures, failures, held: held.length, elapsedMs: performance.now() - t0 }
  },

  async closeAll () {
    const n = held.length
    for (const { socket } of held.splice(0)) socket.disconnect()
    return { closed: n }
  },

  /** Handshake latency with one in flight (connect, then disconnect), while the held sockets stay open. */
  async latency ({ url, cookie, n }) {
    const latencies = []
    let failures = 0
    for (let i = 0; i < n; i++) {
      try {
        const { socket, latency } = await connectOne({ url, cookie })
        latencies.push(latency)
        socket.disconnect()
      } catch {
        failures++
      }
    }
    return { n, failures, p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: Math.max(...latencies) }
  },

  /**
   * Logs out each of `cookies` in turn on `logoutUrl` and times, for every held socket of that session
   * (on whichever node), the delay from sending the logout to its 'disconnect'.
   */
  async logoutFanout ({ logoutUrl, cookies, timeoutMs = 10_000 }) {
    const delays = { sameNode: [], otherNode: [] }
    let missing = 0
    for (const cookie of cookies) {
      const sockets = held.filter((entry) => entry.cookie === cookie)
      const t0 = performance.now()
      const res = await fetch(`${logoutUrl}/logout`, { method: 'POST', headers: { cookie } })
      await res.arrayBuffer()
      const deadline = Date.now() + timeoutMs
      while (sockets.some((entry) => entry.disconnectedAt === undefined) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 2))
      for (const entry of sockets) {
        if (entry.disconnectedAt === undefined) missing++
        else delays[entry.url === logoutUrl ? 'sameNode' : 'otherNode'].push(entry.disconnectedAt - t0)
      }
    }
    const summary = (values) => ({ n: values.length, p50: percentile(values, 50), p99: percentile(values, 99), max: Math.max(...values) })
    return { logouts: cookies.length, missing, sameNode: summary(delays.sameNode), otherNode: summary(delays.otherNode), all: summary([...delays.sameNode, ...delays.otherNode]) }
  }
})
