// The load generator: a child process of bench/run.mjs, driven over IPC, with socket.io-client.
// Every loop is bounded: each connection has a timeout, each phase a count.
import { io } from 'socket.io-client'
import { answerCommands } from './servers/control.mjs'
import { pool } from './pool.mjs'

const held = []
let fanout = null
let storm = null

/** An absolute time in ms (since the epoch, sub-ms): comparable across the load processes. */
const now = () => performance.timeOrigin + performance.now()

/** Logs in over HTTP and returns the `name=value` of the session cookie. */
async function login ({ url, headers = {} }) {
  const res = await fetch(`${url}/login`, { method: 'POST', headers })
  if (res.status !== 200) throw new Error(`login: HTTP ${res.status}`)
  await res.arrayBuffer()
  const cookie = res.headers.getSetCookie().map((c) => c.split(';', 1)[0]).join('; ')
  if (cookie === '') throw new Error('login: no Set-Cookie')
  return cookie
}

/**
 * Opens one socket and resolves once it is connected (and, with `upgrade`, once the polling
 * transport has upgraded to websocket), with the time to 'connect' in ms.
 */
function connectOne ({ url, namespace = '/', transports, headers, query, upgrade = false, timeoutMs = 20_000, reconnect }) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const socket = io(url + namespace, {
      transports,
      forceNew: true,
      reconnection: reconnect !== undefined,
      ...reconnect,
      extraHeaders: headers,
      query,
      timeout: timeoutMs
    })
    const timer = setTimeout(() => fail(new Error('timeout')), timeoutMs)
    function fail (err) {
      clearTimeout(timer)
      socket.disconnect()
      reject(err)
    }
    function done (latency) {
      clearTimeout(timer)
      socket.off('connect_error', fail)
      socket.io.engine?.off('upgradeError', fail)
      resolve({ socket, latency })
    }
    socket.once('connect_error', fail)
    socket.once('connect', () => {
      const latency = performance.now() - t0
      const engine = socket.io.engine
      if (!upgrade || engine.transport.name === 'websocket') return done(latency)
      engine.once('upgrade', () => done(latency))
      engine.once('upgradeError', fail)
    })
  })
}

function percentile (sorted, p) {
  if (sorted.length === 0) return NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]
}

