import t from 'tap'
import { InvalidOptionError } from '../lib/errors'
import { resolveOptions } from '../lib/options'

// Table tests of resolveOptions (no server): the defaults, and every option's accepted and refused values.
// Registration itself (the error surfacing from app.register) is tested in registration.test.ts.

const fn = (): boolean => true
const passport = { key: 'passport', deserializeUser: fn }

/** Every option: values it accepts, and values it refuses with FST_SIO_SESSION_INVALID_OPTION naming it. */
const table: Record<string, { good: unknown[], bad: unknown[] }> = {
  cookieName: { good: ['sessionId', 'sid'], bad: [42, '', null, ['sid']] },
  cookiePrefix: { good: ['', 's:'], bad: [1, null, false] },
  serverOptions: { good: [{}, { path: '/io' }], bad: ['x', [], null, fn] },
  trustProxy: {
    good: [true, false, '127.0.0.1', '10.0.0.0/8, loopback', ['loopback'], [], 0, 2, fn],
    bad: [-1, 1.5, [1], ['loopback', null], {}, null, Number.NaN]
  },
  allowedOrigins: {
    good: [['https://app.example'], [], ['null', 'http://[::1]:3000/'], fn],
    bad: ['https://app.example', [42], ['https://app.example/path'], ['*'], ['https://*.app.example'], {}, null]
  },
  authorize: { good: [fn, async () => true], bad: ['yes', true, {}] },
  sessionRoom: { good: [(id: string) => id], bad: ['room', null] },
  userRoom: { good: [fn], bad: [true, 'user'] },
  reloadOnEvent: { good: [true, false], bad: ['yes', 1, null] },
  autoSave: { good: [true, false], bad: [1, 'false'] },
  validateInterval: { good: [0, 1, 30_000, 2 ** 31 - 1], bad: [-1, 1.5, 2 ** 31, '1000', Number.NaN, Infinity, null] },
  keepAlive: { good: [true, false], bad: [null, 0] },
  createSession: { good: [true, false], bad: ['true', 1] },
  cookie: { good: [{}, { path: '/', secure: true }], bad: [[], 'x', null] },
  onSessionEnd: { good: [fn], bad: [{}, 'log'] },
  passport: { good: [passport], bad: [{}, 'passport', { key: 1, deserializeUser: fn }, { key: 'passport' }, { key: 'passport', deserializeUser: {} }, [passport]] },
  syncSessions: { good: [true, false], bad: ['yes', 0] },
  endEvent: {
    good: [false, 'session:end', 'logout'],
    bad: [true, '', 1, null, 'connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener']
  },
  ackTimeout: { good: [1, 5000, 2 ** 31 - 1], bad: [0, -1, 2.5, 2 ** 31, '5000', Infinity] },
  maxPendingEvents: { good: [1, 128], bad: [0, -1, 1.5, Infinity, '128'] }
}

const defaults = {
  cookieName: 'sessionId',
  cookiePrefix: '',
  reloadOnEvent: false,
  autoSave: true,
  validateInterval: 30_000,
  keepAlive: true,
  createSession: false,
  syncSessions: true,
  endEvent: 'session:end',
  ackTimeout: 5000,
  maxPendingEvents: 128
}

function errorOf (options: unknown): (Error & { code?: string }) | undefined {
  try {
    resolveOptions(options as never)
  } catch (err) {
    return err as Error & { code?: string }
  }
  return undefined
}

t.test('defaults are applied when no option is given', async (t) => {
  for (const options of [undefined, {}]) {
    const resolved = resolveOptions(options)
    t.match(resolved, defaults, `${JSON.stringify(options)}: defaults`)
    t.equal(resolved.sessionRoom('abc'), 'session:abc', 'default session room')
    for (const optional of ['serverOptions', 'trustProxy', 'allowedOrigins', 'authorize', 'userRoom', 'cookie', 'onSessionEnd', 'passport']) {
      t.equal((resolved as Record<string, unknown>)[optional], undefined, `${optional} has no default`)
    }
  }
})

t.test('an option given as undefined gets its default', async (t) => {
  const undefinedEverywhere = Object.fromEntries(Object.keys(table).map((name) => [name, undefined]))
  const resolved = resolveOptions(undefinedEverywhere)
  t.match(resolved, defaults)
  t.equal(resolved.sessionRoom('abc'), 'session:abc')
})

