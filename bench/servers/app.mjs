// The Fastify app the bench's plugin servers start from: Fastify 5, @fastify/cookie and
// @fastify/session with the bench's secret and cookie, sessions stored only once they hold something.
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import Fastify from 'fastify'

/** A Fastify app with cookies and sessions registered; `store` omitted: @fastify/session's in-memory store. */
export async function sessionApp (store) {
  const app = Fastify({ logger: false })
  await app.register(fastifyCookie)
  await app.register(fastifySession, {
    secret: 'a secret with at least 32 characters of entropy',
    cookie: { secure: false, maxAge: 24 * 3600 * 1000 },
    saveUninitialized: false,
    ...(store === undefined ? {} : { store })
  })
  return app
}
