import t from 'tap'
import fc from 'fast-check'
import { sign, unsign } from '@fastify/cookie'
import type { FastifyInstance } from 'fastify'
import type { SessionSocket } from '../types/index'
import { connect, handshake, sleep, transportModes, type Handshake } from './helpers/client'
import { watchCrashes } from './helpers/process'
import { captureLogs, login, me, secret, startServer, type LogLine } from './helpers/server'
import { TestStore } from './helpers/store'

type Session = Record<string, any> & { set: (key: string, value: unknown) => void }

/** What an event handler may set that a store cannot hold, or that would pollute a prototype. */
const poisons: Record<string, (session: Session) => void> = {
  cycle (s) { const note: Record<string, unknown> = { a: 1 }; note.self = note; s.note = note },
  bigint (s) { s.count = 10n },
  function (s) { s.note = () => 'x' },
  symbol (s) { s.note = Symbol('x') },
  'nested function' (s) { s.user = { ...s.user, greet () { return 'hi' } } },
  'function added in place' (s) { s.user.greet = () => 'hi' },
  NaN (s) { s.count = NaN },
  Map (s) { s.note = new Map([['a', 1]]) },
  'Object.assign with __proto__' (s) { Object.assign(s, JSON.parse('{"__proto__": {"polluted": "yes"}}')) },
  'set(\'__proto__\')' (s) { s.set('__proto__', { polluted: 'yes' }) },
  'set(\'constructor\')' (s) { s.set('constructor', { prototype: { polluted: 'yes' } }) },
  'nested __proto__' (s) { s.note = JSON.parse('{"__proto__": {"polluted": "yes"}}') },
  'nested constructor' (s) { s.note = JSON.parse('{"constructor": {"prototype": {"polluted": "yes"}}}') },
  'a method\'s name' (s) { s.set('save', 'not a function') },
  'a good and a bad field' (s) { s.count = 100; s.note = 1n }
}

function serveEvents (app: FastifyInstance): { sessionPrototype: () => object | undefined } {
  let prototype: object | undefined
  app.io.on('connection', (socket: SessionSocket) => {
    prototype ??= Object.getPrototypeOf(socket.request.session)
    socket.on('poison', (kind: string, ack: (done: string) => void) => {
      poisons[kind](socket.request.session as unknown as Session)
      ack('done')
    })
    socket.on('count', (ack: (count: number) => void) => {
      const session = socket.request.session
      session.count = (session.count ?? 0) + 1
      ack(session.count)
    })
    socket.on('inspect', (ack: (seen: unknown) => void) => {
      const session = socket.request.session as unknown as Session
      ack({
        saveIsFunction: typeof session.save === 'function',
        prototypeKept: Object.getPrototypeOf(session) === prototype,
        polluted: session.polluted ?? null,
        fields: Object.keys(session).filter((key) => key !== 'cookie').sort()
      })
    })
  })
  return { sessionPrototype: () => prototype }
}

async function until (condition: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition() && Date.now() < deadline) await sleep(5)
}

function refusalLogs (lines: LogLine[]): LogLine[] {
  return lines.filter((line) => line.level === 50 && /refused/.test(String((line.err as { message?: string } | undefined)?.message)))
}

