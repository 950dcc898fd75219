import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'

// The built package, as a consumer loads it by name (package.json "exports" makes the name resolve here).
const root = join(__dirname, '..')
const run = promisify(execFile)

const consumer = `
  const Fastify = FASTIFY
  const app = Fastify()
  await app.register(COOKIE)
  await app.register(SESSION, { secret: 'a secret with minimum length of 32 characters' })
  await app.register(PLUGIN, { authorize: (session) => session.user !== undefined })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { io } = CLIENT
  const socket = io('http://127.0.0.1:' + app.server.address().port, { transports: ['websocket'], reconnection: false })
  const err = await new Promise((resolve) => socket.on('connect_error', resolve))
  socket.disconnect()
  await app.close()
  console.log(JSON.stringify({ same: SAME, io: typeof app.io.on, code: err.data.code }))
`

t.test('the built package works from CommonJS and from ESM', { skip: existsSync(join(root, 'dist/index.js')) ? false : 'run `npm run build` first' }, async (t) => {
  const cjs = `(async () => {
    const plugin = require('fastify-socket.io-session')
    ${consumer
      .replace('FASTIFY', "require('fastify')")
      .replace('COOKIE', "require('@fastify/cookie')")
      .replace('SESSION', "require('@fastify/session')")
      .replace('PLUGIN', 'plugin')
      .replace('CLIENT', "require('socket.io-client')")
      .replace('SAME', "typeof plugin === 'function' && plugin.default === plugin && plugin.fastifySocketIoSession === plugin")}
  })()`
  const esm = `
    import plugin, { fastifySocketIoSession } from 'fastify-socket.io-session'
    import FastifyFactory from 'fastify'
    import cookie from '@fastify/cookie'
    import session from '@fastify/session'
    import * as client from 'socket.io-client'
    ${consumer
      .replace('FASTIFY', 'FastifyFactory')
      .replace('COOKIE', 'cookie')
      .replace('SESSION', 'session')
      .replace('PLUGIN', 'plugin')
      .replace('CLIENT', 'client')
      .replace('SAME', "typeof plugin === 'function' && fastifySocketIoSession === plugin")}
  `
  const expected = { same: true, io: 'function', code: 'SESSION_UNAUTHORIZED' }
  const fromCjs = await run(process.execPath, ['-e', cjs], { cwd: root })
  t.same(JSON.parse(fromCjs.stdout), expected, 'require()')
  const fromEsm = await run(process.execPath, ['--input-type=module', '-e', esm], { cwd: root })
  t.same(JSON.parse(fromEsm.stdout), expected, 'import')
})
