import t, { type Test } from 'tap'
import Fastify from 'fastify'
import fastifyCookie, { Signer } from '@fastify/cookie'
import fastifySession from '@fastify/session'
import { compactCookieOptions, sameCookieOptions, savedVersionOf, sameSignerKeys, sessionFactoryOf, sessionStoreOf, signerKeys } from '../lib/session-internals'
import { secret } from './helpers/server'

// lib/session-internals.ts's own fallbacks, for a @fastify/session (or @fastify/cookie) whose private
// layout is not the one it was written for: each is handed an object without the member it reads, as
// a future version would give it. (What the installed versions do is checked in internals.test.ts.)

type AnyRecord = Record<PropertyKey, any>

// First in this file: session-internals remembers each private symbol once it has seen it on a session.
t.test('sessions with none of the private symbols (a version that renamed them): no store, no saved version, nothing compacted', async (t) => {
  const session = { cookie: { path: '/' }, [Symbol('somethingElse')]: { get () {}, set () {} } }
  const keys = Reflect.ownKeys(session)
  t.equal(sessionStoreOf(session as never), undefined, 'sessionStoreOf: no store (the lifecycle then says it found none)')
  t.equal(savedVersionOf(session as never), undefined, 'savedVersionOf: no version (live authority then compares the fields as JSON)')
  compactCookieOptions(session as never)
  t.same(Reflect.ownKeys(session), keys, 'compactCookieOptions adds nothing')
})

async function freshSession (t: Test): Promise<AnyRecord> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret, cookie: { secure: false, maxAge: 60_000 } })
  await app.ready()
  const request: AnyRecord = { headers: {} }
  app.decryptSession('', request as never, () => {})
  return request.session
}

t.test('a store or hash of another shape under the known symbols: not used', async (t) => {
  const session = await freshSession(t)
  const symbol = (description: string): symbol => Object.getOwnPropertySymbols(session).find((s) => s.description === description) as symbol
  t.type(sessionStoreOf(session as never)?.get, 'function', 'the real session\'s store is found')
  t.type(savedVersionOf(session as never), 'string', 'and its saved version')
  t.equal(sessionStoreOf({ [symbol('sessionStore')]: { get () {} } } as never), undefined, 'a store without set()')
  t.equal(sessionStoreOf({ [symbol('sessionStore')]: { set () {} } } as never), undefined, 'a store without get()')
  t.equal(sessionStoreOf({} as never), undefined, 'no store at all')
  t.equal(savedVersionOf({ [symbol('persistedHash')]: 42 } as never), undefined, 'a hash that is not a string')
})

/**
 * A copy of a fresh session, symbol for symbol, with `change` applied to the list of its own
 * properties (descriptions and values), its prototype and its cookie.
 */
function variant (session: AnyRecord, change: { symbols?: (list: Array<[symbol, unknown]>) => Array<[symbol, unknown]>, proto?: object, cookie?: object, extra?: AnyRecord } = {}): AnyRecord {
  const list = Object.getOwnPropertySymbols(session).map((s): [symbol, unknown] => [s, session[s]])
  const copy: AnyRecord = Object.create(change.proto ?? Object.getPrototypeOf(session))
  for (const [s, value] of change.symbols?.(list) ?? list) copy[s] = value
  copy.cookie = change.cookie ?? session.cookie
  return Object.assign(copy, change.extra)
}

