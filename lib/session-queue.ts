/**
 * Runs the tasks of one session one after the other, across all of its sockets on this node: an
 * event's reload, handler and save, and the sweep's check, never interleave with another's. A task
 * on an idle session starts at once (synchronously), so a handler runs inside Socket.IO's dispatch
 * as it would without the plugin. Sessions with nothing queued hold no memory.
 */
export class SessionQueue {
  private readonly tails = new Map<string, Promise<void>>()

  run<T> (sessionId: string, task: () => Promise<T>): Promise<T> {
    const tail = this.tails.get(sessionId)
    const result = tail === undefined ? task() : tail.then(task)
    const settled = result.then(noop, noop)
    this.tails.set(sessionId, settled)
    settled.then(() => {
      if (this.tails.get(sessionId) === settled) this.tails.delete(sessionId)
    }, noop)
    return result
  }
}

function noop (): void {}
