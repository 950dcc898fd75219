// The client side of the live-authority bench: a child process of bench/authority.mjs, driven over
// IPC. It logs sessions in over HTTP, holds their sockets (socket.io-client, websocket only,
// forceNew, no reconnection), sends the requests that change or end the sessions, and timestamps
// what the sockets receive, all on this process's clock (performance.now()). Every wait has a
// timeout and every loop a count.
import { io } from 'socket.io-client'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { answerCommands } from './servers/control.mjs'
import { pool } from './pool.mjs'

/** Groups of sessions: name → [{ cookie, tag, sockets, events, waiters }]. */
const groups = new Map()

async function post (url, path, cookie, body = {}) {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(cookie === undefined ? {} : { cookie }) },
    body: JSON.stringify(body)
  })
  const text = await res.text()
  if (res.status !== 200) throw new Error(`POST ${path}: HTTP ${res.status}`)
  return { res, body: text === '' ? undefined : JSON.parse(text) }
}

function record (entry, kind, value) {
  entry.events.push({ kind, value, t: performance.now() })
  for (const check of [...entry.waiters]) check()
}

/** Resolves with the first event of `entry` (from index `from`) that `match`es, or null after `timeoutMs`. */
function waitForEvent (entry, from, match, timeoutMs) {
  return new Promise((resolve) => {
    const check = () => {
      const found = entry.events.slice(from).find(match)
      if (found !== undefined) finish(found)
    }
    const timer = setTimeout(() => finish(null), timeoutMs)
    function finish (value) {
      clearTimeout(timer)
      entry.waiters.delete(check)
      resolve(value)
    }
    entry.waiters.add(check)
    check()
  })
}

function connectOne (url, cookie, tag, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const socket = io(url, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      extraHeaders: { cookie, origin: url },
      query: { tag },
      timeout: timeoutMs
    })
    const timer = setTimeout(() => fail(new Error('connect timeout')), timeoutMs)
    function fail (err) {
      clearTimeout(timer)
      socket.disconnect()
      reject(err)
    }
    socket.once('connect_error', fail)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.off('connect_error', fail)
      resolve(socket)
    })
  })
}

function percentile (sorted, p) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

