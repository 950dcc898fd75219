// Counts a session store's reads (get, and any bulk read a sweep may use) and writes, always; and,
// while logging is on, records each one (time, method, session id). Logging is off by default: a
// record per read would be counted in the heap per open socket (about 100 bytes per handshake).

const readMethods = ['get', 'all', 'mget', 'getMany', 'getAll']
const writeMethods = ['set', 'touch', 'destroy']

/** Wraps the store's methods; returns the IPC commands that read the counts and the records. */
export function logStore (store, { log = false } = {}) {
  const state = { log, reads: [], writes: [], readCount: 0, writeCount: 0 }
  for (const name of writeMethods) {
    const original = store[name]
    if (typeof original !== 'function') continue
    store[name] = function countedWrite (...params) {
      state.writeCount++
      if (state.log && state.writes.length < 1_000_000) state.writes.push({ t: performance.now(), method: name })
      return original.apply(this, params)
    }
  }
  for (const name of readMethods) {
    const original = store[name]
    if (typeof original !== 'function') continue
    store[name] = function countedRead (...params) {
      state.readCount++
      if (state.log && state.reads.length < 1_000_000) state.reads.push({ t: performance.now(), method: name, sid: typeof params[0] === 'string' ? params[0] : undefined })
      return original.apply(this, params)
    }
  }
  return {
    /** Turns the records on (from now, cleared) or off (cleared). */
    async logReads ({ on }) {
      state.log = on === true
      state.reads = []
      state.writes = []
      return { now: performance.now(), readCount: state.readCount, writeCount: state.writeCount }
    },
    /** The reads (with the session ids read) and writes recorded since `since` (performance.now() of this process). */
    async reads ({ since = 0 }) {
      return {
        now: performance.now(),
        readCount: state.readCount,
        writeCount: state.writeCount,
        reads: state.reads.filter((r) => r.t >= since).map((r) => [r.t, r.method, r.sid]),
        writes: state.writes.filter((w) => w.t >= since).map((w) => [w.t, w.method])
      }
    },
    async now () {
      return { now: performance.now() }
    }
  }
}