t.test('given values are kept, falsy ones included (false, 0, the empty string)', async (t) => {
  const sessionRoom = (id: string): string => `room-${id}`
  const given = {
    cookieName: 'sid',
    cookiePrefix: 's:',
    sessionRoom,
    reloadOnEvent: true,
    autoSave: false,
    validateInterval: 0,
    keepAlive: false,
    createSession: true,
    syncSessions: false,
    endEvent: false as const,
    ackTimeout: 1,
    maxPendingEvents: 1,
    trustProxy: 0,
    authorize: fn
  }
  const resolved = resolveOptions(given)
  t.same(resolved, given)
  t.equal(resolved.sessionRoom, sessionRoom)
  t.equal(resolved.cookiePrefix, 's:')
  t.equal(resolveOptions({ cookiePrefix: '' }).cookiePrefix, '')
})

t.test('every option (table): its good values are accepted and kept', async (t) => {
  for (const [name, { good }] of Object.entries(table)) {
    for (const value of good) {
      const resolved = resolveOptions({ [name]: value })
      t.equal((resolved as Record<string, unknown>)[name], value, `${name}: ${typeof value === 'function' ? 'a function' : JSON.stringify(value)}`)
    }
  }
})

t.test('every option (table): a bad value throws FST_SIO_SESSION_INVALID_OPTION naming the option', async (t) => {
  for (const [name, { bad }] of Object.entries(table)) {
    for (const value of bad) {
      const err = errorOf({ ...{ cookieName: 'sid' }, [name]: value })
      const label = `${name}: ${typeof value === 'function' ? 'a function' : JSON.stringify(value) ?? String(value)}`
      t.ok(err instanceof InvalidOptionError, `${label}: InvalidOptionError`)
      t.equal(err?.code, 'FST_SIO_SESSION_INVALID_OPTION', `${label}: code`)
      t.match(err?.message, `fastify-socket.io-session: option '${name}' `, `${label}: names the option`)
      t.match(err?.message, /must|has /, `${label}: says what it must be`)
    }
  }
})

t.test('the errors say what the option must be', async (t) => {
  t.match(errorOf({ validateInterval: -1 })?.message, "option 'validateInterval' must be a whole number of milliseconds (0 disables)")
  t.match(errorOf({ endEvent: 'disconnect' })?.message, /must be an event name \(not one Socket.IO reserves: connect, connect_error, disconnect,/)
  t.match(errorOf({ allowedOrigins: ['https://app.example', 'https://app.example/path'] })?.message,
    "option 'allowedOrigins' has \"https://app.example/path\", which is not an origin", 'the bad entry of a list is named')
  t.match(errorOf({ allowedOrigins: 'https://app.example' })?.message, "option 'allowedOrigins' must be an array of origins")
})

t.test('an unknown option is refused, and the error lists the known ones', async (t) => {
  // Names Object.prototype has, and a JSON `__proto__` key (an own property, as JSON.parse gives it), are unknown too.
  const inherited = [{ toString: 1 }, { constructor: 1 }, { hasOwnProperty: fn }, JSON.parse('{"__proto__": {"cookieName": "x"}}')]
  for (const options of [{ autorize: fn }, { cookiename: 'sid' }, { unknown: undefined }, ...inherited]) {
    const err = errorOf(options)
    const name = Object.keys(options)[0]
    t.equal(err?.code, 'FST_SIO_SESSION_INVALID_OPTION', name)
    t.match(err?.message, `option '${name}' is not an option of this plugin (known options: `, name)
  }
  const listed = /known options: ([^)]*)\)/.exec(errorOf({ autorize: fn })?.message ?? '')?.[1].split(', ')
  t.same(listed?.slice().sort(), Object.keys(table).sort(), 'the list names every option, and this file tests every option it names')
})

t.test('options that are not an object are refused', async (t) => {
  for (const options of [null, 'sid', 42, true, [], [{ cookieName: 'sid' }], fn]) {
    const err = errorOf(options)
    t.equal(err?.code, 'FST_SIO_SESSION_INVALID_OPTION', JSON.stringify(options) ?? 'a function')
    t.match(err?.message, "option 'options' must be an object")
  }
})

t.test('Fastify\'s own register options are passed through, not refused', async (t) => {
  const logSerializers = { req: () => ({}) }
  const resolved = resolveOptions({ prefix: '/io', logLevel: 'warn', logSerializers, cookieName: 'sid' } as never)
  t.match(resolved, { prefix: '/io', logLevel: 'warn', cookieName: 'sid' })
  t.equal((resolved as unknown as { logSerializers: unknown }).logSerializers, logSerializers)
})