const commands = {
  /** Logs `count` sessions in on `url`; `watch` marks them for 'bench:v' reports. */
  async login ({ group, url, count, watch = false, concurrency = 10 }) {
    if (groups.has(group)) throw new Error(`group ${group} exists`)
    const entries = await pool(count, concurrency, async () => {
      const { res } = await post(url, '/login', undefined, { watch })
      const cookie = res.headers.getSetCookie().map((c) => c.split(';', 1)[0]).join('; ')
      if (cookie === '') throw new Error('login: no Set-Cookie')
      return { cookie, tag: randomUUID(), sockets: [], events: [], waiters: new Set() }
    })
    groups.set(group, entries)
    return { sessions: entries.length }
  },

  /** Opens one socket per session of the group on each of `urls`; every event they get is timestamped. */
  async open ({ group, urls, concurrency = 20 }) {
    const entries = groups.get(group)
    let failures = 0
    for (const url of urls) {
      await pool(entries.length, concurrency, async (i) => {
        const entry = entries[i]
        try {
          const socket = await connectOne(url, entry.cookie, entry.tag)
          const node = entry.sockets.length
          entry.sockets.push(socket)
          for (const kind of ['bench:v', 'bench:ping', 'session:end']) socket.on(kind, (value) => record(entry, kind, { node, value }))
          socket.on('disconnect', (reason) => record(entry, 'disconnect', { node, value: reason }))
        } catch {
          failures++
        }
      })
    }
    return { sockets: entries.reduce((s, e) => s + e.sockets.length, 0), failures }
  },

  /**
   * One request at a time, for each session of the group: sends `scenario`'s request to `url` and
   * waits (bounded) for what every socket of the session must receive. Returns, per session, the
   * times (ms) from sending the request to the response (body read) and to the last socket's event
   * (and 'disconnect'), with the reasons the sockets got.
   */
  async latency ({ group, url, scenario, timeoutMs = 5000, gapMs = 0 }) {
    const entries = groups.get(group)
    const samples = []
    let seq = 0
    for (const entry of entries) {
      if (gapMs > 0) await sleep(gapMs)
      const from = entry.events.length
      const n = ++seq + Math.random()
      let path, body, waits
      const on = (kind, pred = () => true) => (node) => (e) => e.kind === kind && e.value.node === node && pred(e.value.value)
      if (scenario === 'ping') {
        path = '/ping'; body = { tag: entry.tag, n }
        waits = { event: on('bench:ping', (v) => v === n) }
      } else if (scenario === 'change') {
        path = '/change'; body = { v: n }
        waits = { event: on('bench:v', (v) => v === n) }
      } else if (scenario === 'revoke' || scenario === 'logout') {
        path = `/${scenario}`; body = {}
        waits = { event: on('session:end'), disconnect: on('disconnect') }
      } else {
        throw new Error(`unknown scenario ${scenario}`)
      }
      // Armed before the request: the sockets may get it before the response arrives.
      const armed = Object.entries(waits).map(([k, match]) => [k, entry.sockets.map((_, node) => waitForEvent(entry, from, match(node), timeoutMs))])
      const t0 = performance.now()
      const { body: answer } = await post(url, path, entry.cookie, body)
      const tResponse = performance.now()
      const sample = { responseMs: tResponse - t0 }
      for (const [k, promises] of armed) {
        const got = await Promise.all(promises)
        sample[`${k}Ms`] = got.some((e) => e === null) ? null : Math.max(...got.map((e) => e.t - t0))
        if (scenario === 'revoke' || scenario === 'logout') {
          const reasons = [...new Set(got.map((e) => (e === null ? null : e.value.value?.reason ?? e.value.value)))]
          sample[`${k}Reason`] = reasons.length === 1 ? reasons[0] : reasons.join(',')
        }
      }
      if (scenario === 'logout') sample.result = answer
      samples.push(sample)
    }
    return { samples }
  },

  /**
   * Asks every socket of the group what its session holds now ({ user, v }, through an ack, which the
   * plugin runs in the session's turn, after any sync in progress): per session, one answer per
   * socket (null if not connected or no answer), and the last value its sockets reported changing.
   */
  async whoami ({ group, timeoutMs = 5000 }) {
    const entries = groups.get(group)
    const answers = []
    for (const entry of entries) {
      answers.push(await Promise.all(entry.sockets.map((socket) => socket.connected
        ? socket.timeout(timeoutMs).emitWithAck('whoami').catch(() => null)
        : null)))
    }
    return { answers, last: entries.map((e) => e.events.findLast((x) => x.kind === 'bench:v')?.value.value) }
  },

  /**
   * Throughput: `n` POST /change requests to `url` with `concurrency` in flight, the group's sessions
   * taken round-robin, each setting `v` to a new number.
   */
  async load ({ group, url, n, concurrency }) {
    const entries = groups.get(group)
    let failures = 0
    const latencies = []
    const t0 = performance.now()
    await pool(n, concurrency, async (i) => {
      const t1 = performance.now()
      try {
        await post(url, '/change', entries[i % entries.length].cookie, { v: i })
        latencies.push(performance.now() - t1)
      } catch {
        failures++
      }
    })
    const elapsedMs = performance.now() - t0
    latencies.sort((x, y) => x - y)
    return { n, failures, elapsedMs, p50: percentile(latencies, 50), p99: percentile(latencies, 99) }
  },

  /** Disconnects the group's sockets and forgets it. */
  async close ({ group }) {
    const entries = groups.get(group) ?? []
    for (const entry of entries) for (const socket of entry.sockets) socket.disconnect()
    groups.delete(group)
    return { closed: entries.length }
  },

  async exit () {
    for (const name of [...groups.keys()]) await commands.close({ group: name })
    setTimeout(() => process.exit(0), 50)
    return { exiting: true }
  }
}

answerCommands(commands)
