// Child processes of the bench scripts (run.mjs, authority.mjs, stress.mjs): every one started here
// is tracked and killed on the way out. A child is driven over IPC ({ id, cmd } → { id, result |
// error }) and says `{ ready: true, ... }` once it listens.
import { fork } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))

/** The live child processes; whatever a script adds here is killed when it exits. */
export const children = new Set()

function killChildren () {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
}
process.on('exit', killChildren)
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killChildren()
    process.exit(130)
  })
}

export function withTimeout (promise, ms, what) {
  let timer
  return Promise.race([
    promise,
    new Promise((resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms) })
  ]).finally(() => clearTimeout(timer))
}

/**
 * Forks `file` (relative to bench/). `ready()` resolves with the child's ready message; `call(cmd)`
 * with its answer; `stop()` asks it to exit, then kills it.
 */
export function startChild (file, args = [], { execArgv = [], readyTimeoutMs = 20_000, callTimeoutMs = 60_000 } = {}) {
  const child = fork(join(here, file), args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.add(child)
  const pending = new Map()
  let seq = 0
  let onReady
  const readyMessage = new Promise((resolve, reject) => {
    onReady = resolve
    child.once('exit', (code) => reject(new Error(`${file} exited (${code}) before it was ready`)))
  })
  readyMessage.catch(() => {})
  child.on('message', (msg) => {
    if (msg?.ready) return onReady(msg)
    const entry = pending.get(msg?.id)
    if (entry === undefined) return
    pending.delete(msg.id)
    clearTimeout(entry.timer)
    if (msg.error !== undefined) entry.reject(new Error(`${file} ${entry.cmd}: ${msg.error}`))
    else entry.resolve(msg.result)
  })
  child.on('exit', (code, signal) => {
    children.delete(child)
    for (const entry of pending.values()) {
      clearTimeout(entry.timer)
      entry.reject(new Error(`${file} exited (${code ?? signal}) during ${entry.cmd}`))
    }
    pending.clear()
  })
  function call (cmd, params = {}, timeoutMs = callTimeoutMs) {
    const id = ++seq
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id)
        reject(new Error(`${file} ${cmd}: no answer in ${timeoutMs} ms`))
      }, timeoutMs)
      pending.set(id, { resolve, reject, timer, cmd })
      child.send({ id, cmd, ...params })
    })
  }
  return {
    child,
    ready: (timeoutMs = readyTimeoutMs) => withTimeout(readyMessage, timeoutMs, `${file} ready`),
    call,
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      try { await call('exit', {}, 5000) } catch {}
      if (!(await withTimeout(exited, 5000, 'exit').then(() => true, () => false))) {
        child.kill('SIGKILL')
        await exited
      }
    }
  }
}
