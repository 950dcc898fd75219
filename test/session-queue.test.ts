import t from 'tap'
import { setImmediate as yieldToEventLoop } from 'node:timers/promises'
import { SessionQueue } from '../lib/session-queue'

// Tests of SessionQueue (no server): one session's tasks one after the other, sessions independent.

/** A promise and its resolve/reject, to let a task finish when the test says so. */
function deferred<T = void> (): { promise: Promise<T>, resolve: (value: T) => void, reject: (err: Error) => void } {
  let resolve!: (value: T) => void
  let reject!: (err: Error) => void
  const promise = new Promise<T>((_resolve, _reject) => { resolve = _resolve; reject = _reject })
  return { promise, resolve, reject }
}

/** The promise's value, or 'stuck' if it has not settled within `ms`. */
async function within<T> (promise: Promise<T>, ms: number): Promise<T | 'stuck'> {
  let timer: NodeJS.Timeout | undefined
  const stuck = new Promise<'stuck'>((resolve) => { timer = setTimeout(resolve, ms, 'stuck') })
  try {
    return await Promise.race([promise, stuck])
  } finally {
    clearTimeout(timer)
  }
}

/** How many sessions the queue holds an entry for (its private map: the property this test pins). */
function entries (queue: SessionQueue): number {
  return (queue as unknown as { tails: Map<string, unknown> }).tails.size
}

t.test('a task on an idle session starts synchronously, and its result is returned', async (t) => {
  const queue = new SessionQueue()
  let started = false
  const result = queue.run('s1', async () => { started = true; return 42 })
  t.ok(started, 'started before run() returned')
  t.equal(await result, 42)
})

t.test('tasks of one session run one after the other, in the order given, even when they finish out of order', async (t) => {
  const queue = new SessionQueue()
  const log: string[] = []
  const gates = [deferred(), deferred(), deferred()]
  const results = gates.map((gate, i) => queue.run('s1', async () => {
    log.push(`start ${i}`)
    await gate.promise
    log.push(`end ${i}`)
    return i
  }))
  t.same(log, ['start 0'], 'only the first started')
  gates[2].resolve()
  gates[1].resolve()
  await yieldToEventLoop()
  t.same(log, ['start 0'], 'later gates opening first changes nothing')
  gates[0].resolve()
  t.same(await Promise.all(results), [0, 1, 2])
  t.same(log, ['start 0', 'end 0', 'start 1', 'end 1', 'start 2', 'end 2'])
})

t.test('a hundred tasks of one session keep their order', async (t) => {
  const queue = new SessionQueue()
  const order: number[] = []
  const all: Array<Promise<void>> = []
  for (let i = 0; i < 100; i++) {
    all.push(queue.run('s1', async () => {
      if (i % 3 === 0) await yieldToEventLoop()
      order.push(i)
    }))
  }
  await Promise.all(all)
  t.same(order, Array.from({ length: 100 }, (_, i) => i))
})

t.test('sessions are independent: a busy session does not delay another', async (t) => {
  const queue = new SessionQueue()
  const gate = deferred()
  const busy = queue.run('busy', async () => await gate.promise)
  let otherStarted = false
  const other = queue.run('other', async () => { otherStarted = true; return 'done' })
  t.ok(otherStarted, 'the other session\'s task started at once')
  t.equal(await other, 'done', 'and finished while the first is still running')
  let busyDone = false
  const marked = busy.then(() => { busyDone = true })
  await yieldToEventLoop()
  t.notOk(busyDone)
  gate.resolve()
  await marked
  t.ok(busyDone)
})

t.test('a task queued by a running task of the same session, after its first await, runs after it', async (t) => {
  const queue = new SessionQueue()
  const log: string[] = []
  let inner: Promise<void> | undefined
  await queue.run('s1', async () => {
    await yieldToEventLoop()
    inner = queue.run('s1', async () => { log.push('inner') })
    await yieldToEventLoop()
    log.push('outer done')
  })
  await inner
  t.same(log, ['outer done', 'inner'])
})

