import type { SessionStore } from '@fastify/session'

/**
 * A session store that behaves like a real one (it keeps JSON, not the live objects the memory store
 * keeps) and counts its operations; `failing` makes every call fail, as an unreachable store does.
 */
export class TestStore implements SessionStore {
  readonly data = new Map<string, string>()
  readonly calls = { get: 0, set: 0, destroy: 0 }
  failing = false

  get (sessionId: string, callback: (err: unknown, session?: any) => void): void {
    this.calls.get++
    if (this.failing) return callback(new Error('store unreachable'))
    const json = this.data.get(sessionId)
    callback(null, json === undefined ? null : JSON.parse(json))
  }

  set (sessionId: string, session: unknown, callback: (err?: unknown) => void): void {
    this.calls.set++
    if (this.failing) return callback(new Error('store unreachable'))
    this.data.set(sessionId, JSON.stringify(session))
    callback()
  }

  destroy (sessionId: string, callback: (err?: unknown) => void): void {
    this.calls.destroy++
    if (this.failing) return callback(new Error('store unreachable'))
    this.data.delete(sessionId)
    callback()
  }

  /** The stored session, as a plain object. */
  read (sessionId: string): Record<string, any> | undefined {
    const json = this.data.get(sessionId)
    return json === undefined ? undefined : JSON.parse(json)
  }
}
