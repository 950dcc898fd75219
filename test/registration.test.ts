import t from 'tap'
import Fastify from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import fastifySocketIoSession from '../lib/index'
import { connect } from './helpers/client'
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
    ['passport', { passport: {} }]
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
