import t from 'tap'
import Fastify from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import fastifySocketIo from 'fastify-socket.io'
import fastifySocketIoSession from '../lib/index'
import { connect, handshake } from './helpers/client'
import { secret, startServer } from './helpers/server'

t.test('registering without @fastify/session or @fastify/cookie fails at boot, naming what is missing', async (t) => {
  const noSession = Fastify()
  t.teardown(() => noSession.close())
  await noSession.register(fastifyCookie)
  await t.rejects(async () => { await noSession.register(fastifySocketIoSession) }, /@fastify\/session/)

  const noCookie = Fastify()
  t.teardown(() => noCookie.close())
  await t.rejects(async () => { await noCookie.register(fastifySocketIoSession) }, /@fastify\/cookie/)
})

t.test('bad options fail at boot with an error that names the option', async (t) => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['cookieName', { cookieName: 42 }],
    ['cookieName', { cookieName: '' }],
    ['cookiePrefix', { cookiePrefix: null }],
    ['authorize', { authorize: 'yes' }],
    ['autorize', { autorize: () => true }],
    ['allowedOrigins', { allowedOrigins: 'https://app.example' }],
    ['allowedOrigins', { allowedOrigins: [42] }],
    ['sessionRoom', { sessionRoom: 'room' }],
    ['userRoom', { userRoom: true }],
    ['trustProxy', { trustProxy: -1 }],
    ['serverOptions', { serverOptions: 'x' }],
    ['validateInterval', { validateInterval: -5 }],
    ['validateInterval', { validateInterval: 1.5 }],
    ['reloadOnEvent', { reloadOnEvent: 'yes' }],
    ['autoSave', { autoSave: 1 }],
    ['keepAlive', { keepAlive: null }],
    ['createSession', { createSession: 'true' }],
    ['cookie', { cookie: [] }],
    ['onSessionEnd', { onSessionEnd: {} }],
    ['passport', { passport: {} }],
    ['syncSessions', { syncSessions: 'yes' }],
    ['endEvent', { endEvent: true }],
    ['endEvent', { endEvent: '' }],
    ['endEvent', { endEvent: 'disconnect' }],
    ['ackTimeout', { ackTimeout: 0 }],
    ['ackTimeout', { ackTimeout: 2.5 }],
    ['maxPendingEvents', { maxPendingEvents: 0 }],
    ['maxPendingEvents', { maxPendingEvents: Infinity }]
  ]
  for (const [name, options] of cases) {
    const app = Fastify()
    await app.register(fastifyCookie)
    await app.register(fastifySession, { secret })
    let err: (Error & { code?: string }) | undefined
    try {
      await app.register(fastifySocketIoSession, options as never)
    } catch (e) {
      err = e as Error & { code?: string }
    }
    t.equal(err?.code, 'FST_SIO_SESSION_INVALID_OPTION', `${JSON.stringify(options)}: code`)
    t.match(err?.message, `option '${name}'`, `${JSON.stringify(options)}: names the option`)
    await app.close()
  }
  const app = Fastify()
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret })
  await t.rejects(async () => { await app.register(fastifySocketIoSession, 'nope' as never) }, { code: 'FST_SIO_SESSION_INVALID_OPTION' })
  await app.close()
})

t.test('undefined options and Fastify\'s own register options are accepted', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret })
  await app.register(fastifySocketIoSession, { authorize: undefined, logLevel: 'warn' } as never)
  await app.ready()
  t.ok(app.io, 'fastify.io is decorated')
  t.equal(typeof app.disconnectSession, 'function')
  t.equal(typeof app.sessionSockets, 'function')
})

t.test('an allowRequest of serverOptions still runs, after the plugin\'s checks', async (t) => {
  let calls = 0
  const server = await startServer(t, {
    serverOptions: { allowRequest: (req, done) => { calls++; done(null, req.headers['x-deny'] === undefined) } }
  })
  t.ok((await connect(t, server.url)).connected)
  const { refused } = await import('./helpers/client')
  const err = await refused(t, server.url, { headers: { 'x-deny': '1' } })
  t.equal(err.message, 'websocket error')
  t.equal(calls, 2)
})

t.test('allowedOrigins entries that are not origins fail at boot, naming the option and the entry', async (t) => {
  const bad = [
    'https://app.example/path',
    'https://app.example/app/',
    'https://app.example?x=1',
    'https://app.example#top',
    'https://user:pw@app.example',
    'https://*.example',
    '*',
    'app.example',
    '//app.example',
    'https://',
    'https://app.example:99999',
    'https://app.example:port',
    'https://app example',
    ''
  ]
  for (const entry of bad) {
    const app = Fastify()
    await app.register(fastifyCookie)
    await app.register(fastifySession, { secret })
    let err: (Error & { code?: string }) | undefined
    try {
      await app.register(fastifySocketIoSession, { allowedOrigins: ['https://good.example', entry] })
    } catch (e) {
      err = e as Error & { code?: string }
    }
    t.equal(err?.code, 'FST_SIO_SESSION_INVALID_OPTION', `${JSON.stringify(entry)}: refused at boot`)
    t.match(err?.message, "option 'allowedOrigins'", `${JSON.stringify(entry)}: names the option`)
    t.match(err?.message, JSON.stringify(entry), `${JSON.stringify(entry)}: names the entry`)
    await app.close()
  }
})

t.test('allowedOrigins accepts origins as written by people: trailing slash, case, default port, IDN, other schemes', async (t) => {
  const server = await startServer(t, {
    allowedOrigins: ['https://App.Example/', 'https://secure.example:443', 'http://[::1]:3000', 'https://bücher.example', 'capacitor://localhost', 'null']
  })
  const host = new URL(server.url).host
  for (const origin of ['https://app.example', 'https://secure.example', 'http://[::1]:3000', 'https://xn--bcher-kva.example', 'capacitor://localhost', 'null']) {
    t.equal((await handshake(server.url, 'polling', { host, origin })).status, 200, `${origin} allowed`)
  }
  for (const origin of ['https://secure.example:8443', 'http://app.example', 'https://other.example']) {
    t.equal((await handshake(server.url, 'polling', { host, origin })).status, 403, `${origin} refused`)
  }
})

t.test('a server whose transports include webtransport is refused at boot (it would bypass the handshake)', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret })
  await t.rejects(async () => {
    await app.register(fastifySocketIoSession, { serverOptions: { transports: ['polling', 'websocket', 'webtransport'] } })
  }, { code: 'FST_SIO_SESSION_INVALID_OPTION', message: /option 'serverOptions\.transports' must not include 'webtransport'/ })

  const withIo = Fastify()
  t.teardown(() => withIo.close())
  await withIo.register(fastifyCookie)
  await withIo.register(fastifySession, { secret })
  await withIo.register(fastifySocketIo, { transports: ['websocket', 'webtransport'] })
  await t.rejects(async () => {
    await withIo.register(fastifySocketIoSession)
  }, { code: 'FST_SIO_SESSION_INVALID_OPTION', message: /option 'transports' of the existing fastify\.io must not include 'webtransport'/ })

  const fine = await startServer(t, { serverOptions: { transports: ['websocket'] } })
  t.ok((await connect(t, fine.url)).connected, 'websocket only is fine')
})