t.test('a task queued by a running task of the same session, before its first await, runs after it', async (t) => {
  const queue = new SessionQueue()
  const log: string[] = []
  let inner: Promise<void> | undefined
  await queue.run('s1', async () => {
    inner = queue.run('s1', async () => { log.push('inner') })
    await yieldToEventLoop()
    log.push('outer done')
  })
  await inner
  t.same(log, ['outer done', 'inner'])
})

t.test('a rejected task rejects its own result and does not block the next', async (t) => {
  const queue = new SessionQueue()
  const gate = deferred()
  const failing = queue.run('s1', async () => { await gate.promise; throw new Error('task failed') })
  const next = queue.run('s1', async () => 'next ran')
  gate.resolve()
  await t.rejects(failing, { message: 'task failed' })
  t.equal(await next, 'next ran')

  const afterReject = queue.run('s1', async () => { throw new Error('at once') })
  await t.rejects(afterReject, { message: 'at once' })
  t.equal(await queue.run('s1', async () => 'still works'), 'still works')
})

t.test('idle sessions hold no entry', async (t) => {
  const queue = new SessionQueue()
  t.equal(entries(queue), 0)
  const gate = deferred()
  const runs = [
    queue.run('a', async () => await gate.promise),
    queue.run('a', async () => {}),
    queue.run('b', async () => {}),
    queue.run('c', async () => { throw new Error('fails') }).catch(() => {})
  ]
  t.equal(entries(queue), 3, 'one entry per session with work queued or running')
  await Promise.all(runs.slice(2))
  await yieldToEventLoop()
  t.equal(entries(queue), 1, 'finished sessions (done or failed) are gone; the busy one stays')
  gate.resolve()
  await Promise.all(runs)
  await yieldToEventLoop()
  t.equal(entries(queue), 0, 'every session idle: no entry')

  let started = false
  const again = queue.run('a', async () => { started = true })
  t.ok(started, 'so a session that went idle starts its next task synchronously again')
  await again
  await yieldToEventLoop()
  t.equal(entries(queue), 0)
})

t.test('many short-lived sessions leave nothing behind', async (t) => {
  const queue = new SessionQueue()
  await Promise.all(Array.from({ length: 1000 }, async (_, i) => await queue.run(`s${i}`, async () => i)))
  await yieldToEventLoop()
  t.equal(entries(queue), 0)
})

t.test('a task that throws instead of rejecting rejects, and the session\'s next task still runs', async (t) => {
  const queue = new SessionQueue()
  const thrower = (() => { throw new Error('sync throw') }) as unknown as () => Promise<void>
  await t.rejects(queue.run('s1', thrower), { message: 'sync throw' })
  t.equal(await queue.run('s1', async () => 'next'), 'next')
})

t.test('a task that rejects with a thenable does not hold the session\'s turn: the next task runs', async (t) => {
  // A reason with a `then` (a promise thrown as is, an object of some library) must not be adopted as
  // the session's turn: one that never settles would stop the session's events for good, one that
  // rejects would skip the next task.
  const reasons: Array<[string, () => unknown]> = [
    ['a thenable that never settles', () => ({ then () {} })],
    ['a rejected promise', () => { const inner = Promise.reject(new Error('inner')); inner.catch(() => {}); return inner }]
  ]
  for (const [label, reasonOf] of reasons) {
    const reason = reasonOf()
    const queue = new SessionQueue()
    const failing = queue.run('s1', async () => { throw reason })
    const next = queue.run('s1', async () => 'next ran')
    await failing.then(() => t.fail('resolved'), (err: unknown) => t.equal(err, reason, `${label}: the task's own result rejects with it`))
    t.equal(await within(next, 1000), 'next ran', `${label}: the next task runs`)
    await yieldToEventLoop()
    t.equal(entries(queue), 0, `${label}: and the session holds no entry once idle`)
  }
})