t.test('an autoSave handler that sets what the store cannot hold: refused, logged, nothing polluted, the socket goes on', async (t) => {
  const crashes = watchCrashes(t)
  const store = new TestStore()
  const { lines, logger } = captureLogs('warn')
  const server = await startServer(t, { validateInterval: 0 }, { session: { store }, fastify: { logger } })
  serveEvents(server.app)
  const cookie = await login(server.url)
  const { sessionId } = await me(server.url, cookie)

  for (const { name: mode, transports } of transportModes) {
    const socket = await connect(t, server.url, { cookie, transports })
    for (const kind of Object.keys(poisons)) {
      const label = `${mode}, ${kind}`
      const stored = store.read(sessionId)
      const writes = store.calls.set
      const logged = refusalLogs(lines).length
      let acked = false
      socket.emit('poison', kind, () => { acked = true })
      // Waits for the refusal: an event dispatched while a handler has replaced the session's
      // prototype, before its save puts it back, would not find the session.
      await until(() => refusalLogs(lines).length > logged)
      const count = await socket.timeout(2000).emitWithAck('count') as number
      t.equal(count, (stored?.count ?? 0) + 1, `${label}: the next event is handled, from the session as it was before the refused change`)
      const after = store.read(sessionId)
      t.same(after, { ...stored, count, cookie: after?.cookie }, `${label}: the store holds only the next event's change`)
      t.equal(store.calls.set, writes + 1, `${label}: the refused change wrote nothing`)
      t.equal(refusalLogs(lines).length, logged + 1, `${label}: the refusal is logged at error level`)
      t.notOk(acked, `${label}: the refused event is not acknowledged (as for a handler that throws)`)
      const seen = await socket.timeout(2000).emitWithAck('inspect') as { saveIsFunction: boolean, prototypeKept: boolean, polluted: unknown, fields: string[] }
      t.same(seen, { saveIsFunction: true, prototypeKept: true, polluted: null, fields: ['count', 'user'] }, `${label}: the session object is as it was, with its own prototype`)
      t.equal(({} as Record<string, unknown>).polluted, undefined, `${label}: Object.prototype is untouched`)
      t.equal(Object.getOwnPropertyNames(Object.prototype).includes('polluted'), false)
    }
    socket.disconnect()
  }
  const message = String((refusalLogs(lines).find((line) => /function/.test(String((line.err as { message: string }).message)))?.err as { message: string } | undefined)?.message)
  t.match(message, /field 'note' holds a function/, 'the log names the field and why, never the value')
  t.equal(store.read(sessionId)?.user?.name, 'Ada', 'the session is intact')
  t.same(crashes, [], 'no uncaught exception, no unhandled rejection')
})

t.test('a fresh session (not stored yet) given what the store cannot hold is not saved at all', async (t) => {
  const crashes = watchCrashes(t)
  const store = new TestStore()
  const { lines, logger } = captureLogs('warn')
  const server = await startServer(t, { validateInterval: 0 }, { session: { store }, fastify: { logger } })
  serveEvents(server.app)
  const socket = await connect(t, server.url)
  for (const [i, kind] of ['cycle', 'bigint', 'function', 'Object.assign with __proto__'].entries()) {
    socket.emit('poison', kind, () => {})
    await until(() => refusalLogs(lines).length > i)
    t.equal(store.data.size, 0, `${kind}: nothing stored`)
  }
  t.equal(refusalLogs(lines).length, 4, 'each refusal logged')
  t.equal(await socket.timeout(2000).emitWithAck('count'), 1, 'a storable change is then saved as usual')
  t.equal(store.data.size, 1)
  t.same(crashes, [])
})

// ---------------------------------------------------------------------------------------------------
// Generated handshakes

/** A header value as Node's HTTP client sends it: the UTF-8 bytes of any text, as latin1, without control characters. */
function asHeader (text: string): string {
  const latin1 = Buffer.from(text, 'utf8').toString('latin1')
  return Array.from(latin1, (c) => { const code = c.charCodeAt(0); return (code < 32 && code !== 9) || code === 127 ? '?' : c }).join('')
}

interface HandshakeCase {
  transport: 'polling' | 'websocket'
  cookie: { kind: string, header?: string | string[] }
  origin: { kind: 'none' | 'same' | 'foreign', header?: string | string[] }
  query: { benign: boolean, text: string }
  forwarded?: string
}

