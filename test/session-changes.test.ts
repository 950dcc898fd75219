import t from 'tap'
import Fastify from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession, { type FastifySessionObject } from '@fastify/session'
import type { IncomingMessage } from 'node:http'
import { changesSince, problemOf, snapshot, UnstorableChangeError } from '../lib/session-changes'
import { DELETED } from '../lib/session-store'
import { secret } from './helpers/server'

// Table tests of what an event handler changed in a session (no server listening): the snapshot taken
// before the handler, and the changes a store is given after it, or the refusal of a change it cannot hold.

type Fields = Record<string, unknown>

const app = Fastify()
t.teardown(() => app.close())
t.before(async () => {
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret, cookie: { secure: false } })
  await app.ready()
})

/** A real, fresh @fastify/session Session (as a handshake without a cookie gets), with the given fields. */
function session (fields: Fields = {}): FastifySessionObject & Fields {
  const request = { headers: {} } as IncomingMessage & { session?: FastifySessionObject }
  app.decryptSession('', request as never, {}, () => {})
  const created = request.session as FastifySessionObject & Fields
  Object.assign(created, fields)
  return created
}

/** The error changesSince throws, or undefined. */
function refusalOf (before: Map<string, string>, s: FastifySessionObject): unknown {
  try {
    changesSince(before, s)
  } catch (err) {
    return err
  }
  return undefined
}

/** Runs `handler` between a snapshot and changesSince, as an event does. */
function changesOf (fields: Fields, handler: (session: FastifySessionObject & Fields) => void): Map<string, unknown> {
  const s = session(fields)
  const before = snapshot(s)
  handler(s)
  return changesSince(before, s)
}

t.test('snapshot: one entry per field, as JSON, without the cookie', async (t) => {
  t.same([...snapshot(session())], [], 'a fresh session has no field')
  const s = session({ account: { id: 'u1' }, count: 1, gone: undefined })
  t.same([...snapshot(s)], [['account', '{"id":"u1"}'], ['count', '1'], ['gone', 'undefined']])
})

t.test('changesSince (table): added, changed, deleted, undefined, unchanged', async (t) => {
  const since = new Date(0)
  const cases: Array<[why: string, before: Fields, handler: (s: Fields & FastifySessionObject) => void, changes: Array<[string, unknown]>]> = [
    ['nothing done', { a: 1 }, () => {}, []],
    ['added', {}, (s) => { s.set('account' as never, { id: 'u1' } as never) }, [['account', { id: 'u1' }]]],
    ['added by assignment', {}, (s) => { s.account = 'ada' }, [['account', 'ada']]],
    ['changed', { count: 1 }, (s) => { s.count = 2 }, [['count', 2]]],
    ['changed in place (nested)', { account: { name: 'Ada', tags: ['a'] } }, (s) => { (s.account as { tags: string[] }).tags.push('b') },
      [['account', { name: 'Ada', tags: ['a', 'b'] }]]],
    ['set to the same value', { count: 1 }, (s) => { s.count = 1 }, []],
    ['replaced by an equal copy', { account: { id: 'u1' } }, (s) => { s.account = { id: 'u1' } }, []],
    ['deleted', { a: 1, b: 2 }, (s) => { delete s.a }, [['a', DELETED]]],
    ['set to undefined', { a: 1 }, (s) => { s.a = undefined }, [['a', DELETED]]],
    ['undefined, then given a value', { a: undefined }, (s) => { s.a = 0 }, [['a', 0]]],
    ['undefined, still undefined', { a: undefined }, (s) => { s.a = undefined }, []],
    ['undefined, then deleted', { a: undefined }, (s) => { delete s.a }, [['a', DELETED]]],
    ['null is a value, not a deletion', { a: 1 }, (s) => { s.a = null }, [['a', null]]],
    ['falsy values', {}, (s) => { Object.assign(s, { zero: 0, empty: '', no: false }) }, [['zero', 0], ['empty', ''], ['no', false]]],
    ['a Date is stored as JSON keeps it', {}, (s) => { s.since = since }, [['since', since.toJSON()]]],
    ['an undefined property inside an object is dropped, as JSON does', {}, (s) => { s.prefs = { a: undefined, b: 1 } }, [['prefs', { b: 1 }]]],
    ['a toJSON value', {}, (s) => { s.x = { toJSON: () => 'as json' } }, [['x', 'as json']]],
    ['an object without prototype', {}, (s) => { s.x = Object.assign(Object.create(null), { a: 1 }) }, [['x', { a: 1 }]]],
    ['several at once', { a: 1, b: 2, c: 3 }, (s) => { s.a = 10; delete s.b; s.d = 4 }, [['a', 10], ['d', 4], ['b', DELETED]]],
    ['an unstorable value replaced by a storable one', { f: () => 1 }, (s) => { s.f = 'now a string' }, [['f', 'now a string']]],
    ['an unstorable value deleted', { f: () => 1 }, (s) => { delete s.f }, [['f', DELETED]]],
    ['the cookie is not a field', {}, (s) => { s.cookie.maxAge = 1000 }, []]
  ]
  for (const [why, before, handler, changes] of cases) {
    t.same([...changesOf(before, handler)], changes, why)
  }
})