t.test('sessionFactoryOf declines any other layout (the loader then calls decryptSession)', async (t) => {
  const session = await freshSession(t)
  const proto = Object.getPrototypeOf(session)
  const hash = Object.getOwnPropertySymbols(proto).find((s) => s.description === 'hash') as symbol
  const withValue = (description: string, value: unknown) => (list: Array<[symbol, unknown]>) => list.map(([s, v]): [symbol, unknown] => [s, s.description === description ? value : v])
  t.ok(sessionFactoryOf(variant(session) as never, () => true), 'an exact copy is recognized (the control)')
  const declined: Array<[string, AnyRecord]> = [
    ['a symbol fewer', variant(session, { symbols: (list) => list.slice(1) })],
    ['the same symbols in another order', variant(session, { symbols: (list) => [...list].reverse() })],
    ['another string-keyed property', variant(session, { extra: { sessionIdCopy: 'x' } })],
    ['a prototype without the hash method', variant(session, { proto: { regenerate: proto.regenerate } })],
    ['a hash that is not a method', variant(session, { proto: { regenerate: proto.regenerate, [hash]: 'x' } })],
    ['a prototype without regenerate()', variant(session, { proto: { [hash]: proto[hash] } })],
    ['a cookie without a class', variant(session, { cookie: Object.create(null) })],
    ['no store', variant(session, { symbols: withValue('sessionStore', undefined) })],
    ['a store without get()', variant(session, { symbols: withValue('sessionStore', { set () {} }) })],
    ['no signer', variant(session, { symbols: withValue('cookieSignerKey', undefined) })],
    ['a signer without sign()', variant(session, { symbols: withValue('cookieSignerKey', { unsign () {} }) })],
    ['a signer without unsign()', variant(session, { symbols: withValue('cookieSignerKey', { sign () {} }) })]
  ]
  for (const [name, object] of declined) t.equal(sessionFactoryOf(object as never, () => true), null, name)
})

t.test('signerKeys: the signing key then the secrets of @fastify/cookie\'s Signer; nothing for another signer', async (t) => {
  const secrets = ['first secret with at least 32 characters', 'second secret with at least 32 characters']
  t.same(signerKeys(new Signer(secrets)), [secrets[0], ...secrets])
  t.same(signerKeys(new Signer(secrets[1])), [secrets[1], secrets[1]], 'one secret')
  t.equal(signerKeys({ sign: (v: string) => v, unsign: (v: string) => ({ valid: true, renew: false, value: v }) }), undefined, 'a custom signer')
  t.equal(signerKeys({ secrets } as never), undefined, 'secrets without a signing key')
  t.equal(signerKeys({ signingKey: secrets[0], secrets: secrets[0] } as never), undefined, 'secrets that are not an array')
})

t.test('sameSignerKeys: the same keys, compared in place; another signing key, a secret added, removed or replaced is a change', async (t) => {
  const secrets = ['first secret with at least 32 characters', 'second secret with at least 32 characters']
  const signer = new Signer(secrets)
  const seen = signerKeys(signer) as unknown[]
  t.equal(sameSignerKeys(signer, seen), true, 'unchanged')
  t.equal(sameSignerKeys(signer, []), false, 'nothing seen yet')
  secrets.push('third secret with at least 32 characters')
  t.equal(sameSignerKeys(signer, seen), false, 'a secret added')
  secrets.pop()
  secrets[1] = 'other secret with at least 32 characters'
  t.equal(sameSignerKeys(signer, seen), false, 'a secret replaced')
  t.equal(sameSignerKeys(new Signer(secrets[1]), seen), false, 'another signing key')
})

t.test('sameCookieOptions: the same keys in the same order with the same values', async (t) => {
  const rows: Array<[AnyRecord, AnyRecord, boolean, string]> = [
    [{ path: '/', maxAge: 1 }, { path: '/', maxAge: 1 }, true, 'equal'],
    [{ path: '/', maxAge: NaN }, { path: '/', maxAge: NaN }, true, 'NaN is NaN (Object.is)'],
    [{}, {}, true, 'both empty'],
    [{ path: '/' }, { path: '/', maxAge: 1 }, false, 'one key more'],
    [{ path: '/', maxAge: 1 }, { path: '/' }, false, 'one key fewer'],
    [{ path: '/', maxAge: 1 }, { maxAge: 1, path: '/' }, false, 'another order'],
    [{ path: '/', maxAge: 1 }, { path: '/', maxAge: 2 }, false, 'another value'],
    [{ expires: '2026-01-01' }, { expires: new Date('2026-01-01') }, false, 'a string and a Date'],
    [{ secure: 0 }, { secure: -0 }, false, '0 and -0 (Object.is)']
  ]
  for (const [a, b, same, name] of rows) t.equal(sameCookieOptions(a, b), same, name)
})