function handshakeCases (valid: string, sessionId: string, sameOrigin: string): fc.Arbitrary<HandshakeCase> {
  const value = valid.slice('sessionId='.length)
  const text = fc.string({ unit: 'binary', maxLength: 40 }).map(asHeader)
  const tampered = fc.nat({ max: value.length - 1 }).chain((at) => fc.constantFrom('A', 'b', '0', '%', '.').filter((c) => c !== value[at]).map((c) => value.slice(0, at) + c + value.slice(at + 1)))
  const cookie = fc.oneof(
    fc.constant({ kind: 'none' }),
    fc.constant({ kind: 'valid', header: valid }),
    fc.uuid().map((id) => ({ kind: 'signed, unknown id', header: `sessionId=${sign(id, secret)}` })),
    tampered.map((bad) => ({ kind: 'tampered', header: `sessionId=${bad}` })),
    fc.constant({ kind: 'unsigned id', header: `sessionId=${sessionId}` }),
    fc.constant({ kind: 'signed with another secret', header: `sessionId=${sign(sessionId, 'another secret of at least 32 characters!!')}` }),
    text.map((garbage) => ({ kind: 'garbage', header: `sessionId=${garbage}` })),
    text.map((garbage) => ({ kind: 'garbage header', header: garbage })),
    tampered.map((bad) => ({ kind: 'duplicated', header: `sessionId=${bad}; sessionId=${value}` })),
    tampered.map((bad) => ({ kind: 'duplicated, valid first', header: `sessionId=${value}; sessionId=${bad}` })),
    tampered.map((bad) => ({ kind: 'several Cookie headers', header: [`sessionId=${bad}`, valid] })),
    fc.constantFrom('%', '%ZZ', '%C3%28', '%E0%80%AF', '"', '"unbalanced', `${value}%`, encodeURIComponent(value), `"${value}"`, `${value};;;`, '=;=;=')
      .map((bad) => ({ kind: 'mis-encoded', header: `sessionId=${bad}` })),
    fc.integer({ min: 1000, max: 17_000 }).map((size) => ({ kind: 'oversized', header: `${valid}; pad=${'x'.repeat(size)}` })),
    fc.integer({ min: 100, max: 2000 }).map((count) => ({ kind: 'many cookies', header: Array.from({ length: count }, (_, i) => `c${i}=${i}`).join('; ') + `; ${valid}` }))
  )
  const foreign = fc.oneof(
    fc.constantFrom('null', 'http://evil.example', 'https://xn--bcher-kva.example', asHeader('https://bücher.example'), asHeader('http://例え.テスト'), 'file://', '*', '', ' ', 'http://', `${sameOrigin}.evil.example`),
    text.map((garbage) => garbage === '' ? 'x' : garbage),
    fc.integer({ min: 100, max: 12_000 }).map((size) => `http://${'a'.repeat(size)}.example`),
    fc.constant<string[]>([sameOrigin, 'http://evil.example']),
    fc.constant<string[]>([sameOrigin, sameOrigin])
  )
  const origin = fc.oneof(
    fc.constant({ kind: 'none' as const }),
    fc.constant({ kind: 'same' as const, header: sameOrigin }),
    foreign.map((header) => ({ kind: 'foreign' as const, header }))
  )
  const name = fc.stringMatching(/^[a-z][a-z0-9_]{0,8}$/).filter((n) => !['sid', 'eio', 'transport', 'b64', 't', 'j'].includes(n.toLowerCase()))
  const query = fc.oneof(
    fc.constant({ benign: true, text: '' }),
    fc.tuple(name, fc.string({ maxLength: 20 })).map(([key, v]) => ({ benign: true, text: `&${key}=${encodeURIComponent(v)}` })),
    fc.constantFrom('&sid=abc', '&EIO=3', '&EIO=4&EIO=4', '&transport=webtransport', '&transport[]=polling', '&__proto__=1', '&constructor[prototype][x]=1', '&%', '&%ZZ=%ZZ', '&&&==', '&b64=1', '&j=0')
      .map((text) => ({ benign: false, text })),
    fc.string({ unit: 'binary', maxLength: 60 }).map((garbage) => ({ benign: false, text: '&' + encodeURI(garbage.replace(/[\ud800-\udfff]/g, '')) }))
  )
  const forwarded = fc.option(text, { nil: undefined })
  return fc.record({ transport: fc.constantFrom('polling' as const, 'websocket' as const), cookie, origin, query, forwarded })
    .map((c) => Object.assign(c, { [fc.toStringMethod]: () => JSON.stringify(c, (_key, v: unknown) => typeof v === 'string' && v.length > 200 ? `${v.slice(0, 100)}... (${v.length} characters)` : v) }))
}