const commands = {
  login,

  async loginMany ({ url, headers, count, concurrency = 10 }) {
    return pool(count, concurrency, () => login({ url, headers }))
  },

  /** n handshakes, `concurrency` in flight: connect (then upgrade), disconnect. */
  async handshakes ({ n, concurrency, ...target }) {
    let failures = 0
    const t0 = performance.now()
    const latencies = await pool(n, concurrency, async () => {
      try {
        const { socket, latency } = await connectOne(target)
        socket.disconnect()
        return latency
      } catch {
        failures++
        return NaN
      }
    })
    const elapsedMs = performance.now() - t0
    const sorted = latencies.filter((l) => !Number.isNaN(l)).sort((x, y) => x - y)
    return { n, failures, elapsedMs, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) }
  },

  /** Opens and keeps `count` sockets; `cookies` are used round-robin. */
  async open ({ count, concurrency, cookies, headers = {}, ...target }) {
    let failures = 0
    const t0 = performance.now()
    await pool(count, concurrency, async (i) => {
      const h = cookies === undefined ? headers : { ...headers, cookie: cookies[i % cookies.length] }
      try {
        const { socket } = await connectOne({ ...target, headers: h })
        held.push(socket)
      } catch {
        failures++
      }
    })
    return { opened: count - failures, failures, held: held.length, elapsedMs: performance.now() - t0 }
  },

  async closeAll () {
    const n = held.length
    for (const socket of held.splice(0)) socket.disconnect()
    return { closed: n }
  },

  /** Logout fan-out, first step: opens `count` sockets of one session and watches their 'disconnect'. */
  async fanoutOpen ({ count, concurrency, ...target }) {
    if (fanout !== null) throw new Error('fanoutOpen twice')
    const sockets = []
    let failures = 0
    await pool(count, concurrency, async () => {
      try {
        sockets.push((await connectOne(target)).socket)
      } catch {
        failures++
      }
    })
    const state = { sockets, reasons: {}, disconnected: 0, last: 0 }
    state.all = new Promise((resolve) => {
      for (const socket of sockets) {
        socket.once('disconnect', (reason) => {
          state.reasons[reason] = (state.reasons[reason] ?? 0) + 1
          state.last = performance.now()
          if (++state.disconnected === sockets.length) resolve(true)
        })
      }
    })
    fanout = state
    return { opened: sockets.length, failures }
  },

  /**
   * Logout fan-out, second step: times from sending the logout request to the last of the
   * sockets receiving 'disconnect'.
   */
  async fanoutLogout ({ url, logoutHeaders, timeoutMs = 20_000 }) {
    const state = fanout
    if (state === null) throw new Error('fanoutOpen first')
    fanout = null
    const t0 = performance.now()
    const res = await fetch(`${url}/logout`, { method: 'POST', headers: logoutHeaders })
    const responseMs = performance.now() - t0
    await res.arrayBuffer()
    let timer
    const complete = await Promise.race([state.all, new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs, false) })])
    clearTimeout(timer)
    for (const socket of state.sockets) socket.disconnect()
    return {
      count: state.sockets.length,
      complete,
      disconnected: state.disconnected,
      reasons: state.reasons,
      status: res.status,
      responseMs,
      fanoutMs: complete ? state.last - t0 : NaN
    }
  },

  /**
   * Reconnect storm, first step: opens `count` sockets (with `cookies`, `perCookie` sockets for each
   * cookie in turn) with reconnection on, and watches each one's drop, reconnection attempts and
   * return. `reconnect`: socket.io-client's reconnection options (delay and its randomization).
   */
  async stormOpen ({ count, perCookie = 1, cookies, concurrency, headers = {}, reconnect, ...target }) {
    if (storm !== null) throw new Error('stormOpen twice')
    const entries = []
    let failures = 0
    const n = cookies === undefined ? count : cookies.length * perCookie
    await pool(n, concurrency, async (i) => {
      const h = cookies === undefined ? headers : { ...headers, cookie: cookies[Math.floor(i / perCookie)] }
      try {
        const { socket } = await connectOne({ ...target, headers: h, reconnect })
        const entry = { socket, dropAt: undefined, attemptAt: undefined, backAt: undefined, attempts: 0, reason: undefined }
        socket.on('disconnect', (reason) => {
          entry.dropAt = now()
          entry.reason = reason
          entry.backAt = undefined
        })
        socket.io.on('reconnect_attempt', () => {
          entry.attemptAt = now()
          entry.attempts++
        })
        socket.on('connect', () => {
          if (entry.dropAt === undefined) return
          entry.backAt = now()
          storm.onBack?.()
        })
        entries.push(entry)
      } catch {
        failures++
      }
    })
    storm = { entries, onBack: undefined }
    return { opened: entries.length, failures }
  },

  /**
   * Reconnect storm, second step (once the server has dropped every connection): waits until every
   * socket is connected again, or `timeoutMs`. Times are absolute (ms since the epoch, sub-ms), so
   * that the two load processes can be compared.
   */
  async stormWait ({ timeoutMs = 60_000 }) {
    const state = storm
    if (state === null) throw new Error('stormOpen first')
    const allBack = () => state.entries.every((e) => e.dropAt !== undefined && e.backAt !== undefined)
    const complete = await new Promise((resolve) => {
      if (allBack()) return resolve(true)
      const timer = setTimeout(() => { state.onBack = undefined; resolve(false) }, timeoutMs)
      state.onBack = () => {
        if (!allBack()) return
        clearTimeout(timer)
        state.onBack = undefined
        resolve(true)
      }
    })
    const back = state.entries.filter((e) => e.backAt !== undefined)
    const reasons = {}
    for (const e of state.entries) reasons[e.reason] = (reasons[e.reason] ?? 0) + 1
    return {
      complete,
      count: state.entries.length,
      back: back.length,
      firstDrop: Math.min(...state.entries.map((e) => e.dropAt ?? Infinity)),
      lastBack: Math.max(...back.map((e) => e.backAt)),
      // handshake latency during the storm: from the (last) reconnection attempt to 'connect'
      latencies: back.map((e) => e.backAt - e.attemptAt),
      attempts: state.entries.reduce((sum, e) => sum + e.attempts, 0),
      reasons
    }
  },

  async stormClose () {
    const state = storm
    storm = null
    if (state === null) return { closed: 0 }
    for (const { socket } of state.entries) {
      socket.io.reconnection(false)
      socket.disconnect()
    }
    return { closed: state.entries.length }
  },

  /** Connections the server must refuse: each resolves to the client's error message, or 'connected'. */
  async refused ({ attempts }) {
    const out = []
    for (const target of attempts) {
      try {
        const { socket } = await connectOne({ ...target, timeoutMs: 5000 })
        socket.disconnect()
        out.push('connected')
      } catch (err) {
        out.push(`${err.message}${err.data?.code ? ` (${err.data.code})` : ''}`)
      }
    }
    return out
  },

  async exit () {
    for (const socket of held.splice(0)) socket.disconnect()
    for (const { socket } of storm?.entries ?? []) { socket.io.reconnection(false); socket.disconnect() }
    setTimeout(() => process.exit(0), 50)
    return { exiting: true }
  }
}

answerCommands(commands)