t.test('the changes are copies: later mutation of the session does not alter what the store is given', async (t) => {
  const account = { id: 'u1', tags: ['a'] }
  const changes = changesOf({}, (s) => { s.account = account })
  account.tags.push('b')
  t.same(changes.get('account'), { id: 'u1', tags: ['a'] })
  t.not(changes.get('account'), account)
})

t.test('a snapshot taken without snapshot() (another prototype) still compares fields', async (t) => {
  const s = session({ a: 1 })
  const before = new Map([['a', '1']])
  s.a = 2
  t.same([...changesSince(before, s)], [['a', 2]])
})

/** Values a store cannot hold as they are, and what the error says each is. */
function deep (levels: number): unknown {
  let value: unknown[] = []
  for (let i = 0; i < levels; i++) value = [value]
  return value
}
const cycle: Fields = { name: 'loop' }
cycle.self = cycle
const unstorable: Array<[value: unknown, problem: string]> = [
  [() => 1, 'a function'],
  [Symbol('s'), 'a symbol'],
  [10n, 'a BigInt'],
  [Number.NaN, 'NaN'],
  [Infinity, 'Infinity'],
  [-Infinity, '-Infinity'],
  [new Map([['a', 1]]), 'a Map'],
  [new Set([1]), 'a Set'],
  [new WeakMap(), 'a WeakMap'],
  [new WeakSet(), 'a WeakSet'],
  [Promise.resolve(1), 'a Promise'],
  [/re/, 'a RegExp'],
  [cycle, 'a cycle'],
  [JSON.parse('{"a":{"__proto__":{"admin":true}}}'), 'a \'__proto__\' key'],
  [{ constructor: { prototype: {} } }, 'a \'constructor\' key'],
  [{ nested: [1, { deeper: () => 1 }] }, 'a function'],
  [{ n: 1n }, 'a BigInt'],
  [[Number.NaN], 'NaN'],
  [{ toJSON () { throw new Error('no') } }, 'a value JSON cannot encode'],
  [{ first: () => 1, later: { toJSON () { throw new Error('no') } } }, 'a function'],
  [{ toJSON: () => undefined }, 'a value JSON cannot encode'],
  [deep(100_000), 'a value nested too deep']
]

t.test('problemOf (table): why a value cannot be stored as it is, or undefined', async (t) => {
  for (const [value, problem] of unstorable) t.equal(problemOf(value), problem, problem)
  class Point { constructor (readonly x: number) {} }
  const storable: unknown[] = [null, 0, '', 'text', true, [], {}, [1, 'a', null], { a: { b: [{ c: 1 }] } }, new Date(0),
    new Point(1), Object.create(null), { toJSON: () => 'x' }, { __proto_: 1, constructors: 2 }]
  for (const value of storable) t.equal(problemOf(value), undefined, `storable: ${JSON.stringify(value)}`)
  t.equal(problemOf(undefined), 'a value JSON cannot encode', 'undefined alone is not a JSON value')
})