t.test('generated hostile handshakes: no crash, served with a fresh session or refused cleanly, bad signatures never reach the store', async (t) => {
  const crashes = watchCrashes(t)
  const store = new TestStore()
  const last: { seen?: { sessionId: string, user: unknown } } = {}
  const server = await startServer(t, {
    validateInterval: 0,
    serverOptions: {
      pingInterval: 2000,
      pingTimeout: 1000,
      // Runs after the plugin's origin check and session load: what each served handshake got.
      allowRequest: (req, done) => {
        const session = (req as unknown as { session: { sessionId: string, user?: unknown } }).session
        last.seen = { sessionId: session.sessionId, user: session.user }
        done(null, true)
      }
    }
  }, { session: { store } })
  server.app.io.on('connection', (socket: SessionSocket) => {
    socket.on('whoami', (ack: (name: unknown) => void) => { ack(socket.request.session.user?.name ?? null) })
  })
  const cookie = await login(server.url)
  const { sessionId } = await me(server.url, cookie)
  const host = new URL(server.url).host
  const sameOrigin = server.url

  const outcomes = new Map<string, number>()
  let runs = 0
  await fc.assert(fc.asyncProperty(handshakeCases(cookie, sessionId, sameOrigin), async (c) => {
    runs++
    const headers: Record<string, string | string[]> = { host }
    if (c.cookie.header !== undefined) headers.cookie = c.cookie.header
    if (c.origin.header !== undefined) headers.origin = c.origin.header
    if (c.forwarded !== undefined) headers['x-forwarded-host'] = c.forwarded
    const size = JSON.stringify(headers).length
    last.seen = undefined
    const reads = store.calls.get
    let result: Handshake | undefined
    let failure: unknown
    try {
      result = await handshake(server.url, c.transport, headers, c.query.text)
    } catch (err) {
      failure = err
    }
    const served = result !== undefined && (c.transport === 'polling' ? result.status === 200 : result.upgraded && result.status === 101)
    const outcome = failure !== undefined ? `error ${(failure as { code?: string }).code ?? String(failure)}` : served ? 'served' : `refused ${result?.status ?? 0}`
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
    const what = `${c.transport}, cookie ${c.cookie.kind}, origin ${c.origin.kind}, query ${JSON.stringify(c.query.text)}: ${outcome}`

    // Refused cleanly: an HTTP answer (engine.io's 400 or 403, Node's 431 for headers over its limit),
    // or, for headers over the limit only, the connection closed.
    if (failure !== undefined && size < 16_000) throw new Error(`${what}: no HTTP answer (${String(failure)})`)
    if (!served && failure === undefined && ![400, 403, 431].includes(result?.status ?? 0)) throw new Error(`${what}: not a clean refusal`)
    if (size > 16_500 && served) throw new Error(`${what}: headers over the server's limit were served`)
    // What must be served: no Origin or the same origin, a benign query, headers well under the limit.
    if (c.origin.kind !== 'foreign' && c.query.benign && size < 15_000 && !served) throw new Error(`${what}: should have been served`)
    if (c.origin.kind === 'foreign' && served) throw new Error(`${what}: a foreign Origin was served`)

    // The store: read only for a cookie whose signature is right, once.
    const header = Array.isArray(c.cookie.header) ? c.cookie.header.join('; ') : c.cookie.header
    const signed = header === undefined ? undefined : server.app.parseCookie(header).sessionId
    const verified = signed !== undefined && unsign(signed, secret).valid
    const storeReads = store.calls.get - reads
    if (!verified && storeReads !== 0) throw new Error(`${what}: a cookie with a wrong signature reached the store (${storeReads} reads)`)
    if (storeReads > 1) throw new Error(`${what}: ${storeReads} store reads for one handshake`)

    // Served: with the cookie's own session only when it is the valid one, a fresh session otherwise.
    const seen = last.seen as { sessionId: string, user: unknown } | undefined // set by allowRequest meanwhile
    if (served) {
      if (seen === undefined) throw new Error(`${what}: served without going through allowRequest`)
      const own = verified && unsign(signed, secret).value === sessionId
      if (own && (seen.sessionId !== sessionId || (seen.user as { name?: string } | undefined)?.name !== 'Ada')) throw new Error(`${what}: the valid cookie did not load its session`)
      if (!own && (seen.sessionId === sessionId || seen.user !== undefined)) throw new Error(`${what}: served with someone's session instead of a fresh one`)
    }

    // Now and then, a real client in between is served with its session.
    if (runs % 100 === 0) {
      const { transports } = transportModes[(runs / 100) % 2]
      const socket = await connect(t, server.url, { cookie, transports, headers: { origin: sameOrigin } })
      const name = await socket.timeout(2000).emitWithAck('whoami')
      socket.disconnect()
      if (name !== 'Ada') throw new Error(`the valid client in between got ${String(name)}`)
    }
  }), { numRuns: 3000, interruptAfterTimeLimit: 90_000 })

  t.ok(runs >= 1000, `${runs} generated handshakes`)
  t.comment(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`)
  t.ok((outcomes.get('served') ?? 0) > runs / 10 && (outcomes.get('refused 403') ?? 0) + (outcomes.get('refused 400') ?? 0) > runs / 10, 'both served and refused handshakes were generated')
  // And the server still serves everyone.
  const socket = await connect(t, server.url, { cookie, transports: ['polling', 'websocket'] })
  t.equal(await socket.timeout(2000).emitWithAck('whoami'), 'Ada', 'a valid client is served at the end')
  t.same(crashes, [], 'no uncaught exception, no unhandled rejection')
})
