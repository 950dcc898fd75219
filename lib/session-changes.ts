import type { FastifySessionObject } from '@fastify/session'
import { DELETED, type Changes } from './session-store'

/** A field that JSON cannot encode (a cycle, a BigInt, a function...) when the snapshot was taken. */
const UNSTORABLE = '\u0000unstorable'

/** The session object's prototype when each snapshot was taken, to find a handler that replaced it. */
const prototypes = new WeakMap<Map<string, string>, object | null>()

/**
 * A session change the store cannot hold: nothing of it was saved, the session object was put back as
 * it was before the handler, and the socket goes on.
 */
export class UnstorableChangeError extends Error {
  readonly code = 'SESSION_UNSTORABLE_CHANGE'
  constructor (readonly fields: string[], problems: string[]) {
    super(`the session change was refused, nothing was saved: ${problems.join('; ')}`)
    this.name = 'UnstorableChangeError'
  }
}

/**
 * A field as JSON, or, for a value a store cannot hold as it is (see `problemOf`), UNSTORABLE followed
 * by what JSON would keep of it, if anything: a change to such a value is still seen as a change.
 */
function encodeField (value: unknown): string {
  if (value === undefined) return 'undefined'
  const json = checkedJson(value)
  if (json !== undefined) return json
  try {
    return UNSTORABLE + (JSON.stringify(value) ?? '')
  } catch {
    return UNSTORABLE // a cycle, a BigInt, a toJSON that throws, too deep
  }
}

/**
 * The fields of a session as JSON, each on its own, to tell later which ones an event handler
 * changed. The cookie is the session's metadata, not a field a handler saves.
 */
export function snapshot (session: FastifySessionObject): Map<string, string> {
  const fields = new Map<string, string>()
  for (const key of Object.keys(session)) {
    if (key !== 'cookie') fields.set(key, encodeField((session as unknown as Record<string, unknown>)[key]))
  }
  prototypes.set(fields, Object.getPrototypeOf(session))
  return fields
}

/**
 * The fields that differ from the snapshot, as JSON-safe copies (what a store would keep), deleted
 * ones as DELETED. A change the store cannot hold as it is (see `problemOf`), a field named like one
 * of the session object's own members (`save`, `constructor`, `__proto__`...), or a replaced prototype
 * refuses the whole change: the session object is restored to the snapshot and UnstorableChangeError
 * is thrown. Nothing is dropped silently, and what the store holds is never touched.
 */
export function changesSince (before: Map<string, string>, session: FastifySessionObject): Changes {
  const changes: Changes = new Map()
  const problems: string[] = []
  const fields = session as unknown as Record<string, unknown>
  const prototype = prototypes.has(before) ? prototypes.get(before) as object | null : Object.getPrototypeOf(session)
  const replaced = Object.getPrototypeOf(session) !== prototype
  if (replaced) {
    Object.setPrototypeOf(session, prototype) // session.set('__proto__', x), Object.assign(session, parsedJson)...
    problems.push('the session object\'s prototype was replaced (a \'__proto__\' key)')
  }
  const changed: string[] = []
  for (const key of Object.keys(session)) {
    if (key === 'cookie') continue
    const value = fields[key]
    const json = encodeField(value)
    if (before.get(key) === json) continue
    changed.push(key)
    if (prototype !== null && key in prototype) {
      problems.push(`field '${key}' has a name the session object uses itself`)
    } else if (json.startsWith(UNSTORABLE)) {
      problems.push(`field '${key}' holds ${problemOf(value) ?? 'a value JSON cannot encode'}`)
    } else {
      changes.set(key, json === 'undefined' ? DELETED : JSON.parse(json))
    }
  }
  for (const key of before.keys()) {
    if (!Object.hasOwn(session, key)) {
      changed.push(key)
      changes.set(key, DELETED)
    }
  }
  if (problems.length === 0) return changes
  restore(before, session, changed)
  throw new UnstorableChangeError(changed, problems)
}

/** Puts the named fields back as the snapshot had them (removing those it did not have). */
function restore (before: Map<string, string>, session: FastifySessionObject, keys: string[]): void {
  const fields = session as unknown as Record<string, unknown>
  for (const key of keys) {
    const json = before.get(key)
    if (json?.startsWith(UNSTORABLE) === true) continue // nothing to restore it from; it was not saved before either
    if (json === undefined) {
      delete fields[key]
    } else {
      // defineProperty, not assignment: a key such as '__proto__' must stay a plain field
      Object.defineProperty(session, key, { value: json === 'undefined' ? undefined : JSON.parse(json), writable: true, enumerable: true, configurable: true })
    }
  }
}

const lossyObjects: Array<[new (...args: any[]) => object, string]> = [
  [Map, 'a Map'], [Set, 'a Set'], [WeakMap, 'a WeakMap'], [WeakSet, 'a WeakSet'], [Promise, 'a Promise'], [RegExp, 'a RegExp']
]

/**
 * Why a value cannot be stored as it is (what JSON, and so every session store, would lose or refuse),
 * or undefined: a cycle, a BigInt, a function or a symbol anywhere in it, NaN or an infinity, a Map, a
 * Set (stored as {}), and '__proto__' or 'constructor' keys at any depth (prototype pollution, for
 * whatever merges the data later).
 */
export function problemOf (value: unknown): string | undefined {
  return checkedJson(value) === undefined ? problem : undefined // checkedJson sets `problem` whenever it gives undefined
}

/** What the last `checkedJson` found (one check runs at a time: it is synchronous). */
let problem: string | undefined

function checkItem (key: string, item: unknown): unknown {
  if (problem !== undefined) return undefined
  if (key === '__proto__' || key === 'constructor') {
    problem = `a '${key}' key`
  } else if (typeof item === 'function') {
    problem = 'a function'
  } else if (typeof item === 'symbol') {
    problem = 'a symbol'
  } else if (typeof item === 'bigint') {
    problem = 'a BigInt'
  } else if (typeof item === 'number' && !Number.isFinite(item)) {
    problem = String(item)
  } else if (typeof item === 'object' && item !== null && Object.getPrototypeOf(item) !== Object.prototype && !Array.isArray(item)) {
    problem = lossyObjects.find(([type]) => item instanceof type)?.[1]
  }
  return problem === undefined ? item : undefined
}

/** The value as JSON, in one pass that checks every key and value; undefined (and `problem` set) if it cannot be stored. */
function checkedJson (value: unknown): string | undefined {
  problem = undefined
  let json: string | undefined
  try {
    json = JSON.stringify(value, checkItem)
  } catch (err) {
    problem ??= err instanceof RangeError ? 'a value nested too deep' : /circular/i.test(String(err)) ? 'a cycle' : 'a value JSON cannot encode'
    return undefined
  }
  if (problem !== undefined) return undefined
  if (json === undefined) problem = 'a value JSON cannot encode'
  return json
}