t.test('an unstorable change (table) is refused whole: error naming the field and the problem, session put back', async (t) => {
  for (const [value, problem] of unstorable) {
    const s = session({ count: 1, account: { id: 'u1' } })
    const before = snapshot(s)
    s.count = 2
    s.bad = value
    const err = refusalOf(before, s)
    t.ok(err instanceof UnstorableChangeError, `${problem}: UnstorableChangeError`)
    t.match(err, { code: 'SESSION_UNSTORABLE_CHANGE', message: `field 'bad' holds ${problem}` }, problem)
    t.same((err as UnstorableChangeError).fields, ['count', 'bad'], `${problem}: the fields of the refused change`)
    t.match((err as Error).message, /^the session change was refused, nothing was saved: /)
    t.equal(s.count, 1, `${problem}: the storable change is undone too`)
    t.notOk(Object.hasOwn(s, 'bad'), `${problem}: the added field is removed`)
    t.same(snapshot(s), before, `${problem}: the session is as it was`)
  }
})

t.test('a refused change puts back changed and deleted fields as the snapshot had them', async (t) => {
  const s = session({ a: { n: 1 }, b: 'kept', u: undefined })
  const before = snapshot(s)
  s.a = { n: 2 }
  delete s.b
  s.u = 5
  s.f = () => 1
  t.same((refusalOf(before, s) as UnstorableChangeError).fields, ['a', 'u', 'f', 'b'])
  t.same({ a: s.a, b: s.b, u: s.u, f: s.f }, { a: { n: 1 }, b: 'kept', u: undefined, f: undefined })
  t.ok(Object.hasOwn(s, 'u'), 'a field that was undefined is back as an undefined field')
})

t.test('a value whose JSON changes from one read to the next (unstorable at first) is refused with the generic problem', async (t) => {
  const s = session({ a: 1 })
  const before = snapshot(s)
  let reads = 0
  s.flaky = { toJSON: () => ++reads === 1 ? () => 1 : 'fine now' }
  const err = refusalOf(before, s) as UnstorableChangeError
  t.match(err, { message: /field 'flaky' holds a value JSON cannot encode/ })
  t.same(err.fields, ['flaky'])
  t.notOk(Object.hasOwn(s, 'flaky'), 'and removed')
})

t.test('a field that was already unstorable is left as the handler made it (nothing to restore it from)', async (t) => {
  const s = session({ list: [() => 1] })
  const before = snapshot(s)
  const replaced = [() => 2, () => 3]
  s.list = replaced
  const err = refusalOf(before, s) as UnstorableChangeError
  t.match(err, { message: /field 'list' holds a function/ })
  t.same(err.fields, ['list'])
  t.equal(s.list, replaced)
})

t.test('a field named like a member of the session object is refused, and the member is back', async (t) => {
  for (const name of ['save', 'get', 'set', 'destroy', 'regenerate', 'touch', 'isModified', 'constructor']) {
    const s = session()
    const member = (s as unknown as Fields)[name]
    const before = snapshot(s)
    s.set(name, 'shadowed')
    const err = refusalOf(before, s) as UnstorableChangeError
    t.match(err, { message: `field '${name}' has a name the session object uses itself` }, name)
    t.same(err.fields, [name], `${name}: the field named`)
    t.notOk(Object.hasOwn(s, name), `${name}: the own field is removed`)
    t.equal((s as unknown as Fields)[name], member, `${name}: the session's own member is back`)
  }
})

t.test('a replaced prototype is refused and the prototype restored', async (t) => {
  for (const [why, replace] of [
    ['session.set(\'__proto__\', ...)', (s: FastifySessionObject) => { s.set('__proto__' as never, { admin: true } as never) }],
    ['Object.assign(session, parsed JSON)', (s: FastifySessionObject) => { Object.assign(s, JSON.parse('{"__proto__":{"admin":true}}')) }],
    ['Object.setPrototypeOf(session, null)', (s: FastifySessionObject) => { Object.setPrototypeOf(s, null) }]
  ] as const) {
    const s = session({ a: 1 })
    const prototype = Object.getPrototypeOf(s)
    const before = snapshot(s)
    replace(s)
    t.match(refusalOf(before, s), { message: /the session object's prototype was replaced/ }, why)
    t.equal(Object.getPrototypeOf(s), prototype, `${why}: prototype restored`)
    t.equal((s as unknown as Fields).admin, undefined, `${why}: nothing of it left`)
    t.equal(typeof s.save, 'function', `${why}: the session works again`)
  }
})
