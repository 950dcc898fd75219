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
    // The session is busy from now on, before the task starts: a task it queues synchronously waits.
    let release!: () => void
    // Resolved with nothing, whatever the task gives (a reason that is a thenable would otherwise be
    // adopted, and could hold the session's turn for good): the session's turn never rejects.
    const settled = new Promise<void>((resolve) => { release = () => { resolve() } })
    this.tails.set(sessionId, settled)
    settled.then(() => {
      if (this.tails.get(sessionId) === settled) this.tails.delete(sessionId)
    })
    const result = tail === undefined ? start(task) : tail.then(task)
    result.then(release, release)
    return result
  }
}

/** Starts a task now; one that throws instead of rejecting still settles the session's turn. */
function start<T> (task: () => Promise<T>): Promise<T> {
  try {
    return task()
  } catch (err) {
    return Promise.reject(err)
  }
}
